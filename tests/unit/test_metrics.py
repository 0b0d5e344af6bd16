"""metrics (the recorder) and kamailio/stats (Kamailio's statistics as its sink)."""

from __future__ import annotations

import re

import pytest
from fake_ksr import FakeKSR

from kamailio_auth_diameter import metrics, outcome
from kamailio_auth_diameter.kamailio.stats import KsrStatistics
from kamailio_auth_diameter.metrics import RTT_COUNT, RTT_SUM, Recorder
from tests.harness import EXAMPLE_CFG

BUCKETS = [name for _, name in metrics.RTT_BOUNDS]


class DictSink:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, name: str, n: int) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def add_one_each(self, names: tuple[str, ...]) -> None:
        for name in names:
            self.add(name, 1)


@pytest.fixture
def sink() -> DictSink:
    return DictSink()


def test_an_answer_counts_in_its_bucket_every_wider_one_and_inf(sink: DictSink) -> None:
    r = Recorder(sink)
    r.answer(0.0004)  # <= 1 ms: every bucket
    r.answer(0.003)  # <= 5 ms
    r.answer(0.020)  # exactly a bound: in that bucket
    r.answer(2.5)  # past the widest: +Inf only
    assert [sink.counts.get(name, 0) for name in BUCKETS] == [1, 2, 3, 3, 3]
    assert sink.counts[RTT_COUNT] == 4
    assert sink.counts[RTT_SUM] == 400 + 3000 + 20000 + 2500000


def test_bucket_names_carry_their_bound_in_seconds() -> None:
    for bound, name in metrics.RTT_BOUNDS:
        whole, frac = re.fullmatch(r"dia_rtt_le_(\d+)_(\d+)", name).groups()
        assert float(f"{whole}.{frac}") == bound
    assert [b for b, _ in metrics.RTT_BOUNDS] == sorted(b for b, _ in metrics.RTT_BOUNDS)


def test_events_count_under_their_counters(sink: DictSink) -> None:
    r = Recorder(sink)
    for event in (metrics.CONNECT, metrics.RECONNECT, metrics.RECONNECT, metrics.CONNECT_FAILED, metrics.TIMEOUT):
        r.event(event)
    for event in (metrics.FAILOVER, metrics.PEER_UP, metrics.PEER_DOWN, metrics.EXCHANGE_FAILED):
        r.event(event)
    r.event(metrics.ANSWER, 0.002)
    assert sink.counts == {
        "dia_connects": 3,
        "dia_reconnects": 2,
        "dia_connect_failures": 1,
        "dia_timeouts": 1,
        "dia_failovers": 1,
        "dia_peer_up": 1,
        "dia_peer_down": 1,
        "dia_exchange_failures": 1,
        **{name: 1 for name in BUCKETS[1:]},
        RTT_COUNT: 1,
        RTT_SUM: 2000,
    }


def test_an_event_without_a_mapping_is_a_counter_of_its_own(sink: DictSink) -> None:
    r = Recorder(sink)
    r.event("dia_ha1_cache_hits")
    r.count("dia_replays", 2)
    assert sink.counts == {"dia_ha1_cache_hits": 1, "dia_replays": 2}


def test_every_outcome_label_has_a_declared_counter(sink: DictSink) -> None:
    r = Recorder(sink)
    labels = {o.label for o in vars(outcome).values() if isinstance(o, outcome.Outcome)}
    labels |= {outcome.challenge(False, b'Digest nonce="x"', answered).label for answered in (False, True)}
    labels.add(outcome.challenge(True, b'Digest nonce="x", stale=true', True).label)
    for label in sorted(labels):
        r.outcome(label)
    assert set(sink.counts) == {metrics.OUTCOME_COUNTERS[label] for label in labels}
    assert set(sink.counts) <= set(metrics.COUNTERS)
    assert set(metrics.OUTCOME_COUNTERS.values()) == set(sink.counts)  # no counter for a label that never occurs


def test_a_new_label_counts_as_dia_auth_label(sink: DictSink) -> None:
    Recorder(sink).outcome("cache-miss")
    assert sink.counts == {"dia_auth_cache_miss": 1}


def test_group_results(sink: DictSink) -> None:
    r = Recorder(sink)
    for result in (1, -1, -4, 1):
        r.group(result)
    assert sink.counts == {metrics.GROUP_MEMBER: 2, metrics.GROUP_NOT_MEMBER: 2}


def test_counter_names_are_unique_prometheus_names() -> None:
    assert len(set(metrics.COUNTERS)) == len(metrics.COUNTERS)
    assert all(re.fullmatch(r"dia_[a-z0-9_]+", name) for name in metrics.COUNTERS)


def test_the_example_cfg_declares_every_counter() -> None:
    text = EXAMPLE_CFG.read_text()
    declared = re.findall(r'^modparam\("statistics", "variable", "([a-z0-9_]+)"\)', text, re.MULTILINE)
    assert sorted(declared) == sorted(metrics.COUNTERS)


# --- KsrStatistics: Kamailio's statistics module ----------------------------------------


def test_counts_go_to_update_stat() -> None:
    ksr = FakeKSR()
    stats = KsrStatistics(ksr, ksr.err)
    stats.add("dia_auth_authorized", 1)
    stats.add_one_each(("dia_rtt_le_1_000", RTT_COUNT))
    stats.add(RTT_SUM, 250)
    assert ksr.stats == {"dia_auth_authorized": 1, "dia_rtt_le_1_000": 1, RTT_COUNT: 1, RTT_SUM: 250}
    assert ksr.errors == []


def test_an_undeclared_counter_is_logged_once_and_left_alone() -> None:
    ksr = FakeKSR()
    ksr.declared = {"dia_auth_authorized"}
    stats = KsrStatistics(ksr, ksr.err)
    for _ in range(3):
        stats.add("dia_auth_challenged", 1)
        stats.add_one_each(("dia_auth_authorized", "dia_timeouts"))
    assert ksr.stats == {"dia_auth_authorized": 3}
    assert ksr.errors == [
        "statistics: counter dia_auth_challenged is not updated by this worker: not declared in the cfg: "
        'modparam("statistics", "variable", "dia_auth_challenged")',
        "statistics: counter dia_timeouts is not updated by this worker: not declared in the cfg: "
        'modparam("statistics", "variable", "dia_timeouts")',
    ]
    tried = [c[1] for c in ksr.calls if c[0] == "statistics.update_stat"]
    assert tried.count("dia_auth_challenged") == 1 and tried.count("dia_timeouts") == 1


def test_an_update_stat_that_raises_is_logged_once_and_left_alone() -> None:
    ksr = FakeKSR()

    def broken(name: str, n: int) -> int:
        raise SystemError("returned a result with an exception set")

    ksr.statistics.update_stat = broken
    stats = KsrStatistics(ksr, ksr.err)
    stats.add("dia_timeouts", 1)
    stats.add("dia_timeouts", 1)
    assert len(ksr.errors) == 1 and "dia_timeouts" in ksr.errors[0] and "SystemError" in ksr.errors[0]


def test_without_the_statistics_module_nothing_is_counted_and_that_is_said_once() -> None:
    ksr = FakeKSR()
    del ksr.statistics
    stats = KsrStatistics(ksr, ksr.err)
    for _ in range(3):
        stats.add("dia_auth_authorized", 1)
        stats.add_one_each(("dia_timeouts",))
    assert ksr.errors == ['statistics: nothing is counted: loadmodule "statistics.so" is missing from the cfg']
