"""State the workers of one Kamailio share when the proxy verifies digests itself.

Two tables: each nonce's last nonce-count (the replay guard: a replay that lands on
another worker must be refused too) and the HA1 cache (so that a REGISTER or INVITE
of a user seen within the TTL needs no Diameter round trip).

The replay guard is bounded: a nonce this Kamailio makes claims one of
:data:`SLOTS` slots (named in the nonce, taken in turn) when it is sent, and its count lives there,
as ``<ident><nc>`` (16 + 8 hex). A newer nonce may take the slot over; the older one
is then refused as stale (the UA retries with a fresh nonce, no password asked),
never accepted, since whether it was used can no longer be told. So the table never
holds more than SLOTS items for our own nonces, however fast they are made. A nonce
made by another Kamailio sharing the secret has no slot here: its count is kept
under the nonce itself, which only a correct response creates. In Kamailio both live in
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

SLOTS = 0x10000  # the replay guard's slots for our own nonces: four hex digits in the nonce
IDENT_LEN = 16  # hex characters of the nonce (from its HMAC) that a slot keeps to know it
NC_LEN = 8


class TableError(Exception):
    """A table that is missing, or a record it could not take (shared memory full)."""


class SharedTables(Protocol):
    def next_slot(self) -> int:
        """The next slot, in turn across all workers: a slot comes round again only after
        SLOTS other challenges (13 s at 5,000 a second), so a nonce loses its slot only if
        its answer takes longer than that."""

    def claim(self, key: str, ident: str, lifetime: int) -> None:
        """A nonce we just sent takes slot ``key``, with no count used yet, for
        ``lifetime`` seconds, replacing whatever nonce held it. TableError if it cannot."""

    def advance_nc(self, key: str, ident: str, nc: int, lifetime: int, claimed: bool) -> bool:
        """Record ``nc`` for the nonce ``ident`` under ``key`` if it is above the last one
        recorded there for it (atomically across workers) and return True; False,
        recording nothing, if it is not: a replay. ``claimed``: the nonce must hold
        the slot (ours; False if another nonce took it over); otherwise a missing
        record means a first use. The record is kept ``lifetime`` seconds.
        TableError if it cannot be recorded: the caller must not accept the response
        then, or its replay would pass."""

    def get_ha1s(self, key: str) -> str | None:
        """The cached value for ``key``, or None (absent or expired)."""

    def put_ha1s(self, key: str, value: str, ttl: int) -> None:
        """Cache ``value`` for ``ttl`` seconds, replacing what was there."""

    def drop_ha1s(self, key: str) -> None:
        """Forget ``key`` (the server says the user is unknown)."""


def cache_key(realm: str, username: str) -> str:
    """One entry per (realm, digest username): ``alice`` and ``alice@realm`` have different HA1s."""
    return f"{realm.lower()}\t{username}"


def last_count(value: object, ident: str, claimed: bool) -> int | None:
    """The last nonce-count a slot's ``value`` records for ``ident``; 0 for a first
    use; None when the nonce may not be used (its slot holds another nonce)."""
    if isinstance(value, str) and len(value) == IDENT_LEN + NC_LEN and value[:IDENT_LEN] == ident:
        return int(value[IDENT_LEN:], 16)
    return None if claimed else 0


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
        self._nc: dict[str, tuple[str, float]] = {}
        self._next = 0
        self._ha1: dict[str, tuple[str, float]] = {}

    def next_slot(self) -> int:
        self._next = (self._next + 1) % SLOTS
        return self._next

    def claim(self, key: str, ident: str, lifetime: int) -> None:
        self._nc[key] = (ident + "0" * NC_LEN, self._clock() + lifetime)

    def advance_nc(self, key: str, ident: str, nc: int, lifetime: int, claimed: bool) -> bool:
        now = self._clock()
        item = self._nc.get(key)
        value = item[0] if item is not None and item[1] > now else None
        last = last_count(value, ident, claimed)
        if last is None or nc <= last:
            return False
        self._nc[key] = (ident + f"{nc:0{NC_LEN}x}", now + lifetime)
        return True

    def get_ha1s(self, key: str) -> str | None:
        item = self._ha1.get(key)
        return item[0] if item is not None and item[1] > self._clock() else None

    def put_ha1s(self, key: str, value: str, ttl: int) -> None:
        self._ha1[key] = (value, self._clock() + ttl)

    def drop_ha1s(self, key: str) -> None:
        self._ha1.pop(key, None)
