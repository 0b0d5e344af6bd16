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
        self._secret = secret
        self._lifetime = lifetime
        self.clock = clock  # wall-clock time; what shares the nonces' state keeps time by it too

    def _mac(self, head: str, realm: str) -> str:
        msg = f"{head}|{realm}".encode("utf-8", "replace")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

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
