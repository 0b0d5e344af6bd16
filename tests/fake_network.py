"""Stand-ins for the network's worst days in unit tests: addresses that drop every SYN and a
name server that does not answer, without sending a packet anywhere."""

from __future__ import annotations

import socket
import time
from typing import ClassVar

import pytest


class BlackHoleSocket:
    """Stands in for socket.socket: every connect waits out its timeout and fails, as a
    SYN to an address that drops it would. ``waits`` records each connect's timeout."""

    waits: ClassVar[list[float | None]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._timeout: float | None = None

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def connect(self, address: object) -> None:
        BlackHoleSocket.waits.append(self._timeout)
        time.sleep(self._timeout or 0)
        raise TimeoutError("timed out")

    def close(self) -> None:
        pass


def names(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]], slow: dict[str, float] | None = None) -> None:
    """socket.getaddrinfo answering ``table`` from memory, taking ``slow[name]`` seconds before
    failing for a name whose name server does not answer, and knowing no other name; numeric
    hosts as usual."""
    real = socket.getaddrinfo

    def fake(host, port, family=0, type=0, proto=0, flags=0):
        if flags & socket.AI_NUMERICHOST:  # no I/O for the real one either
            return real(host, port, family, type, proto, flags)
        if slow and host in slow:
            time.sleep(slow[host])
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host in table:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")  # no query leaves the machine

    monkeypatch.setattr(socket, "getaddrinfo", fake)
