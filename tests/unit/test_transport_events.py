"""What the transports and the plugin report for the statistics (metrics.py's events and
counters), against fake servers and peers on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_ksr import FakeKSR, FakeLegacyServer, answer_for

from kamailio_auth_diameter import metrics, settings
from kamailio_auth_diameter.kamailio import cfgfile, plugin
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.transport.client import DiameterClient, LocalPeer
from kamailio_auth_diameter.transport.stream import StreamTransport, TransportError
from kamailio_auth_diameter.wire import base, legacy, sip_app
from kamailio_auth_diameter.wire.base import Identity
from tests.fake_peer import CLOSE, SILENT, FakePeer

ME = Identity("w1.kamailio.example.com", "example.com")
CHALLENGE = b'Digest realm="example.com", nonce="0123456789abcdef", qop="auth"\r\n'


class Heard:
    """An events callable that keeps what it hears."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.rtts: list[float] = []

    def __call__(self, event: str, seconds: float = 0.0) -> None:
        self.events.append(event)
        if event == metrics.ANSWER:
            self.rtts.append(seconds)

    def take(self) -> list[str]:
        got, self.events = self.events, []
        return got


def accept_any(frame: bytes) -> bytes:
    return frame


def challenge_answer(msg: legacy.Message) -> bytes:
    return answer_for(msg, 4001, CHALLENGE)


def legacy_request(msgid: int = 1) -> bytes:
    uri = parse_uri("sip:alice@example.com")
    return legacy.encode_auth_request(uri, uri, msgid, None, "REGISTER")


# --- the legacy stream -------------------------------------------------------------------


def test_stream_connect_answer_reconnect_down_and_up() -> None:
    heard = Heard()
    t = StreamTransport(events=heard)
    with FakeLegacyServer(challenge_answer) as server:
        t.configure("127.0.0.1", server.port, 500, 0)
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
        assert heard.take() == [metrics.CONNECT, metrics.PEER_UP, metrics.ANSWER, metrics.ANSWER]
        assert all(0 < rtt < 1.0 for rtt in heard.rtts)
    # the server is gone: the idle connection is found closed, and the connect fails
    with pytest.raises(TransportError):
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
    with pytest.raises(TransportError):
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
    assert heard.take() == [metrics.CONNECT_FAILED, metrics.PEER_DOWN, metrics.CONNECT_FAILED]
    with FakeLegacyServer(challenge_answer) as again:
        t.configure("127.0.0.1", again.port, 500, 0)  # a new address: a first connect again
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
        assert heard.take() == [metrics.CONNECT, metrics.PEER_UP, metrics.ANSWER]


def test_stream_reconnect_after_the_server_closed_the_idle_connection() -> None:
    heard = Heard()
    t = StreamTransport(events=heard)
    with FakeLegacyServer(challenge_answer) as server:
        t.configure("127.0.0.1", server.port, 500, 0)
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
        for conn in list(server._conns):
            conn.close()
        time.sleep(0.05)
        t.exchange(legacy_request(), time.monotonic(), 1.0, accept_any)
    assert heard.take() == [metrics.CONNECT, metrics.PEER_UP, metrics.ANSWER, metrics.RECONNECT, metrics.ANSWER]


def test_stream_timeout() -> None:
    heard = Heard()
    t = StreamTransport(events=heard)
    with FakeLegacyServer(lambda msg: None) as server:
        t.configure("127.0.0.1", server.port, 500, 0)
        with pytest.raises(TransportError, match="no answer"):
            t.exchange(legacy_request(), time.monotonic(), 0.1, accept_any)
    assert heard.take() == [metrics.CONNECT, metrics.PEER_UP, metrics.TIMEOUT]


# --- RFC 6733 peers ----------------------------------------------------------------------


@pytest.fixture
def peers() -> Iterator[list[FakePeer]]:
    made: list[FakePeer] = []
    yield made
    for p in made:
        p.stop()


def client(heard: Heard, *ports: int, **values: object) -> DiameterClient:
    c = DiameterClient(LocalPeer(ME, (6,), 42), events=heard)
    raw = {"protocol": "rfc4740", "peers": ",".join(f"127.0.0.1:{p}" for p in ports), **values}
    c.configure(settings.parse(raw))
    return c


def mar(hop: int, e2e: int, retransmit: bool) -> bytes:
    req = sip_app.MultimediaAuthRequest("s;1;2", ME.origin_host, ME.origin_realm, "example.com", "sip:a@b", "INVITE")
    return sip_app.encode_mar(req, hop, e2e, retransmit)


def ask(c: DiameterClient, timeout: float = 1.0) -> bytes:
    return c.request(mar, time.monotonic(), timeout)


def test_peer_connect_answer_and_reconnect_after_a_dpr(peers: list[FakePeer]) -> None:
    heard = Heard()
    p = FakePeer()
    peers.append(p)
    c = client(heard, p.port)
    ask(c)
    ask(c)
    assert heard.take() == [metrics.CONNECT, metrics.PEER_UP, metrics.ANSWER, metrics.ANSWER]
    p.push(base.encode_dpr(p.identity, 0, 555, 556))
    time.sleep(0.05)
    for link in c.links:
        link.protocol.last_received -= 1.0  # as if the worker had been idle
    ask(c)
    assert heard.take() == [metrics.RECONNECT, metrics.ANSWER]


def test_silent_peer_times_out_and_fails_over(peers: list[FakePeer]) -> None:
    heard = Heard()
    a, b = FakePeer(behaviour=lambda m: SILENT), FakePeer()
    peers += [a, b]
    c = client(heard, a.port, b.port, failover_timeout=100, answer_timeout=2000)
    ask(c, timeout=2.0)
    assert heard.take() == [
        metrics.CONNECT,
        metrics.PEER_UP,
        metrics.TIMEOUT,
        metrics.FAILOVER,
        metrics.CONNECT,
        metrics.PEER_UP,
        metrics.ANSWER,
    ]


def test_peer_dying_under_a_request_fails_over_without_a_timeout(peers: list[FakePeer]) -> None:
    heard = Heard()
    a, b = FakePeer(behaviour=lambda m: CLOSE), FakePeer()
    peers += [a, b]
    ask(client(heard, a.port, b.port))
    events = heard.take()
    assert events.count(metrics.FAILOVER) == 1 and metrics.TIMEOUT not in events
    assert events[-1] == metrics.ANSWER


def test_unreachable_peer_is_down_once_and_up_when_it_comes_back(peers: list[FakePeer]) -> None:
    heard = Heard()
    dead = FakePeer()
    port = dead.port
    dead.stop()
    c = client(heard, port, reconnect_interval=1, reconnect_max=1)
    for _ in range(2):
        with pytest.raises(TransportError):
            ask(c)
        time.sleep(0.01)
    # a peer never reached: no failover, no timeout, and down only once
    assert heard.take() == [metrics.CONNECT_FAILED, metrics.PEER_DOWN, metrics.CONNECT_FAILED]


# --- the plugin ----------------------------------------------------------------------------


def test_the_plugin_counts_outcomes_groups_and_exchanges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def respond(msg: legacy.Message) -> bytes:
        if msg.first(legacy.AVP_SERVICE_TYPE) == b"8":
            return answer_for(msg, 2001)
        return answer_for(msg, 2001 if msg.first(legacy.AVP_RESPONSE) else 4001, CHALLENGE)

    with FakeLegacyServer(respond) as server:
        cfg = tmp_path / "kamailio.cfg"
        cfg.write_text(
            f'#!KAMAILIO\nauth_diameter.diameter_client_host = "127.0.0.1" desc ""\n'
            f'auth_diameter.diameter_client_port = {server.port} desc ""\nrequest_route {{\n}}\n'
        )
        monkeypatch.setattr(cfgfile, "read_own_command_line", lambda: ["kamailio", "-f", str(cfg)])
        ksr = FakeKSR({"diameter_client_host": "127.0.0.1", "diameter_client_port": server.port})
        p = plugin.create(ksr)
        ksr.request("REGISTER", "sip:example.com", tu="sip:alice@example.com", fu="sip:alice@example.com")
        assert p.diameter_www_authorize(None, "example.com") == -5
        good = 'Digest username="alice", realm="example.com", nonce="n", uri="sip:example.com", response="r"'
        ksr.request("REGISTER", "sip:example.com", tu="sip:alice@example.com", mi=2, authorization=[good])
        assert p.diameter_www_authorize(None, "example.com") == 1
        assert p.diameter_is_user_in(None, "Credentials,voicemail") == 1
        assert p.diameter_is_user_in(None, "nonsense") == -1
        ksr.request("ACK")
        assert p.diameter_proxy_authorize(None, "") == 1
    assert 0 < ksr.stats.pop(metrics.RTT_SUM) < 3_000_000
    buckets = [ksr.stats.pop(name, 0) for _, name in metrics.RTT_BOUNDS]
    assert buckets == sorted(buckets) and buckets[-1] == 3  # cumulative; all three answered within 1 s
    assert ksr.stats == {
        "dia_auth_challenged": 1,
        "dia_auth_authorized": 1,
        "dia_auth_exempt": 1,
        metrics.GROUP_MEMBER: 1,
        metrics.GROUP_NOT_MEMBER: 1,
        "dia_connects": 1,
        "dia_peer_up": 1,
        metrics.RTT_COUNT: 3,
    }
    assert not any("statistics" in e for e in ksr.errors)
