"""server/limits (the connection table: caps, eviction, timeouts) and server/processes' back-off, on a fake clock."""

from __future__ import annotations

import pytest
from conftest import Clock

from kamailio_auth_diameter.server.limits import (
    ConnectionTable,
    Limits,
    LogQuota,
    Reason,
    address_key,
    default_max_connections,
)
from kamailio_auth_diameter.server.processes import FIRST_DELAY, MAX_DELAY, STABLE, Backoff


def table(clock: Clock, **kw: float) -> ConnectionTable[str]:
    return ConnectionTable(Limits(**{"max_connections": 4, "max_per_address": 3, **kw}), clock)


def test_default_cap_leaves_descriptors_for_the_rest() -> None:
    assert default_max_connections(64) == 32
    assert default_max_connections(1024) == 992
    assert default_max_connections(1_048_576) == 10_000
    assert default_max_connections(20) == 10
    assert default_max_connections(1) == 1


def test_address_key_folds_ipv4_mapped_and_scope() -> None:
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("fe80::1%eth0") == "fe80::1"
    assert address_key("10.0.0.1") == "10.0.0.1"


def test_a_newcomer_past_the_cap_evicts_the_silent_first_then_the_least_recently_active(clock: Clock) -> None:
    t = table(clock)
    for i, name in enumerate(("worker1", "worker2", "idle1", "idle2")):
        clock.now += 1
        assert t.admit(name, f"10.0.0.{i}") is None
    clock.now += 1
    t.received("worker2", completed=True, pending=False)  # the workers ask something now and then
    t.received("worker1", completed=True, pending=False)
    assert t.admit("new1", "10.0.1.1") == ("idle1", Reason.CAP)
    assert t.admit("new2", "10.0.1.2") == ("idle2", Reason.CAP)
    assert t.admit("new3", "10.0.1.3") == ("new1", Reason.CAP)  # silent ones make room for each other
    t.received("new2", completed=False, pending=True)  # inside a message is still silent
    assert t.admit("new4", "10.0.1.4") == ("new2", Reason.CAP)
    t.received("new3", completed=True, pending=False)
    t.received("new4", completed=True, pending=False)
    assert t.admit("new5", "10.0.1.5") == ("worker2", Reason.CAP)  # then the least recently active
    assert len(t) == 4 and "idle1" not in t


def test_the_address_cap_evicts_from_that_address_only(clock: Clock) -> None:
    t = table(clock, max_connections=10)
    t.admit("other", "10.9.9.9")
    for name in ("a1", "a2", "a3"):
        clock.now += 1
        t.admit(name, "127.0.0.1")
        t.received(name, completed=True, pending=False)
    t.received("a1", completed=True, pending=False)
    assert t.count("127.0.0.1") == 3
    assert t.admit("a4", "::ffff:127.0.0.1") == ("a2", Reason.ADDRESS_CAP)  # the same client, mapped
    assert "other" in t and t.count("127.0.0.1") == 3
    assert t.admit("a5", "127.0.0.1") == ("a4", Reason.ADDRESS_CAP)


def test_make_room_when_out_of_descriptors(clock: Clock) -> None:
    t = table(clock)
    assert t.make_room() is None
    t.admit("old", "10.0.0.1")
    t.received("old", completed=True, pending=False)
    clock.now += 1
    t.admit("new", "10.0.0.2")
    assert t.make_room() == "new"  # the silent one, as for a newcomer past a cap
    assert list(t.expired()) == [] and len(t) == 1


def test_idle_timeout(clock: Clock) -> None:
    t = table(clock, idle_timeout=100)
    t.admit("quiet", "10.0.0.1")
    t.admit("busy", "10.0.0.2")
    t.admit("spoke-once", "10.0.0.3")
    t.received("spoke-once", completed=True, pending=False)
    clock.now += 60
    t.received("busy", completed=True, pending=False)
    clock.now += 39
    assert t.expired() == []
    clock.now += 1
    assert t.expired() == [("quiet", Reason.IDLE), ("spoke-once", Reason.IDLE)]
    clock.now += 60
    assert t.expired() == [("busy", Reason.IDLE)]
    assert len(t) == 0


def test_idle_timeout_off(clock: Clock) -> None:
    t = table(clock, idle_timeout=0)
    t.admit("quiet", "10.0.0.1")
    clock.now += 1e9
    assert t.expired() == []


def test_a_message_begun_must_end_within_the_message_timeout(clock: Clock) -> None:
    t = table(clock, message_timeout=5)
    t.admit("slow", "10.0.0.1")
    t.received("slow", completed=False, pending=True)
    clock.now += 3
    t.received("slow", completed=False, pending=True)  # more bytes of the same message: the clock runs on
    clock.now += 1.9
    assert t.expired() == []
    clock.now += 0.1
    assert t.expired() == [("slow", Reason.PARTIAL)]


def test_each_completed_message_restarts_the_clock_of_the_next(clock: Clock) -> None:
    t = table(clock, message_timeout=5)
    t.admit("pipelining", "10.0.0.1")
    for _ in range(10):
        t.received("pipelining", completed=False, pending=True)
        clock.now += 4
        t.received("pipelining", completed=True, pending=True)  # one ended, the next began
        assert t.expired() == []
    t.received("pipelining", completed=True, pending=False)
    clock.now += 100
    assert t.expired() == []


def test_tls_handshake_must_end_within_the_message_timeout(clock: Clock) -> None:
    t = table(clock, message_timeout=5)
    t.admit("done", "10.0.0.1", handshake=True)
    t.admit("stuck", "10.0.0.2", handshake=True)
    clock.now += 1
    t.handshake_done("done")
    clock.now += 4
    assert t.expired() == [("stuck", Reason.HANDSHAKE)]


def test_answers_left_unread(clock: Clock) -> None:
    t = table(clock, message_timeout=5)
    t.admit("reader", "10.0.0.1")
    t.admit("never-reads", "10.0.0.2")
    t.stalled("reader", True)
    t.stalled("never-reads", True)
    clock.now += 4
    t.stalled("reader", False)
    t.stalled("never-reads", True)  # still paused: the clock does not restart
    clock.now += 1
    assert t.expired() == [("never-reads", Reason.STALLED)]


def test_removed_and_unknown_connections_are_ignored(clock: Clock) -> None:
    t = table(clock, message_timeout=5)
    t.admit("gone", "10.0.0.1")
    t.received("gone", completed=False, pending=True)
    t.stalled("gone", True)
    t.remove("gone")
    t.remove("gone")
    t.received("gone", completed=True, pending=True)
    t.stalled("gone", True)
    clock.now += 10
    assert t.expired() == [] and len(t) == 0 and t.count("10.0.0.1") == 0


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_names_its_option_or_cause(reason: Reason) -> None:
    text = reason.describe(Limits(1, 1, 60, 5))
    assert "--" in text or "file descriptor" in text
    assert reason.evicted == (reason in (Reason.CAP, Reason.ADDRESS_CAP, Reason.OUT_OF_FDS))


def test_backoff_doubles_while_a_slot_keeps_dying_and_resets_after_a_stable_run(clock: Clock) -> None:
    b = Backoff(clock)
    delays = []
    for _ in range(9):
        b.started(0)
        clock.now += 0.5
        delays.append(b.died(0))
        clock.now += delays[-1]
    assert delays == [FIRST_DELAY, 2, 4, 8, 16, 32, MAX_DELAY, MAX_DELAY, MAX_DELAY]
    b.started(1)
    assert b.died(1) == FIRST_DELAY  # each slot has its own
    b.started(0)
    clock.now += STABLE
    assert b.died(0) == 0.0
    b.started(0)
    assert b.died(0) == FIRST_DELAY


def test_log_quota_holds_back_a_flood_and_says_how_much(clock: Clock) -> None:
    quota = LogQuota(limit=3, window=10, clock=clock)
    assert [quota.take() for _ in range(5)] == [0, 0, 0, None, None]
    clock.now += 9.9
    assert quota.take() is None
    clock.now += 0.1
    assert quota.take() == 3  # the next line says three were not logged
    assert quota.take() == 0
