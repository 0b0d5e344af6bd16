"""transport/client + transport/peer against scripted peers on 127.0.0.1: failover, idle, watchdog, refusals."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from diameter.message import Message

from kamailio_auth_diameter import peer_state, settings
from kamailio_auth_diameter.transport.client import DiameterClient, LocalPeer, worker_identity
from kamailio_auth_diameter.transport.stream import RequestTooLarge, TransportError
from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import Identity
from tests.fake_network import BlackHoleSocket, names
from tests.fake_peer import CLOSE, SILENT, FakePeer, answer_mar

ME = Identity("w1.kamailio.example.com", "example.com")
T_FLAG = base.FLAG_RETRANSMIT


@pytest.fixture
def peers() -> Iterator[list[FakePeer]]:
    made: list[FakePeer] = []
    yield made
    for p in made:
        p.stop()


def idle(c: DiameterClient) -> None:
    """As if the worker had waited for SIP long enough for its next request to look at
    what the peers sent meanwhile."""
    for link in c.links:
        if link.protocol is not None:
            link.protocol.last_received -= 1.0


def new_peer(peers: list[FakePeer], **kw) -> FakePeer:
    p = FakePeer(**kw)
    peers.append(p)
    return p


def client(*ports: int, **values: object) -> DiameterClient:
    c = DiameterClient(LocalPeer(ME, (6,), 42))
    raw = {"protocol": "rfc4740", "peers": ",".join(f"127.0.0.1:{p}" for p in ports), **values}
    c.configure(settings.parse(raw))
    return c


def mar(hop: int, e2e: int, retransmit: bool) -> bytes:
    req = sip_app.MultimediaAuthRequest("s;1;2", ME.origin_host, ME.origin_realm, "example.com", "sip:a@b", "INVITE")
    return sip_app.encode_mar(req, hop, e2e, retransmit)


def ask(c: DiameterClient, timeout: float = 1.0) -> int:
    frame = c.request(mar, time.monotonic(), timeout)
    return sip_app.decode_maa(frame)[1].result_code


def test_worker_identity() -> None:
    assert worker_identity("kamailio.example.com", 3, 99) == "w3.kamailio.example.com"
    assert worker_identity("kamailio.example.com", -2, 99) == "p99.kamailio.example.com"
    assert worker_identity("kamailio.example.com", None, 99) == "p99.kamailio.example.com"


def test_cer_then_requests_on_one_connection(peers: list[FakePeer]) -> None:
    p = new_peer(peers)
    c = client(p.port)
    assert [ask(c) for _ in range(3)] == [2006] * 3
    assert len(p.connections) == 1 and len(p.requests()) == 3
    cer = p.cers[0]
    assert cer.identity == ME and cer.auth_application_ids == (6,) and cer.host_ip_addresses == ("127.0.0.1",)
    assert cer.origin_state_id == 42
    assert cer.vendor_applications == () and cer.supported_vendor_ids == ()  # RFC 4740: as before


def test_a_cx_worker_names_its_vendor_application_in_the_cer(peers: list[FakePeer]) -> None:
    cx = base.VendorApplication(10415, 16777216)
    p = new_peer(peers, applications=(16777216,))
    c = DiameterClient(LocalPeer(ME, (), 42, vendor_applications=(cx,)))
    c.configure(settings.parse({"protocol": "rfc4740", "peers": f"127.0.0.1:{p.port}"}))
    assert ask(c) == 2006
    cer = p.cers[0]
    assert (cer.auth_application_ids, cer.vendor_applications, cer.supported_vendor_ids) == ((), (cx,), (10415,))


def test_load_is_shared_round_robin(peers: list[FakePeer]) -> None:
    a, b = new_peer(peers), new_peer(peers)
    c = client(a.port, b.port)
    for _ in range(10):
        ask(c)
    assert (len(a.requests()), len(b.requests())) == (5, 5)


def test_dwr_received_while_idle_is_answered_then_the_connection_renewed(peers: list[FakePeer]) -> None:
    """A peer that sent DWRs to an idle worker may no longer deliver its answers (freeDiameter's
    SUSPECT), so the worker answers, closes (no DPR: see PeerLink._renew) and reconnects."""
    p = new_peer(peers)
    c = client(p.port)
    ask(c)
    p.push(base.encode_dwr(p.identity, 1, 777, 778))
    time.sleep(0.05)
    idle(c)
    assert ask(c) == 2006
    time.sleep(0.05)
    assert [r.hop_by_hop for r in p.answers(base.CMD_DEVICE_WATCHDOG)] == [777]
    assert p.requests(base.CMD_DISCONNECT_PEER) == []
    assert len(p.connections) == 2 and p.requests()[-1].connection == 1


def test_connection_closed_while_idle_is_replaced_within_the_request(peers: list[FakePeer]) -> None:
    p = new_peer(peers)
    c = client(p.port)
    ask(c)
    p.drop_connections()
    time.sleep(0.05)
    idle(c)
    assert ask(c) == 2006
    assert len(p.connections) == 2 and c.links[0].connections == 2
    assert not any(r.flags & T_FLAG for r in p.requests())  # nothing was lost, so nothing is a re-send


def test_under_load_a_closed_connection_is_found_by_the_request_and_it_is_re_sent(peers: list[FakePeer]) -> None:
    """No idle check right after an answer: the request meets the closed connection, and
    with no other peer it goes again, flagged T, to the same peer on a new connection."""
    p = new_peer(peers)
    c = client(p.port)
    ask(c)
    p.drop_connections()
    time.sleep(0.05)
    assert ask(c) == 2006
    assert len(p.connections) == 2 and p.requests()[-1].flags & T_FLAG


def test_silence_longer_than_tw_sends_a_dwr_with_the_request(peers: list[FakePeer]) -> None:
    p = new_peer(peers)
    c = client(p.port, watchdog_interval=6000)
    ask(c)
    link = c.links[0]
    assert link.protocol is not None
    link.protocol.last_received -= 7.0
    assert ask(c) == 2006
    assert len(p.requests(base.CMD_DEVICE_WATCHDOG)) == 1
    assert link.protocol.watchdogs_answered == 1


def test_silent_peer_fails_over_with_t_flag_and_same_end_to_end(peers: list[FakePeer]) -> None:
    a = new_peer(peers, behaviour=lambda m: SILENT)
    b = new_peer(peers)
    c = client(a.port, b.port, failover_timeout=100, answer_timeout=2000)
    start = time.monotonic()
    assert ask(c, timeout=2.0) == 2006
    assert time.monotonic() - start < 1.0
    first, second = a.requests()[0], b.requests()[0]
    assert not first.flags & T_FLAG and second.flags & T_FLAG
    assert first.end_to_end == second.end_to_end
    # for reconnect_interval the silent peer comes after b, even when the round robin says a
    assert ask(c) == 2006 and ask(c) == 2006 and len(a.requests()) == 1


def test_peer_dying_with_the_request_fails_over(peers: list[FakePeer]) -> None:
    a = new_peer(peers, behaviour=lambda m: CLOSE)
    b = new_peer(peers)
    c = client(a.port, b.port)
    assert ask(c) == 2006
    first, second = a.requests()[0], b.requests()[0]
    assert second.flags & T_FLAG and first.end_to_end == second.end_to_end


def test_3002_is_re_sent_without_t_flag(peers: list[FakePeer]) -> None:
    def unable(msg: Message) -> bytes:
        return base.encode_answer(msg, Identity("relay.example.com", "example.com"), 3002)

    a = new_peer(peers, behaviour=unable)
    b = new_peer(peers)
    c = client(a.port, b.port)
    assert ask(c) == 2006
    first, second = a.requests()[0], b.requests()[0]
    assert not second.flags & T_FLAG and first.end_to_end == second.end_to_end


def test_only_one_re_send(peers: list[FakePeer]) -> None:
    trio = [new_peer(peers, behaviour=lambda m: CLOSE) for _ in range(3)]
    c = client(*(p.port for p in trio))
    with pytest.raises(TransportError, match="closed"):
        ask(c)
    assert sum(len(p.requests()) for p in trio) == 2


def test_refused_cer_moves_to_the_next_peer_without_a_re_send(peers: list[FakePeer]) -> None:
    a = new_peer(peers, cea_result=3010)
    b = new_peer(peers)
    c = client(a.port, b.port)
    assert ask(c) == 2006
    assert not b.requests()[0].flags & T_FLAG
    assert c.links[0].connected is False


def test_dead_peer_is_skipped_and_all_dead_fails_at_once(peers: list[FakePeer]) -> None:
    b = new_peer(peers)
    dead = FakePeer()
    dead.stop()
    c = client(dead.port, b.port, reconnect_interval=5000)
    assert ask(c) == 2006 and ask(c) == 2006
    b.stop()
    with pytest.raises(TransportError):
        ask(c)
    start = time.monotonic()
    with pytest.raises(TransportError, match="backing off"):
        ask(c)
    assert time.monotonic() - start < 0.1


def test_dpr_is_answered_and_the_next_request_reconnects(peers: list[FakePeer]) -> None:
    p = new_peer(peers)
    c = client(p.port)
    ask(c)
    p.push(base.encode_dpr(p.identity, 0, 555, 556))
    time.sleep(0.05)
    idle(c)
    assert ask(c) == 2006
    assert [r.hop_by_hop for r in p.answers(base.CMD_DISCONNECT_PEER)] == [555]
    assert len(p.connections) == 2


def test_garbage_closes_the_connection_and_fails_over(peers: list[FakePeer]) -> None:
    a = new_peer(peers, behaviour=lambda m: b"\x02garbage-garbage-garbage")
    b = new_peer(peers)
    c = client(a.port, b.port)
    assert ask(c) == 2006
    assert b.requests()[0].flags & T_FLAG


def test_late_answer_of_another_request_is_dropped(peers: list[FakePeer]) -> None:
    def twice(msg: Message) -> bytes:
        stale = base.decode(answer_mar(msg, Identity("aaa.example.com", "example.com"), 5012))
        stale.header.hop_by_hop_identifier ^= 1
        return stale.as_bytes() + answer_mar(msg, Identity("aaa.example.com", "example.com"))

    p = new_peer(peers, behaviour=twice)
    assert ask(client(p.port)) == 2006


def test_single_silent_peer_fails_within_the_deadline(peers: list[FakePeer]) -> None:
    p = new_peer(peers, behaviour=lambda m: SILENT)
    c = client(p.port)
    start = time.monotonic()
    with pytest.raises(TransportError, match="no answer"):
        ask(c, timeout=0.3)
    assert time.monotonic() - start < 0.8


def test_changed_peer_list_replaces_connections_with_a_dpr(peers: list[FakePeer]) -> None:
    a, b = new_peer(peers), new_peer(peers)
    c = client(a.port)
    ask(c)
    c.configure(settings.parse({"protocol": "rfc4740", "peers": f"127.0.0.1:{b.port}"}))
    time.sleep(0.05)
    assert len(a.requests(base.CMD_DISCONNECT_PEER)) == 1
    assert ask(c) == 2006 and len(b.requests()) == 1


# --- deadlines whatever the network does -------------------------------------------


def test_two_black_hole_addresses_of_a_peer_share_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    names(monkeypatch, {"two-holes.peer.test": ["198.51.100.1", "198.51.100.2"]})
    BlackHoleSocket.waits = []
    monkeypatch.setattr(socket, "socket", BlackHoleSocket)
    c = DiameterClient(LocalPeer(ME, (6,), 42))
    c.configure(settings.parse({"protocol": "rfc4740", "peers": "two-holes.peer.test", "connect_timeout": 400}))
    started = time.monotonic()
    with pytest.raises(TransportError, match="connect failed"):
        c.request(mar, started, 0.5)
    assert 0.45 <= time.monotonic() - started < 0.6
    assert len(BlackHoleSocket.waits) == 2 and sum(w or 0 for w in BlackHoleSocket.waits) <= 0.51


def test_a_peer_whose_name_does_not_resolve_in_time_costs_no_more_than_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names(monkeypatch, {}, slow={"dead-dns.peer.test": 2.0})
    c = DiameterClient(LocalPeer(ME, (6,), 42))
    c.configure(settings.parse({"protocol": "rfc4740", "peers": "dead-dns.peer.test"}))
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"dead-dns\.peer\.test"):
        c.request(mar, started, 0.3)
    assert time.monotonic() - started < 0.45


def test_closing_a_connection_keeps_to_the_deadline(peers: list[FakePeer]) -> None:
    """A peer that neither answers our DPR nor closes: the DPA and FIN waits end at the deadline."""
    a, b = new_peer(peers, answer_dpr=False), new_peer(peers)
    c = client(a.port)
    ask(c)
    started = time.monotonic()
    c.configure(settings.parse({"protocol": "rfc4740", "peers": f"127.0.0.1:{b.port}"}), deadline=started + 0.03)
    assert time.monotonic() - started < 0.05  # PART_WAIT twice (0.2 s) before
    time.sleep(0.05)
    assert len(a.requests(base.CMD_DISCONNECT_PEER)) == 1


def test_a_peer_that_keeps_sending_while_we_were_idle_cannot_hold_a_request_past_its_deadline(
    peers: list[FakePeer],
) -> None:
    p = new_peer(peers)
    c = client(p.port)
    ask(c)
    flood = base.encode_dwr(p.identity, 1, 7, 7) * 100_000  # 8 MB: more than can be read before the deadline

    def push() -> None:
        with contextlib.suppress(OSError):
            p.push(flood)

    threading.Thread(target=push, daemon=True).start()
    time.sleep(0.05)
    idle(c)
    started = time.monotonic()
    with pytest.raises(TransportError):
        ask(c, timeout=0.3)
    assert time.monotonic() - started < 0.4


# --- one slow answer does not fail the requests after it ------------------------------


def silent_once() -> Callable[[Message], bytes]:
    """A peer behaviour: no answer to the first request, 2006 to every other."""
    first = [True]

    def behaviour(msg: Message) -> bytes:
        if first[0]:
            first[0] = False
            return SILENT
        return answer_mar(msg, Identity("aaa.example.com", "example.com"))

    return behaviour


def test_a_single_peer_that_was_silent_once_is_tried_again(peers: list[FakePeer]) -> None:
    p = new_peer(peers, behaviour=silent_once())
    c = client(p.port, reconnect_interval=10_000)
    with pytest.raises(TransportError, match="no answer"):
        ask(c, timeout=0.2)
    assert ask(c) == 2006
    assert len(p.connections) == 2  # the late answer's connection was closed


def test_a_silent_peer_is_tried_after_the_others_not_excluded(peers: list[FakePeer]) -> None:
    a = new_peer(peers, behaviour=silent_once())
    dead = FakePeer()
    dead.stop()
    c = client(a.port, dead.port, reconnect_interval=10_000, failover_timeout=100)
    with pytest.raises(TransportError):
        ask(c, timeout=0.3)  # a is silent, the other peer refuses connections
    assert ask(c) == 2006  # a comes after the others but is still tried
    assert len(a.requests()) == 2


def test_a_connection_that_broke_under_a_request_does_not_exclude_its_peer(peers: list[FakePeer]) -> None:
    closes = [True]

    def behaviour(msg: Message) -> bytes | None:
        if closes[0]:
            closes[0] = False
            return CLOSE
        return answer_mar(msg, Identity("aaa.example.com", "example.com"))

    a = new_peer(peers, behaviour=silent_once())
    dead = FakePeer()
    dead.stop()
    c = client(a.port, dead.port, reconnect_interval=10_000)
    with pytest.raises(TransportError):
        ask(c)
    assert ask(c) == 2006


# --- a request too large for a frame --------------------------------------------------


def huge_mar(hop: int, e2e: int, retransmit: bool) -> bytes:
    req = sip_app.MultimediaAuthRequest(
        "s;1;2", ME.origin_host, ME.origin_realm, "example.com", "sip:a@b", "INVITE", user_name="u" * 70_000
    )
    return sip_app.encode_mar(req, hop, e2e, retransmit)


def test_a_request_over_the_frame_limit_is_never_sent_and_blames_no_peer(peers: list[FakePeer]) -> None:
    a, b = new_peer(peers), new_peer(peers)
    c = client(a.port, b.port)
    ask(c)
    ask(c)
    with pytest.raises(RequestTooLarge):
        c.request(huge_mar, time.monotonic(), 1.0)
    assert (len(a.requests()), len(b.requests())) == (1, 1)
    assert all(link.connected for link in c.links)
    assert [ask(c) for _ in range(4)] == [2006] * 4
    assert (len(a.connections), len(b.connections)) == (1, 1)
    assert not any(r.flags & T_FLAG for r in a.requests() + b.requests())


def test_a_request_over_the_frame_limit_on_a_new_connection_leaves_it_usable(peers: list[FakePeer]) -> None:
    p = new_peer(peers)
    c = client(p.port)
    with pytest.raises(RequestTooLarge):
        c.request(huge_mar, time.monotonic(), 1.0)
    assert ask(c) == 2006
    assert len(p.connections) == 1 and len(p.requests()) == 1


# --- anything a hostile peer makes our code raise -------------------------------------


def test_a_cea_that_makes_the_decoder_raise_closes_the_link_and_the_next_request_starts_with_a_cer(
    peers: list[FakePeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = new_peer(peers)
    c = client(p.port, reconnect_interval=0)  # no back-off after the failed opening
    real = peer_state.base.decode

    def decode(frame: bytes, *args: object) -> Message:
        command = int.from_bytes(frame[5:8], "big")
        if command == base.CMD_CAPABILITIES_EXCHANGE and not frame[4] & base.FLAG_REQUEST:  # not the fake peer's CER
            raise RecursionError("maximum recursion depth exceeded")
        return real(frame, *args)

    monkeypatch.setattr(peer_state.base, "decode", decode)
    with pytest.raises(TransportError, match="RecursionError"):
        ask(c)
    assert not c.links[0].connected
    monkeypatch.setattr(peer_state.base, "decode", real)
    assert ask(c) == 2006
    time.sleep(0.05)
    second = [r for r in p.received if r.connection == 1]
    assert second[0].command == base.CMD_CAPABILITIES_EXCHANGE and len(p.connections) == 2
    assert [r.command for r in p.received if r.connection == 0] == [base.CMD_CAPABILITIES_EXCHANGE]


def test_an_answer_that_makes_the_decoder_raise_is_a_transport_error(
    peers: list[FakePeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    p = new_peer(peers)
    c = client(p.port)
    ask(c)

    def receive(self: peer_state.PeerProtocol, frame: bytes) -> peer_state.Received:
        raise MemoryError("hostile")

    monkeypatch.setattr(peer_state.PeerProtocol, "receive", receive)
    with pytest.raises(TransportError, match="MemoryError"):
        ask(c)
    assert not c.links[0].connected
