"""Grouped AVPs nested past base.MAX_DEPTH: every reader ends in DecodeError (or a closed
connection), never RecursionError, whichever side reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Clock

from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.peer_state import PeerError, PeerProtocol
from kamailio_auth_diameter.server.auth import SipAuthority
from kamailio_auth_diameter.server.diameter import DiameterResponder, PeerSession
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.wire import base, cx, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.framing import MAX_MESSAGE

ME = Identity("w1.kamailio.example.com", "example.com")
PEER = Identity("aaa.example.com", "example.com")
DEEP = 1500  # what the attack used; ~8,000 fit in a 64 KiB frame


def nest(code: int, depth: int, inner: bytes = b"") -> bytes:
    """``depth`` vendor-0 Grouped AVPs with this code, each inside the one before."""
    avp = inner
    for _ in range(depth):
        avp = base.pack_avp(code, avp)
    return avp


def test_depth_at_the_limit_decodes_and_past_it_is_refused() -> None:
    head = base.pack_text(base.AVP_ORIGIN_HOST, "x") + base.pack_text(base.AVP_ORIGIN_REALM, "y")
    vsai = base.AVP_VENDOR_SPECIFIC_APPLICATION_ID
    fits = base.pack_message(0, 257, 0, 1, 1, head + nest(vsai, base.MAX_DEPTH))
    base.decode(fits)
    too_deep = base.pack_message(0, 257, 0, 1, 1, head + nest(vsai, base.MAX_DEPTH + 1))
    with pytest.raises(base.DecodeError, match="nested"):
        base.decode(too_deep)


def test_deep_cea_is_a_peer_error_not_a_recursion_error(clock: Clock) -> None:
    caps = Capabilities(ME, ("127.0.0.1",), (sip_app.APP_SIP,), origin_state_id=7)
    proto = PeerProtocol(caps, 30.0, clock)
    cer = base.decode(proto.start())
    cea = base.encode_cea(cer, Capabilities(PEER, ("127.0.0.2",), (6,)), base.RESULT_SUCCESS)
    body = cea[base.HEADER_LEN :] + nest(base.AVP_VENDOR_SPECIFIC_APPLICATION_ID, DEEP)
    hostile = base.pack_message(0, 257, 0, cer.header.hop_by_hop_identifier, 0, body)
    with pytest.raises(PeerError, match="nested"):
        proto.receive(hostile)


def test_deep_maa_is_read_only_as_deep_as_needed() -> None:
    """The lean reader opens the two levels an MAA's challenge needs, so what lies
    deeper is never walked: the answer decodes, without a challenge."""
    head = base.pack_u32(base.AVP_RESULT_CODE, 2001) + base.pack_text(base.AVP_ORIGIN_HOST, "x")
    head += base.pack_text(base.AVP_ORIGIN_REALM, "y")
    maa = base.pack_message(0, 286, 6, 1, 1, head + nest(sip_app.AVP_SIP_AUTH_DATA_ITEM, DEEP))
    assert sip_app.decode_maa(maa)[1] == sip_app.MultimediaAuthAnswer(2001)


def test_deep_cx_maa_is_read_only_as_deep_as_needed() -> None:
    """decode_maa opens SIP-Auth-Data-Item, then SIP-Digest-Authenticate, and nothing
    deeper: a chain of 3GPP groups under them is never walked."""
    head = base.pack_u32(base.AVP_RESULT_CODE, 2001) + base.pack_text(base.AVP_ORIGIN_HOST, "x")
    head += base.pack_text(base.AVP_ORIGIN_REALM, "y")
    chain = b""
    for _ in range(DEEP):
        chain = base.pack_avp(cx.AVP_SIP_AUTH_DATA_ITEM, chain, vendor=cx.VENDOR_3GPP)
    maa = base.pack_message(0, 303, cx.APP_CX, 1, 1, head + chain)
    assert cx.decode_maa(maa)[1] == cx.MultimediaAuthAnswer(result_code=2001)
    digest = base.pack_text(104, "r") + base.pack_text(121, "0" * 32)
    for _ in range(DEEP):
        digest = base.pack_avp(cx.AVP_SIP_DIGEST_AUTHENTICATE, digest, 0, cx.VENDOR_3GPP)
    maa = base.pack_message(0, 303, cx.APP_CX, 1, 1, head + base.pack_avp(612, digest, vendor=cx.VENDOR_3GPP))
    with pytest.raises(base.RequestError):  # the outer 635 holds only another 635: no realm, no H(A1)
        cx.decode_maa(maa)


def test_lean_unknown_mandatory_stops_at_the_limit_in_vendor_groups() -> None:
    body = base.pack_u32(9999, 1)
    for _ in range(DEEP):
        body = base.pack_avp(cx.AVP_SIP_AUTH_DATA_ITEM, body, vendor=cx.VENDOR_3GPP)
    avps = base.LeanAvps.parse(body, 0, len(body))
    with pytest.raises(base.DecodeError, match="nested"):
        base.lean_unknown_mandatory(avps, cx.RECOGNISED, cx.GROUPED)


def test_lean_unknown_mandatory_stops_at_the_limit() -> None:
    body = nest(sip_app.AVP_SIP_AUTH_DATA_ITEM, DEEP, base.pack_u32(9999, 1))
    avps = base.LeanAvps.parse(body, 0, len(body))
    with pytest.raises(base.DecodeError, match="nested"):
        base.lean_unknown_mandatory(avps, sip_app.RECOGNISED, sip_app.GROUPED)


@pytest.fixture
def session(tmp_path: Path, clock: Clock) -> PeerSession:
    store = SqliteStore(str(tmp_path / "auth.sqlite"))
    authority = SipAuthority(store, NonceFactory(store.nonce_secret(), clock=clock))
    responder = DiameterResponder(authority, PEER, None, origin_state_id=1, clock=clock)
    s = PeerSession(responder, "127.0.0.1", "test")
    cer = base.encode_cer(Capabilities(ME, ("127.0.0.1",), (sip_app.APP_SIP,)), 1, 1)
    assert not s.receive(cer).close
    return s


@pytest.mark.parametrize("code", [sip_app.AVP_SIP_AUTH_DATA_ITEM, base.AVP_PROXY_INFO])
def test_server_closes_on_a_deep_mar(session: PeerSession, code: int) -> None:
    mar = sip_app.MultimediaAuthRequest(
        session_id="s;1",
        origin_host=ME.origin_host,
        origin_realm=ME.origin_realm,
        destination_realm="example.com",
        sip_aor="sip:alice@example.com",
        sip_method="REGISTER",
    )
    good = sip_app.encode_mar(mar, 2, 2)
    inner = base.pack_avp(9999, b"x", base.AVP_FLAG_MANDATORY)
    hostile = base.pack_message(0xC0, 286, 6, 2, 2, good[base.HEADER_LEN :] + nest(code, DEEP, inner))
    reply = session.receive(hostile)
    assert reply.close and not reply.data


@pytest.mark.parametrize("code", [(cx.AVP_SIP_AUTH_DATA_ITEM, cx.VENDOR_3GPP), base.AVP_PROXY_INFO])
def test_server_closes_on_a_deep_cx_mar(session: PeerSession, code: base.AvpKey) -> None:
    mar = cx.MultimediaAuthRequest("s;1", ME.origin_host, ME.origin_realm, "example.com", "alice", "sip:a@b", "sip:k")
    good = cx.encode_mar(mar, 3, 3)
    chain = base.pack_avp(9999, b"x", base.AVP_FLAG_MANDATORY)
    for _ in range(DEEP):
        chain = base.pack_avp(code[0], chain, vendor=code[1]) if isinstance(code, tuple) else base.pack_avp(code, chain)
    hostile = base.pack_message(0xC0, 303, cx.APP_CX, 3, 3, good[base.HEADER_LEN :] + chain)
    reply = session.receive(hostile)
    assert reply.close and not reply.data


def test_server_closes_on_a_deep_cer(tmp_path: Path, clock: Clock) -> None:
    store = SqliteStore(str(tmp_path / "auth.sqlite"))
    authority = SipAuthority(store, NonceFactory(store.nonce_secret(), clock=clock))
    s = PeerSession(DiameterResponder(authority, PEER, None, origin_state_id=1, clock=clock), "127.0.0.1", "t")
    cer = base.encode_cer(Capabilities(ME, ("127.0.0.1",), (sip_app.APP_SIP,)), 1, 1)
    hostile = base.pack_message(0x80, 257, 0, 1, 1, cer[base.HEADER_LEN :] + nest(base.AVP_PROXY_INFO, DEEP))
    reply = s.receive(hostile)
    assert reply.close and not reply.data


def test_a_command_nobody_knows_is_not_decoded_deeper_than_read(session: PeerSession) -> None:
    """python-diameter decodes every Grouped AVP of a command it does not know, down to the
    bottom (RecursionError for 1,000 deep, found by tests/fuzz.py); base.decode does not."""
    head = base.pack_text(base.AVP_ORIGIN_HOST, ME.origin_host) + base.pack_text(base.AVP_ORIGIN_REALM, "x")
    raw = base.pack_message(0x80, 999, 0, 5, 5, head + nest(401, 1000, base.pack_u32(1, 1)))
    msg = base.decode(raw)
    assert msg.header.command_code == 999
    reply = session.receive(raw)
    assert not reply.close and base.unsigned(base.decode(reply.data).avps, base.AVP_RESULT_CODE) == 3001


def test_a_one_byte_address_is_5004_not_an_exception(tmp_path: Path, clock: Clock) -> None:
    store = SqliteStore(str(tmp_path / "auth.sqlite"))
    authority = SipAuthority(store, NonceFactory(store.nonce_secret(), clock=clock))
    s = PeerSession(DiameterResponder(authority, PEER, None, origin_state_id=1, clock=clock), "127.0.0.1", "t")
    cer = base.encode_cer(Capabilities(ME, ("127.0.0.1",), (sip_app.APP_SIP,)), 1, 1)
    hostile = base.pack_message(0x80, 257, 0, 1, 1, cer[base.HEADER_LEN :] + base.pack_avp(257, b"\x01"))
    reply = s.receive(hostile)
    assert reply.close and base.unsigned(base.decode(reply.data).avps, base.AVP_RESULT_CODE) == 5004


def test_an_answer_longer_than_a_frame_is_never_sent(session: PeerSession) -> None:
    """A near-64 KiB request whose answer would copy it back (Failed-AVP) is answered
    without the copy; one whose echoed Proxy-Info alone fills a frame closes."""
    head = base.pack_text(base.AVP_ORIGIN_HOST, ME.origin_host) + base.pack_text(base.AVP_ORIGIN_REALM, "x")
    cer = base.encode_cer(Capabilities(ME, ("127.0.0.1",), (sip_app.APP_SIP,)), 6, 6)
    filler = base.pack_avp(9999, bytes(MAX_MESSAGE - len(cer) - 8), base.AVP_FLAG_MANDATORY)
    request = base.pack_message(0x80, 257, 0, 6, 6, cer[base.HEADER_LEN :] + filler)
    assert len(request) == MAX_MESSAGE
    reply = session.receive(request)
    answer = base.decode(reply.data)
    assert base.unsigned(answer.avps, base.AVP_RESULT_CODE) == 5001 and base.find(answer.avps, 279) is None
    room = MAX_MESSAGE - base.HEADER_LEN - len(head) - 8 - 12 - 8
    proxy_info = base.pack_avp(base.AVP_PROXY_INFO, base.pack_text(280, "p") + base.pack_avp(33, bytes(room)))
    request = base.pack_message(0x80, 999, 0, 7, 7, head + proxy_info)
    assert len(request) == MAX_MESSAGE
    reply = session.receive(request)
    assert reply.close and not reply.data
