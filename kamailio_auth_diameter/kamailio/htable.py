"""SharedTables in Kamailio's shared memory, through the htable module's KEMI functions.

Both tables must be declared in the cfg with ``autoexpire`` > 0: on Kamailio 5.6 a
per-item expiry is ignored in a table without it. Kamailio 5.6.3 also loses an item's
expiry when a string is replaced by a longer one, so a cache entry is removed before
it is set again, and a nonce-count record always has the same length. ``sht_setxi``
returns 0 on success where the other setters return 1: only a negative result is an
error.
"""

from __future__ import annotations

import os
from typing import Any

from ..backend.shared import NC_LEN, SLOTS, TableError, last_count

_COUNTER = "\tnext"  # the slot counter's key in the nonce-count table (slots are "s<hex>")


class KamailioTables:
    def __init__(self, ksr: Any, nc_table: str, ha1_table: str) -> None:
        self._sht = ksr.htable
        self._nc = nc_table
        self._ha1 = ha1_table

    def check(self) -> None:
        """TableError unless both tables exist: htable's KEMI functions only log (and
        return an error) for an unknown table, which would turn every check into a pass
        of nothing, so the backend refuses to start on it instead."""
        for name in (self._nc, self._ha1):
            if self._sht.sht_setxi(name, "\tprobe", 0, 1) < 0:
                raise TableError(
                    f'htable {name!r} is not declared: modparam("htable", "htable", "{name}=>size=14;autoexpire=600")'
                )

    def next_slot(self) -> int:
        """An atomic counter in the nonce-count table (``sht_inc``); -255 means it is not
        there yet (or expired when no challenge went out for autoexpire seconds): start it
        anywhere, as two workers doing so at once only costs a few early slots."""
        n = self._sht.sht_inc(self._nc, _COUNTER)
        if not isinstance(n, int) or n < 0:
            n = int.from_bytes(os.urandom(2), "big")
            self._sht.sht_setxi(self._nc, _COUNTER, n, 86400)
        return n % SLOTS

    def claim(self, key: str, ident: str, lifetime: int) -> None:
        if self._sht.sht_setxs(self._nc, key, ident + "0" * NC_LEN, lifetime) < 0:
            raise TableError(f"htable {self._nc!r} could not record a nonce (shared memory full?)")

    def advance_nc(self, key: str, ident: str, nc: int, lifetime: int, claimed: bool) -> bool:
        sht, table = self._sht, self._nc
        sht.sht_lock(table, key)
        try:
            last = last_count(sht.sht_get(table, key), ident, claimed)
            if last is None or nc <= last:
                return False
            if sht.sht_setxs(table, key, ident + f"{nc:0{NC_LEN}x}", lifetime) < 0:
                # not recorded (shared memory full): accepting would let the next replay through
                raise TableError(f"htable {table!r} could not record a nonce-count (shared memory full?)")
            return True
        finally:
            sht.sht_unlock(table, key)

    def get_ha1s(self, key: str) -> str | None:
        value = self._sht.sht_get(self._ha1, key)
        return value if isinstance(value, str) else None

    def put_ha1s(self, key: str, value: str, ttl: int) -> None:
        self._sht.sht_rm(self._ha1, key)
        self._sht.sht_setxs(self._ha1, key, value, ttl)

    def drop_ha1s(self, key: str) -> None:
        self._sht.sht_rm(self._ha1, key)
