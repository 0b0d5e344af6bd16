"""State the workers of one Kamailio share when the proxy verifies digests itself.

Two tables: each nonce's last nonce-count (the replay guard: a replay that lands on
another worker must be refused too) and the HA1 cache (so that a REGISTER or INVITE
of a user seen within the TTL needs no Diameter round trip). In Kamailio both live in
``htable`` tables in shared memory (kamailio/htable.py); :class:`MemoryTables` is the
same contract in one process, for the unit tests and the ``check`` tool.

Cache values are text, ``"MD5=<hex>;SHA-256=<hex>"``: one entry per (realm, digest
username), at most one HA1 per algorithm. Only users the server knows are cached,
so the cache holds at most one entry per real user, whatever a client sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol


class SharedTables(Protocol):
    def advance_nc(self, nonce: str, nc: int, lifetime: int) -> bool:
        """Record ``nc`` for ``nonce`` if it is above the last one recorded (atomically
        across workers); False, recording nothing, if it is not: a replay. The record is
        kept ``lifetime`` seconds. HtableError if it cannot be recorded: the caller must
        not accept the response then, or its replay would pass."""

    def get_ha1s(self, key: str) -> str | None:
        """The cached value for ``key``, or None (absent or expired)."""

    def put_ha1s(self, key: str, value: str, ttl: int) -> None:
        """Cache ``value`` for ``ttl`` seconds, replacing what was there."""

    def drop_ha1s(self, key: str) -> None:
        """Forget ``key`` (the server says the user is unknown)."""


def cache_key(realm: str, username: str) -> str:
    """One entry per (realm, digest username): ``alice`` and ``alice@realm`` have different HA1s."""
    return f"{realm.lower()}\t{username}"


def encode_ha1s(ha1s: Mapping[str, str]) -> str:
    return ";".join(f"{algorithm}={ha1}" for algorithm, ha1 in ha1s.items())


def decode_ha1s(value: str) -> dict[str, str]:
    """The cached HA1s by algorithm; what does not parse is simply not there."""
    out = {}
    for item in value.split(";"):
        algorithm, eq, ha1 = item.partition("=")
        if eq and ha1:
            out[algorithm] = ha1
    return out


class MemoryTables:
    """SharedTables in one process's memory (no expiry sweep: entries are judged on read)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._nc: dict[str, tuple[int, float]] = {}
        self._ha1: dict[str, tuple[str, float]] = {}

    def advance_nc(self, nonce: str, nc: int, lifetime: int) -> bool:
        now = self._clock()
        last = self._nc.get(nonce)
        if last is not None and last[1] > now and nc <= last[0]:
            return False
        self._nc[nonce] = (nc, now + lifetime)
        return True

    def get_ha1s(self, key: str) -> str | None:
        item = self._ha1.get(key)
        return item[0] if item is not None and item[1] > self._clock() else None

    def put_ha1s(self, key: str, value: str, ttl: int) -> None:
        self._ha1[key] = (value, self._clock() + ttl)

    def drop_ha1s(self, key: str) -> None:
        self._ha1.pop(key, None)
