"""Stateless digest nonces: HMAC-signed, with an expiry, bound to a realm.

Any server instance that holds the same secret accepts a nonce another one made,
so instances behind a relay need no table to check a nonce. Replay is a different
question: a nonce stays valid for its whole lifetime, so the nonce-count each
response carries is remembered per nonce (in the store, shared the same way) and
must grow; the server does that after it has checked the response.

Layout (48 lower-case hex characters)::

    EEEEEEEE SSSSSSSS MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM
    expiry   salt     HMAC-SHA256(secret, expiry|salt|realm), first 16 bytes
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import time

NONCE_LEN = 48


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # genuine but expired: the UA may retry without asking the user
    INVALID = "invalid"  # not ours, tampered with, or for another realm


class NonceFactory:
    """Makes and checks nonces for one secret; ``clock`` is injectable for tests."""

    def __init__(self, secret: bytes, lifetime: int = 300, clock=time.time) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        self._lifetime = lifetime
        # HMAC-SHA256 (RFC 2104) with the key's inner and outer pads hashed once: each nonce
        # then costs two hash copies, about a third of what hmac.new() costs per call (a
        # worker makes or checks a nonce on every request). Tested equal to hmac.digest.
        if len(secret) > 64:
            secret = hashlib.sha256(secret).digest()
        key = secret.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
        self.clock = clock  # wall-clock time; what shares the nonces' state keeps time by it too

    def _mac(self, head: str, realm: str) -> str:
        inner = self._inner.copy()
        inner.update(f"{head}|{realm}".encode("utf-8", "replace"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16].hex()

    def make(self, realm: str, salt: str | None = None) -> str:
        """``salt``: 8 lower-case hex characters the caller chose (the plugin puts its
        instance and a replay-guard slot there); random when not given."""
        expiry = (int(self.clock()) + self._lifetime) & 0xFFFFFFFF
        head = f"{expiry:08x}{salt if salt is not None else os.urandom(4).hex()}"
        return head + self._mac(head, realm)

    @staticmethod
    def expiry(nonce: str) -> int:
        """When a nonce that :meth:`check` accepted expires (Unix time): how long its
        nonce-count must be remembered."""
        return int(nonce[:8], 16)

    def check(self, nonce: str, realm: str) -> NonceState:
        if len(nonce) != NONCE_LEN:
            return NonceState.INVALID
        head, mac = nonce[:16], nonce[16:]
        try:
            expiry = int(head[:8], 16)
        except ValueError:
            return NonceState.INVALID
        if not hmac.compare_digest(self._mac(head, realm).encode(), mac.encode("utf-8", "replace")):
            return NonceState.INVALID
        if expiry < int(self.clock()):
            return NonceState.STALE
        return NonceState.VALID
