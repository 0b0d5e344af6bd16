"""Run a command in a network namespace of its own, with only its loopback up.

freeDiameterd 1.2.1 drops loopback addresses from its ``ListenOn`` list, listens on
every address instead, and refuses to start without a non-loopback one to name in
its CEAs. Whatever starts it (the relay tests, the benchmark's rfc4740-fd mode)
therefore runs inside a namespace it creates, whose only other address
(192.0.2.1, a documentation address, on a veth pair whose both ends stay inside)
leads nowhere. All traffic still goes over 127.0.0.1.

:func:`run_with_names` makes a namespace (network and mount) for the deadline tests:
names of our choosing resolve, through a hosts file of its own, to addresses that
silently drop every packet, and any other name goes to a name server that never
answers.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV = "AUTH_DIAMETER_NETNS"  # set to "1" inside the namespace
# TEST-NET-2 (RFC 5737): inside run_with_names' namespace, routed to a link where nothing answers
BLACK_HOLE_NET = "198.51.100.0/24"
DEAD_NAME_SERVER = "198.51.100.53"


def inside() -> bool:
    return os.environ.get(ENV) == "1"


def run(cmd: Sequence[str], cwd: Path, timeout: float, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a new network namespace (unshare -n) once its loopback is up, and an
    address freeDiameter can call its own (it ignores loopback) on a veth pair of the
    namespace's own."""
    script = (
        "ip link set lo up && ip link add fd0 type veth peer name fd1 && ip addr add 192.0.2.1/32 dev fd0 "
        '&& ip link set fd0 up && exec "$@"'
    )
    return _unshare(("--net",), script, cmd, cwd, timeout, capture)


def _unshare(
    namespaces: Sequence[str], script: str, cmd: Sequence[str], cwd: Path, timeout: float, capture: bool
) -> subprocess.CompletedProcess[str]:
    """``script`` (which ends by exec'ing ``cmd``) in new ``namespaces``, marked inside (ENV)."""
    return subprocess.run(
        ["unshare", *namespaces, "sh", "-c", script, "sh", *cmd],
        cwd=cwd,
        env={**os.environ, ENV: "1"},
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_with_names(
    cmd: Sequence[str], cwd: Path, timeout: float, hosts: Mapping[str, Sequence[str]], capture: bool = True
) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a new network and mount namespace where ``hosts`` (name -> addresses) is
    /etc/hosts, besides localhost and this machine's name, and /etc/resolv.conf names
    DEAD_NAME_SERVER.

    Addresses in BLACK_HOLE_NET (and the name server) are routed to one end of a veth
    pair whose other end stays down, with a permanent neighbour entry each, so a SYN or
    a DNS query to them leaves and is never heard of again: no ARP failure, no ICMP,
    only silence, as from a firewall that drops. The bind mounts end with the namespace.
    """
    silent = sorted({a for addresses in hosts.values() for a in addresses} | {DEAD_NAME_SERVER})
    with tempfile.TemporaryDirectory(prefix="auth-diameter-netns-") as tmp:
        hosts_file, resolv_file = Path(tmp) / "hosts", Path(tmp) / "resolv.conf"
        # this machine's name too: Kamailio looks it up at start-up
        lines = [f"127.0.0.1 localhost {socket.gethostname()}", "::1 localhost"]
        lines += [f"{address} {name}" for name, addresses in hosts.items() for address in addresses]
        hosts_file.write_text("\n".join(lines) + "\n")
        resolv_file.write_text(f"nameserver {DEAD_NAME_SERVER}\n")
        neighbours = " && ".join(f"ip neigh add {a} lladdr 02:00:00:00:00:01 dev bh0 nud permanent" for a in silent)
        script = (
            "ip link set lo up && ip link add bh0 type veth peer name bh1 && ip addr add 192.0.2.1/24 dev bh0 "
            f"&& ip link set bh0 up && ip route add {BLACK_HOLE_NET} dev bh0 && {neighbours} "
            f"&& mount --bind {shlex.quote(str(hosts_file))} /etc/hosts "
            f'&& mount --bind {shlex.quote(str(resolv_file))} /etc/resolv.conf && exec "$@"'
        )
        return _unshare(("--net", "--mount"), script, cmd, cwd, timeout, capture)
