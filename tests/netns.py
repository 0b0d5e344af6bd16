"""Run a command in a network namespace of its own, with only its loopback up.

freeDiameterd 1.2.1 drops loopback addresses from its ``ListenOn`` list and listens
on every address instead. Whatever starts it (the relay tests, the benchmark's
rfc4740-fd mode) therefore runs inside a namespace it creates, where 127.0.0.1 is
the only address there is.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

ENV = "AUTH_DIAMETER_NETNS"  # set to "1" inside the namespace


def inside() -> bool:
    return os.environ.get(ENV) == "1"


def run(cmd: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a new network namespace (unshare -n) once its loopback is up."""
    script = (
        "ip link set lo up && ip link add fd0 type veth peer name fd1 && ip addr add 192.0.2.1/32 dev fd0 "
        '&& ip link set fd0 up && exec "$@"'
    )
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", *cmd],
        cwd=cwd,
        env={**os.environ, ENV: "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
