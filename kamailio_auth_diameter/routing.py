"""Which peer gets the next request, and for how long a failed one is left alone; pure.

Load sharing is round robin per worker, each worker starting at its own offset, so
N workers spread over M peers at once and every request moves on to the next peer.
A peer whose connect failed is skipped for a back-off that doubles with every
consecutive failure, from ``interval`` up to ``ceiling`` (RFC 6733's Tc is the
retry period of an agent with its own timers; a worker only retries when a request
needs the peer). A peer that refused us outright (wrong realm, no common
application, DPR BUSY) waits the whole ceiling at once. Only these keep requests
away from a peer. One that was connected but did not answer in time, or whose
connection broke under a request, is up and may answer the next one: for
``interval`` it is tried after the others, never excluded (with one peer it is
simply tried again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Health:
    failures: int = 0
    down_until: float = 0.0
    last_until: float = 0.0  # tried after the others until then


class Routing:
    def __init__(self, count: int, offset: int, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._health = [_Health() for _ in range(count)]
        self._next = offset % count if count else 0
        self.interval = 1.0
        self.ceiling = 10.0

    def candidates(self) -> list[int]:
        """Usable peers, the round-robin choice first and the recently silent ones last;
        empty when every peer is backing off."""
        n = len(self._health)
        first = self._next
        self._next = (first + 1) % n
        now = self._clock()
        health = self._health
        usable = [i for i in ((first + k) % n for k in range(n)) if health[i].down_until <= now]
        return sorted(usable, key=lambda i: health[i].last_until > now)

    def down_for(self, index: int) -> float:
        """Seconds before the peer is tried again (0 when it is usable)."""
        return max(0.0, self._health[index].down_until - self._clock())

    def failed(self, index: int, retry_soon: bool = True) -> None:
        """A connect failed or the peer refused us: back off, doubling each time."""
        h = self._health[index]
        h.failures += 1
        delay = min(self.interval * 2 ** min(h.failures - 1, 30), self.ceiling) if retry_soon else self.ceiling
        h.down_until = self._clock() + max(delay, self.interval)

    def silent(self, index: int) -> None:
        """No answer in time, or the connection broke under a request: last for ``interval``."""
        self._health[index].last_until = self._clock() + self.interval

    def succeeded(self, index: int) -> None:
        h = self._health[index]
        h.failures = 0
        h.down_until = 0.0
        h.last_until = 0.0
