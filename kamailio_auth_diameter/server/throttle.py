"""How long a user's responses go unchecked after wrong ones: brute-force throttling, pure.

A UA with a mistyped password retries on its own (one was seen to send 16 wrong
responses in a row), and a guesser sends thousands. The first ``free`` wrong
responses in a row cost nothing; after that each one blocks the user for a delay
that doubles from 1 s up to ``max_delay``. While blocked, responses are answered as
wrong without being checked, so a guess made during a block cannot succeed and
tells the guesser nothing. A correct response after the block clears the count;
so does ``forget_after`` seconds without a wrong one.

The trade-off is deliberate: ``max_delay`` bounds how long anyone's guessing can
keep the real user out (one minute by default), and so also bounds how slowly a
determined guesser is made to go (one guess per ``max_delay`` once past the free
ones, about 1,400 a day). Per-source limits belong on the proxy, which knows the
client's address (Kamailio's pike and htable: see kamailio.cfg.example); neither
wire format tells this server where a SIP request came from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free: int = 5  # wrong responses in a row before the first block
    max_delay: float = 60.0  # seconds; 0 turns throttling off
    forget_after: float = 900.0  # seconds without a wrong response after which the count starts again

    def __post_init__(self) -> None:
        if self.free < 0 or self.max_delay < 0 or self.forget_after < self.max_delay:
            raise ValueError("throttle: free and max_delay must not be negative, nor forget_after below max_delay")

    @property
    def enabled(self) -> bool:
        return self.max_delay > 0

    def delay(self, failures: int) -> float:
        """Seconds during which responses go unchecked after the ``failures``-th wrong one in a row."""
        if not self.enabled or failures <= self.free:
            return 0.0
        return min(2.0 ** min(failures - self.free - 1, 30), self.max_delay)
