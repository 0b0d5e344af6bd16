"""What the plugin counts and under which counter names; sans-IO.

The transports and backends report *events* (a connect, a timeout, an answer and its
round-trip time); the plugin reports each request's *outcome*. :class:`Recorder` turns
both into increments of named counters and hands them to a sink: in Kamailio, the
``statistics`` module's counters of group ``script`` (kamailio/stats.py), which
``kamcmd stats.get_statistics script:`` and ``xhttp_prom``'s ``/metrics`` show.

Kamailio's statistics are plain integer counters declared in the cfg, so the answer
round-trip time is kept the way Prometheus keeps a histogram: cumulative buckets, each
counting the answers that took at most its bound (``dia_rtt_le_0_005``: at most
0.005 s), ``dia_rtt_le_inf`` counting them all, and the sum in microseconds. A
bucket's name carries its bound in seconds with ``_`` for the point, so one relabel
rule turns the buckets into Prometheus's ``le`` label (README, "Statistics").

Every counter name must be declared in the cfg (:data:`COUNTERS` lists them); the sink
decides what happens to one that is not (Kamailio's logs it once and drops it).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Protocol

# --- events: what a transport or a backend reports -------------------------------------

CONNECT = "connect"  # a connection opened (TCP; in RFC 6733 modes TLS and CER/CEA too)
RECONNECT = "reconnect"  # the same, replacing an earlier connection to that server or peer
CONNECT_FAILED = "connect_failed"  # refused, timed out, no address, TLS or CER failed
PEER_UP = "peer_up"  # a server or peer reached for the first time, or again after it was down
PEER_DOWN = "peer_down"  # a server or peer that could not be reached (it was up, or not yet known)
TIMEOUT = "timeout"  # a request went out and its answer did not come in time
FAILOVER = "failover"  # a request re-sent to another peer (or on a new connection)
EXCHANGE_FAILED = "exchange_failed"  # an exchange ended without an answer the plugin could use
ANSWER = "answer"  # an answer arrived; the event carries its round-trip time in seconds
# the verifying modes (rfc4740-ha1, cx)
HA1_CACHE_HIT = "ha1_cache_hit"  # a response checked against a cached HA1: no Diameter message
HA1_FETCH = "ha1_fetch"  # HA1s asked of the server: not cached, or a cached one failed (refetch)
HA1_REFETCH = "ha1_refetch"  # of those, a response that failed against a cached HA1, checked again
REPLAY = "replay"  # a correct response refused: its nonce-count was used, or its nonce's slot taken

EVENT_COUNTERS: dict[str, tuple[str, ...]] = {
    CONNECT: ("dia_connects",),
    RECONNECT: ("dia_connects", "dia_reconnects"),
    CONNECT_FAILED: ("dia_connect_failures",),
    PEER_UP: ("dia_peer_up",),
    PEER_DOWN: ("dia_peer_down",),
    TIMEOUT: ("dia_timeouts",),
    FAILOVER: ("dia_failovers",),
    EXCHANGE_FAILED: ("dia_exchange_failures",),
    HA1_CACHE_HIT: ("dia_ha1_cache_hits",),
    HA1_FETCH: ("dia_ha1_fetches",),
    HA1_REFETCH: ("dia_ha1_fetches", "dia_ha1_refetches"),
    REPLAY: ("dia_replays",),
}

# --- the round-trip time histogram ---------------------------------------------------

RTT_BOUNDS: tuple[tuple[float, str], ...] = (
    (0.001, "dia_rtt_le_0_001"),
    (0.005, "dia_rtt_le_0_005"),
    (0.020, "dia_rtt_le_0_020"),
    (0.100, "dia_rtt_le_0_100"),
    (1.000, "dia_rtt_le_1_000"),
)
RTT_COUNT = "dia_rtt_le_inf"  # every answer: the +Inf bucket, and the histogram's count
RTT_SUM = "dia_rtt_sum_us"  # microseconds, as the counters are integers

# --- outcomes ----------------------------------------------------------------------------

# outcome.Outcome.label -> counter; a label not listed (a new mode's) counts as dia_auth_<label>
OUTCOME_COUNTERS: dict[str, str] = {
    "authorized": "dia_auth_authorized",
    "challenged": "dia_auth_challenged",
    "stale": "dia_auth_stale",
    "refused": "dia_auth_refused",
    "bad-request": "dia_auth_bad_request",
    "error": "dia_auth_error",
    "exempt": "dia_auth_exempt",
}
GROUP_MEMBER = "dia_group_member"
GROUP_NOT_MEMBER = "dia_group_not_member"

COUNTERS: tuple[str, ...] = (
    *OUTCOME_COUNTERS.values(),
    GROUP_MEMBER,
    GROUP_NOT_MEMBER,
    *dict.fromkeys(name for names in EVENT_COUNTERS.values() for name in names),
    *(name for _, name in RTT_BOUNDS),
    RTT_COUNT,
    RTT_SUM,
)

Events = Callable[[str, float], None]


def no_events(event: str, seconds: float = 0.0) -> None:
    """The events callable of code nobody counts for (unit tests, the check tool)."""


class Sink(Protocol):
    """Where the counts go: Kamailio's statistics, or a dict in the tests."""

    def add(self, name: str, n: int) -> None:
        """Add ``n`` to counter ``name``."""

    def add_one_each(self, names: tuple[str, ...]) -> None:
        """Add 1 to each counter of ``names``: one call for the histogram's buckets."""


class Recorder:
    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        # for an answer in bucket i (the first bound >= its time): that bucket, every wider
        # one and +Inf, as the buckets are cumulative
        self._bounds = tuple(bound for bound, _ in RTT_BOUNDS)
        names = [name for _, name in RTT_BOUNDS] + [RTT_COUNT]
        self._cumulative = tuple(tuple(names[i:]) for i in range(len(names)))
        self._outcomes = dict(OUTCOME_COUNTERS)
        # events counted in one counter go straight to Sink.add: a cache hit is one a request
        self._single = {event: names[0] for event, names in EVENT_COUNTERS.items() if len(names) == 1}

    def event(self, event: str, seconds: float = 0.0) -> None:
        """What the transports and backends call (backend.Environment.events). An event
        without a mapping is a counter name of its own: a new mode may count what it
        likes (cache hits, replays) without a change here, once the cfg declares it."""
        single = self._single.get(event)
        if single is not None:
            self._sink.add(single, 1)
        elif event == ANSWER:
            self.answer(seconds)
        else:
            self._sink.add_one_each(EVENT_COUNTERS.get(event, (event,)))

    def answer(self, seconds: float) -> None:
        """One answer that took ``seconds`` from its request's send."""
        self._sink.add_one_each(self._cumulative[bisect_left(self._bounds, seconds)])
        self._sink.add(RTT_SUM, int(seconds * 1e6))  # the transports time with a monotonic clock: >= 0

    def outcome(self, label: str) -> None:
        """One authorize call ended with this outcome.Outcome.label."""
        name = self._outcomes.get(label)
        if name is None:
            name = self._outcomes[label] = "dia_auth_" + label.replace("-", "_")
        self._sink.add(name, 1)

    def group(self, result: int) -> None:
        """One diameter_is_user_in call returned ``result`` (1: a member)."""
        self._sink.add(GROUP_MEMBER if result > 0 else GROUP_NOT_MEMBER, 1)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to any counter, e.g. a verifying mode's cache hits and replays."""
        self._sink.add(name, n)
