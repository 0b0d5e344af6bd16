"""peer_state (one client connection's RFC 6733 state) and routing (peer choice, back-off); pure."""

from __future__ import annotations

import pytest
from conftest import Clock
from diameter.message import Message

from kamailio_auth_diameter import routing
from kamailio_auth_diameter.peer_state import Disconnected, PeerError, PeerProtocol, State, hop_by_hop_of
from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity

ME = Identity("w1.kamailio.example.com", "example.com")
PEER = Identity("aaa.example.com", "example.com")
TW = 30.0


def protocol(clock: Clock) -> PeerProtocol:
    caps = Capabilities(ME, ("127.0.0.1",), (sip_app.APP_SIP,), origin_state_id=7)
    return PeerProtocol(caps, TW, clock)


def cea_for(cer: bytes, result: int = 2001, apps: tuple[int, ...] = (6,), command: int = 257) -> bytes:
    msg = base.decode(cer)
    msg.header.command_code = command
    return base.encode_cea(msg, Capabilities(PEER, ("127.0.0.2",), apps), result)


def opened(clock: Clock) -> PeerProtocol:
    p = protocol(clock)
    p.receive(cea_for(p.start()))
    assert p.state is State.OPEN
    return p


def test_cer_names_us_and_application_6(clock: Clock) -> None:
    p = protocol(clock)
    caps = base.decode_capabilities(base.decode(p.start()))
    assert caps.identity == ME and caps.auth_application_ids == (6,) and caps.host_ip_addresses == ("127.0.0.1",)
    assert p.state is State.WAIT_CEA


def test_cea_success_opens_and_records_the_peer(clock: Clock) -> None:
    p = opened(clock)
    assert p.peer is not None and p.peer.identity == PEER


def test_relay_application_is_enough(clock: Clock) -> None:
    p = protocol(clock)
    p.receive(cea_for(p.start(), apps=(base.APP_RELAY,)))
    assert p.state is State.OPEN


CX = base.VendorApplication(10415, 16777216)


def cx_protocol(clock: Clock) -> PeerProtocol:
    caps = Capabilities(ME, ("127.0.0.1",), origin_state_id=7, supported_vendor_ids=(10415,), vendor_applications=(CX,))
    return PeerProtocol(caps, TW, clock)


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(Capabilities(PEER, ("127.0.0.2",), (6,), vendor_applications=(CX,)), id="vendor-specific"),
        pytest.param(Capabilities(PEER, ("127.0.0.2",), (16777216,)), id="bare-auth-application-id"),
        pytest.param(Capabilities(PEER, ("127.0.0.2",), (base.APP_RELAY,)), id="relay"),
    ],
)
def test_a_cx_client_opens_with_a_peer_naming_cx(clock: Clock, server: Capabilities) -> None:
    p = cx_protocol(clock)
    cer = p.start()
    caps = base.decode_capabilities(base.decode(cer))
    assert (caps.auth_application_ids, caps.vendor_applications, caps.supported_vendor_ids) == ((), (CX,), (10415,))
    p.receive(base.encode_cea(base.decode(cer), server, 2001))
    assert p.state is State.OPEN


def test_a_cx_client_refuses_a_peer_with_rfc_4740_only(clock: Clock) -> None:
    p = cx_protocol(clock)
    with pytest.raises(PeerError, match=r"none of our applications \[16777216\]"):
        p.receive(cea_for(p.start(), apps=(6,)))


@pytest.mark.parametrize(
    ("result", "apps", "text"),
    [(3010, (6,), "Result-Code 3010"), (2001, (1,), "none of our applications"), (5010, (6,), "5010")],
)
def test_refusing_cea_is_an_error_to_back_off_from(clock: Clock, result: int, apps: tuple[int, ...], text: str) -> None:
    p = protocol(clock)
    with pytest.raises(PeerError, match=text) as info:
        p.receive(cea_for(p.start(), result, apps))
    assert info.value.retry_soon is False


def test_first_message_must_be_our_cea(clock: Clock) -> None:
    p = protocol(clock)
    cer = p.start()
    with pytest.raises(PeerError, match="not the CEA"):
        p.receive(cea_for(cer, command=280))
    p = protocol(clock)
    p.start()
    with pytest.raises(PeerError, match="unreadable"):
        p.receive(b"\x01\x00\x00\x14" + b"\0" * 12)


def dwr(hop: int = 99) -> bytes:
    return base.encode_dwr(PEER, 1, hop, 5)


def test_dwr_is_answered_with_dwa(clock: Clock) -> None:
    p = opened(clock)
    got = p.receive(dwr())
    assert got.answer is None and got.reply is not None
    msg = Message.from_bytes(got.reply, plain_msg=True)
    assert msg.header.command_code == 280 and not msg.header.is_request and msg.header.hop_by_hop_identifier == 99
    assert base.unsigned(msg.avps, base.AVP_RESULT_CODE) == 2001


def test_dpr_is_answered_then_the_connection_ends(clock: Clock) -> None:
    p = opened(clock)
    with pytest.raises(Disconnected) as info:
        p.receive(base.encode_dpr(PEER, 1, 5, 6))  # 1 BUSY: do not come back at once
    assert info.value.retry_soon is False and p.state is State.CLOSED
    assert Message.from_bytes(info.value.dpa, plain_msg=True).header.command_code == 282
    p = opened(clock)
    with pytest.raises(Disconnected) as info:
        p.receive(base.encode_dpr(PEER, base.DISCONNECT_REBOOTING, 5, 6))
    assert info.value.retry_soon is True


def test_other_requests_get_3001(clock: Clock) -> None:
    p = opened(clock)
    req = base.encode(base.request_header(999, 0, 1, 2, proxiable=False), base.identity_avps(PEER))
    msg = Message.from_bytes(p.receive(req).reply or b"", plain_msg=True)
    assert base.unsigned(msg.avps, base.AVP_RESULT_CODE) == 3001 and msg.header.command_flags & base.FLAG_ERROR


def test_watchdog_after_tw_of_silence_once(clock: Clock) -> None:
    p = opened(clock)
    assert p.watchdog() is None
    clock.now += TW - 0.1
    assert p.watchdog() is None
    clock.now += 0.2
    request = p.watchdog()
    assert request is not None and p.watchdog() is None  # one outstanding at a time
    msg = base.decode(request)
    answer = base.encode_dwa(msg, PEER, 1)
    assert p.receive(answer).answer is None
    assert (p.watchdogs_sent, p.watchdogs_answered) == (1, 1)
    clock.now += TW
    assert p.watchdog() is not None


def test_any_frame_resets_tw(clock: Clock) -> None:
    p = opened(clock)
    clock.now += TW - 1
    p.receive(dwr())
    clock.now += 2
    assert p.watchdog() is None


def test_application_answers_pass_through(clock: Clock) -> None:
    p = opened(clock)
    hop = p.hop_by_hop()
    frame = base.encode(base.request_header(286, 6, hop, 1, proxiable=True), [base.avp(base.AVP_SESSION_ID, "s")])
    answer = base.encode_answer(base.decode(frame), PEER, 2001)
    got = p.receive(answer)
    assert got.answer == answer and hop_by_hop_of(answer) == hop


# --- routing -------------------------------------------------------------------------


def test_round_robin_from_the_workers_offset(clock: Clock) -> None:
    r = routing.Routing(3, offset=4, clock=clock)
    assert [r.candidates()[0] for _ in range(4)] == [1, 2, 0, 1]
    assert r.candidates() == [2, 0, 1]


def test_back_off_doubles_up_to_the_ceiling(clock: Clock) -> None:
    r = routing.Routing(2, 0, clock)
    r.interval, r.ceiling = 1.0, 5.0
    waits = []
    for _ in range(5):
        r.failed(0)
        waits.append(r.down_for(0))
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert 0 not in r.candidates()
    clock.now += 5.0
    assert 0 in r.candidates()
    r.succeeded(0)
    r.failed(0)
    assert r.down_for(0) == 1.0


def test_refusal_waits_the_ceiling(clock: Clock) -> None:
    r = routing.Routing(2, 0, clock)
    r.interval, r.ceiling = 1.0, 10.0
    r.failed(0, retry_soon=False)
    assert r.down_for(0) == 10.0
    assert r.candidates() == [1]


def test_a_silent_peer_goes_last_for_the_interval_but_is_not_excluded(clock: Clock) -> None:
    """One late answer is no reason to fail requests: the peer is tried after the others."""
    r = routing.Routing(3, 0, clock)
    r.interval = 1.0
    r.silent(0)
    assert r.down_for(0) == 0.0
    assert [r.candidates() for _ in range(3)] == [[1, 2, 0], [1, 2, 0], [2, 1, 0]]
    r.failed(1)
    assert r.candidates() == [2, 0]
    clock.now += 1.0
    assert r.candidates() == [1, 2, 0]  # the interval is over: plain round robin again
    r.silent(2)
    r.succeeded(2)
    assert r.candidates() == [2, 0, 1]


def test_a_single_silent_peer_is_still_a_candidate(clock: Clock) -> None:
    r = routing.Routing(1, 0, clock)
    r.silent(0)
    assert r.candidates() == [0]
