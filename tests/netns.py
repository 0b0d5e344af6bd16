"""Run a command in a network namespace of its own, with only its loopback up.

freeDiameterd 1.2.1 drops loopback addresses from its ``ListenOn`` list, listens on
every address instead, and refuses to start without a non-loopback one to name in
its CEAs. Whatever starts it (the relay tests, the benchmark's rfc4740-fd mode)
therefore runs inside a namespace it creates, whose only other address
(192.0.2.1, a documentation address, on a veth pair whose both ends stay inside)
leads nowhere. All traffic still goes over 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

ENV = "AUTH_DIAMETER_NETNS"  # set to "1" inside the namespace


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
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", *cmd],
        cwd=cwd,
        env={**os.environ, ENV: "1"},
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )
