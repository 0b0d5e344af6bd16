"""transport/resolve: name lookups bounded by the caller's wait, cached, one in flight per name;
a connect that tries each address within the deadline; the local FQDN within a bound."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import Clock

from kamailio_auth_diameter import settings
from kamailio_auth_diameter.transport import client, resolve
from kamailio_auth_diameter.transport.resolve import (
    FRESH_FOR,
    REFRESH_WAIT,
    RETRY_AFTER,
    Resolver,
    connect,
    local_fqdn,
)

REAL_GETADDRINFO = socket.getaddrinfo


class FakeDns:
    """socket.getaddrinfo for names in ``table``; each lookup waits for ``gate`` when it is
    closed, and fails when the name maps to None. Numeric hosts go to the real one."""

    def __init__(self) -> None:
        self.table: dict[str, list[str] | None] = {}
        self.lookups: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if flags & socket.AI_NUMERICHOST:
            return REAL_GETADDRINFO(host, port, family, type, proto, flags)
        self.lookups.append(host)
        self.gate.wait(10)
        addresses = self.table.get(host)
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDns]:
    fake = FakeDns()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    fake.gate.set()  # lets a lookup thread a test left waiting finish


def ips(found: list[resolve.Address]) -> list[str]:
    return [sockaddr[0] for _, sockaddr in found]


def settle(dns: FakeDns, count: int) -> None:
    """Wait until ``count`` lookups have started (they run in threads)."""
    deadline = time.monotonic() + 2
    while len(dns.lookups) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def test_numeric_hosts_need_no_lookup(dns: FakeDns) -> None:
    r = Resolver()
    assert r.addresses("192.0.2.7", 3868, 0) == [(socket.AF_INET, ("192.0.2.7", 3868))]
    family, sockaddr = r.addresses("::1", 3868, 0)[0]
    assert family == socket.AF_INET6 and sockaddr[:2] == ("::1", 3868)
    assert dns.lookups == []


def test_a_name_is_looked_up_once_and_kept(dns: FakeDns, clock: Clock) -> None:
    dns.table["aaa.test"] = ["192.0.2.1", "192.0.2.2", "192.0.2.1"]
    r = Resolver(clock)
    assert ips(r.addresses("aaa.test", 3868, 1)) == ["192.0.2.1", "192.0.2.2"]
    clock.now += FRESH_FOR - 1
    assert ips(r.addresses("aaa.test", 3868, 1)) == ["192.0.2.1", "192.0.2.2"]
    assert dns.lookups == ["aaa.test"]


def test_a_lookup_that_outlives_the_wait_raises_and_is_joined_by_the_next_request(dns: FakeDns) -> None:
    dns.table["slow.test"] = ["192.0.2.3"]
    dns.gate.clear()
    r = Resolver()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"slow\.test"):
        r.addresses("slow.test", 3868, 0.1)
    assert time.monotonic() - started < 0.2
    with pytest.raises(TimeoutError):
        r.addresses("slow.test", 3868, 0.05)
    dns.gate.set()
    assert ips(r.addresses("slow.test", 3868, 1)) == ["192.0.2.3"]
    assert dns.lookups == ["slow.test"]  # one lookup in flight per name, however many requests wait


def test_no_time_left_means_no_wait(dns: FakeDns) -> None:
    dns.gate.clear()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        Resolver().addresses("late.test", 3868, -0.5)
    assert time.monotonic() - started < 0.05


def test_old_addresses_are_refreshed_when_the_resolver_answers_at_once(dns: FakeDns, clock: Clock) -> None:
    dns.table["moved.test"] = ["192.0.2.1"]
    r = Resolver(clock)
    r.addresses("moved.test", 3868, 1)
    dns.table["moved.test"] = ["192.0.2.9"]
    clock.now += FRESH_FOR
    assert ips(r.addresses("moved.test", 3868, 1)) == ["192.0.2.9"]
    assert len(dns.lookups) == 2


def test_old_addresses_are_used_while_the_refresh_is_slow(dns: FakeDns, clock: Clock) -> None:
    dns.table["moving.test"] = ["192.0.2.1"]
    r = Resolver(clock)
    r.addresses("moving.test", 3868, 1)
    dns.table["moving.test"] = ["192.0.2.9"]
    dns.gate.clear()
    clock.now += FRESH_FOR
    started = time.monotonic()
    assert ips(r.addresses("moving.test", 3868, 1)) == ["192.0.2.1"]  # after REFRESH_WAIT
    assert REFRESH_WAIT - 0.01 < time.monotonic() - started < REFRESH_WAIT + 0.05
    started = time.monotonic()
    assert ips(r.addresses("moving.test", 3868, 1)) == ["192.0.2.1"]  # the refresh is in flight: no wait
    assert time.monotonic() - started < 0.01
    dns.gate.set()
    time.sleep(0.05)
    assert ips(r.addresses("moving.test", 3868, 1)) == ["192.0.2.9"]
    assert len(dns.lookups) == 2


def test_a_failed_refresh_keeps_the_stale_addresses_for_a_while(dns: FakeDns, clock: Clock) -> None:
    dns.table["flaky.test"] = ["192.0.2.1"]
    r = Resolver(clock)
    r.addresses("flaky.test", 3868, 1)
    dns.table["flaky.test"] = None
    clock.now += FRESH_FOR
    assert ips(r.addresses("flaky.test", 3868, 1)) == ["192.0.2.1"]  # starts the refresh
    settle(dns, 2)
    time.sleep(0.05)
    assert ips(r.addresses("flaky.test", 3868, 1)) == ["192.0.2.1"]  # it failed: the old ones stay
    clock.now += RETRY_AFTER - 0.1
    assert ips(r.addresses("flaky.test", 3868, 1)) == ["192.0.2.1"]
    assert len(dns.lookups) == 2  # no new try before RETRY_AFTER
    clock.now += 0.1
    r.addresses("flaky.test", 3868, 1)
    settle(dns, 3)
    assert len(dns.lookups) == 3


def test_an_unknown_name_raises_the_resolvers_error(dns: FakeDns) -> None:
    with pytest.raises(socket.gaierror):
        Resolver().addresses("nowhere.test", 3868, 1)


def test_a_forked_worker_does_not_wait_on_its_parents_lookup(dns: FakeDns, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread of a lookup in flight at fork time stays in the parent: the child starts its own."""
    dns.table["forked.test"] = ["192.0.2.5"]
    dns.gate.clear()
    r = Resolver()
    with pytest.raises(TimeoutError):
        r.addresses("forked.test", 3868, 0.01)
    pending = r._pending[("forked.test", 3868)]
    monkeypatch.setattr(resolve.os, "getpid", lambda: -1)
    dns.gate.set()
    assert ips(r.addresses("forked.test", 3868, 1)) == ["192.0.2.5"]
    assert r._pending.get(("forked.test", 3868)) is not pending
    settle(dns, 2)
    assert dns.lookups == ["forked.test", "forked.test"]


def test_connect_goes_on_to_the_next_address(dns: FakeDns) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    dns.table["two.test"] = ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2: refused
    try:
        sock = connect(Resolver(), "two.test", port, time.monotonic() + 1, 0.5)
        assert sock.getpeername() == ("127.0.0.1", port)
        sock.close()
        listener.close()
        with pytest.raises(OSError, match=f"127.0.0.2:{port}: .*refused.*; 127.0.0.1:{port}: .*refused"):
            connect(Resolver(), "two.test", port, time.monotonic() + 1, 0.5)
    finally:
        listener.close()


def test_connect_with_the_deadline_passed_tries_nothing(dns: FakeDns) -> None:
    with pytest.raises(OSError, match="no time left"):
        connect(Resolver(), "127.0.0.1", 9, time.monotonic() - 1, 0.5)


# --- the local FQDN --------------------------------------------------------------------


@pytest.fixture
def fresh_fqdn(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """No FQDN known yet; socket.getfqdn answers "sip1.example.com" once ``gate`` is set."""
    gate = threading.Event()
    monkeypatch.setattr(resolve, "_local_fqdn", None)
    monkeypatch.setattr(resolve, "_getfqdn", None)
    monkeypatch.setattr(socket, "gethostname", lambda: "sip1")

    def getfqdn(name: str = "") -> str:
        gate.wait(10)
        return "sip1.example.com"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    yield gate
    gate.set()


def test_local_fqdn_when_dns_answers_in_time(fresh_fqdn: threading.Event) -> None:
    fresh_fqdn.set()
    assert local_fqdn(1.0) == "sip1.example.com"


def test_local_fqdn_falls_back_to_the_host_name_and_keeps_it(fresh_fqdn: threading.Event) -> None:
    """getfqdn asks DNS with no bound: a resolver that does not answer gave a worker no Origin-Host
    for as long as the system resolver waited."""
    started = time.monotonic()
    assert local_fqdn(0.1) == "sip1.localdomain"
    assert time.monotonic() - started < 0.2
    fresh_fqdn.set()
    time.sleep(0.02)
    assert local_fqdn(1.0) == "sip1.localdomain"  # one Origin-Host for the life of the process


def test_resolve_identity_without_a_default_host_waits_for_dns_only_briefly(fresh_fqdn: threading.Event) -> None:
    s = settings.parse({"protocol": "rfc4740"})
    started = time.monotonic()
    host, realm, destination = client.resolve_identity(s, 2)
    assert time.monotonic() - started < client.FQDN_WAIT + 0.1
    assert (host, realm, destination) == ("w2.sip1.localdomain", "localdomain", "localdomain")


def test_resolve_identity_takes_the_default_host_it_is_given(fresh_fqdn: threading.Event) -> None:
    s = settings.parse({"protocol": "rfc4740"})
    assert client.resolve_identity(s, 3, "sip7.example.net") == ("w3.sip7.example.net", "example.net", "example.net")
    configured = settings.parse({"protocol": "rfc4740", "origin_host": "sip9.example.org"})
    assert client.resolve_identity(configured, 3, "sip7.example.net")[0] == "w3.sip9.example.org"


def test_no_thread_for_the_lookup_is_an_os_error(dns: FakeDns, monkeypatch: pytest.MonkeyPatch) -> None:
    """RuntimeError from Thread.start would have escaped the transports, which catch OSError."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(OSError, match="can't start new thread"):
        connect(Resolver(), "threadless.test", 3868, time.monotonic() + 1, 0.5)
