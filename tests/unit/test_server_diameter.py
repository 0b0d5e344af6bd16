"""server/auth SipAuthority (RFC 4740 decisions) and server/diameter (the responder peer)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock
from diameter.message import Message

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.auth import SipAuthority
from kamailio_auth_diameter.server.diameter import (
    DiameterResponder,
    PeerSession,
    PeerState,
    Reply,
    certificate_names,
    name_matches,
    parse_peers,
    serve_diameter,
)
from kamailio_auth_diameter.server.limits import Limits
from kamailio_auth_diameter.server.listener import Guard, bind
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.sip_app import DigestResponse, MultimediaAuthRequest, ServerAssignmentRequest

REALM = "example.com"
PASSWORD = "s3cret"
ME = Identity("aaa.example.org", "example.org")
PEER = Identity("kamailio.example.org", "example.org")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "auth.sqlite"))
    s.add_user("alice", REALM, PASSWORD)
    s.add_user("carol", REALM, "pw")
    s.add_group("alice", "voicemail")
    s.add_group("alice", "admins")
    s.add_group("alice@example.com", "international")
    yield s
    s.close()


@pytest.fixture
def authority(store: SqliteStore, clock: Clock) -> SipAuthority:
    return SipAuthority(store, NonceFactory(store.nonce_secret(), lifetime=300, clock=clock))


def mar(
    credentials: DigestResponse | None = None,
    registrar: bool = True,
    aor: str = "sip:alice@example.com",
    method: str = "REGISTER",
) -> MultimediaAuthRequest:
    return MultimediaAuthRequest(
        session_id="k;1;1",
        origin_host=PEER.origin_host,
        origin_realm=PEER.origin_realm,
        destination_realm="example.org",
        sip_aor=aor,
        sip_method=method,
        user_name=credentials.username if credentials else None,
        server_uri="sip:kamailio.example.org" if registrar else None,
        credentials=credentials,
    )


def creds(
    nonce: str,
    username: str = "alice",
    password: str = PASSWORD,
    method: str | None = "REGISTER",
    digest_method: str = "REGISTER",
    nc: int = 1,
    uri: str = "sip:example.com",
) -> DigestResponse:
    d = digest.DigestInput(method=digest_method, uri=uri, nonce=nonce, qop="auth", nc=f"{nc:08x}", cnonce="abc")
    return DigestResponse(
        username=username,
        realm=REALM,
        nonce=nonce,
        uri=uri,
        response=digest.response(digest.ha1(username, REALM, password), d),
        algorithm="MD5",
        cnonce="abc",
        qop="auth",
        nonce_count=f"{nc:08x}",
        method=method,
    )


def challenge_nonce(authority: SipAuthority) -> str:
    answer = authority.multimedia_auth(mar())
    assert answer.challenge is not None
    return answer.challenge.nonce


# --- MAR decisions ---------------------------------------------------------------------


def test_no_credentials_challenge_1001_as_registrar(authority: SipAuthority) -> None:
    answer = authority.multimedia_auth(mar())
    assert answer.result_code == 1001
    c = answer.challenge
    assert c is not None
    assert (c.realm, c.qop, c.algorithm, c.stale) == ("example.com", "auth", "MD5", False)
    assert answer.ha1s == ()
    assert len(c.nonce) == 48
    assert answer.error_message is None


def test_no_credentials_challenge_2008_without_server_uri(authority: SipAuthority) -> None:
    answer = authority.multimedia_auth(mar(registrar=False))
    assert answer.result_code == 2008
    assert answer.challenge is not None


def test_realm_is_the_aor_domain(authority: SipAuthority) -> None:
    answer = authority.multimedia_auth(mar(aor="sip:bob@Other.Example:5060;transport=tcp"))
    assert answer.challenge is not None and answer.challenge.realm == "other.example"


def test_unusable_aor_is_5004(authority: SipAuthority) -> None:
    assert authority.multimedia_auth(mar(aor="not a uri")).result_code == 5004


def test_correct_response_2001_or_2006(authority: SipAuthority) -> None:
    nonce = challenge_nonce(authority)
    ok = authority.multimedia_auth(mar(creds(nonce)))
    assert (ok.result_code, ok.challenge) == (2001, None)
    assert authority.multimedia_auth(mar(creds(nonce, nc=2), registrar=False)).result_code == 2006


def test_digest_method_wins_over_sip_method(authority: SipAuthority) -> None:
    nonce = challenge_nonce(authority)
    c = creds(nonce, method="INVITE", digest_method="INVITE")
    assert authority.multimedia_auth(mar(c, registrar=False, method="REGISTER")).result_code == 2006
    # without Digest-Method, SIP-Method enters H(A2)
    c = creds(nonce, method=None, digest_method="INVITE", nc=2, uri="sip:alice@example.com")
    assert authority.multimedia_auth(mar(c, registrar=False, method="INVITE")).result_code == 2006
    c = creds(nonce, method=None, digest_method="INVITE", nc=3)
    assert authority.multimedia_auth(mar(c, registrar=False, method="REGISTER")).result_code == 4001


def test_user_at_realm_uses_ha1b(authority: SipAuthority) -> None:
    nonce = challenge_nonce(authority)
    c = creds(nonce, username="alice@example.com")
    assert authority.multimedia_auth(mar(c)).result_code == 2001


def test_wrong_response_4001_with_fresh_challenge(authority: SipAuthority) -> None:
    nonce = challenge_nonce(authority)
    answer = authority.multimedia_auth(mar(creds(nonce, password="wrong")))
    assert answer.result_code == 4001
    assert answer.challenge is not None and answer.challenge.nonce != nonce
    assert answer.error_message == "authentication rejected"  # the same words as for an unknown user, if hidden


def test_expired_nonce_challenge_is_stale(authority: SipAuthority, clock: Clock) -> None:
    nonce = challenge_nonce(authority)
    clock.now += 301
    answer = authority.multimedia_auth(mar(creds(nonce)))
    assert answer.result_code == 1001
    assert answer.challenge is not None and answer.challenge.stale
    answer = authority.multimedia_auth(mar(creds(nonce), registrar=False))
    assert answer.result_code == 2008


def test_foreign_nonce_and_unoffered_qop_get_a_plain_challenge(authority: SipAuthority) -> None:
    answer = authority.multimedia_auth(mar(creds("f" * 48)))
    assert answer.result_code == 1001
    assert answer.challenge is not None and not answer.challenge.stale
    nonce = challenge_nonce(authority)
    c = dataclasses.replace(creds(nonce), qop="auth-int")
    assert authority.multimedia_auth(mar(c)).result_code == 1001


def test_unknown_user_5032(authority: SipAuthority) -> None:
    nonce = challenge_nonce(authority)
    answer = authority.multimedia_auth(mar(creds(nonce, username="mallory"), aor="sip:mallory@example.com"))
    assert (answer.result_code, answer.challenge) == (5032, None)
    alien = creds(nonce, username="alice@elsewhere.org", uri="sip:bob@example.com")
    answer = authority.multimedia_auth(mar(alien, method="INVITE", aor="sip:bob@example.com"))
    assert answer.result_code == 5032


# --- SAR decisions ---------------------------------------------------------------------


def sar(user: str | None = "alice", assignment: int = 0, types: tuple[str, ...] = ()) -> ServerAssignmentRequest:
    return ServerAssignmentRequest(
        session_id="k;1;2",
        origin_host=PEER.origin_host,
        origin_realm=PEER.origin_realm,
        destination_realm="example.org",
        assignment_type=assignment,
        user_name=user,
        supported_user_data_types=types,
    )


def test_sar_no_assignment_returns_groups(authority: SipAuthority) -> None:
    answer = authority.server_assignment(sar())
    assert answer.result_code == 2001
    assert answer.user_data == (sip_app.UserData("groups", b"admins\nvoicemail\n"),)
    answer = authority.server_assignment(sar("alice@example.com", types=("groups", "other")))
    assert sip_app.groups_of(answer.user_data) == ["international"]


def test_sar_user_without_groups_is_known(authority: SipAuthority) -> None:
    for name in ("carol", "carol@example.com"):
        answer = authority.server_assignment(sar(name))
        assert answer.result_code == 2001
        assert answer.user_data == (sip_app.UserData("groups", b""),)


def test_sar_unknown_user_5032(authority: SipAuthority) -> None:
    for name in ("mallory", "carol@elsewhere.org"):
        assert authority.server_assignment(sar(name)).result_code == 5032


def test_sar_other_cases(authority: SipAuthority) -> None:
    assert authority.server_assignment(sar(None)).result_code == 4013
    assert authority.server_assignment(sar(assignment=1)).result_code == 5012
    assert authority.server_assignment(sar(types=("profile",))).result_code == 5040


# --- the peer state machine ------------------------------------------------------------


@pytest.fixture
def responder(authority: SipAuthority) -> DiameterResponder:
    return DiameterResponder(authority, ME, frozenset({"kamailio.example.org", "relay.example.org"}), 42)


def cer(host: str = PEER.origin_host, apps: tuple[int, ...] = (6,)) -> bytes:
    return base.encode_cer(Capabilities(Identity(host, "example.org"), ("127.0.0.1",), apps), 1, 2)


def open_session(responder: DiameterResponder) -> PeerSession:
    s = PeerSession(responder, "127.0.0.1")
    reply = s.receive(cer())
    assert not reply.close
    assert s.state is PeerState.OPEN
    return s


def answer(data: bytes) -> Message:
    msg = base.decode(data, sip_app.GROUPED)
    assert not msg.header.is_request
    return msg


def result(data: bytes) -> int:
    code = base.unsigned(answer(data).avps, base.AVP_RESULT_CODE)
    assert code is not None
    return code


def test_cea_advertises_app_6(responder: DiameterResponder) -> None:
    s = PeerSession(responder, "127.0.0.1")
    reply = s.receive(cer())
    cea = answer(reply.data)
    caps = base.decode_capabilities(cea)
    assert base.unsigned(cea.avps, 268) == 2001
    assert caps.identity == ME
    assert caps.auth_application_ids == (6,)
    assert caps.vendor_applications == (base.VendorApplication(10415, 16777216),)  # 3GPP Cx
    assert caps.supported_vendor_ids == (10415,)
    assert caps.host_ip_addresses == ("127.0.0.1",)
    assert caps.origin_state_id == 42
    assert s.peer_host == PEER.origin_host
    # a repeated CER in R-Open is answered again
    assert result(s.receive(cer()).data) == 2001


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (cer("stranger.example.org"), 3010),
        (cer(apps=(1,)), 5010),
        (base.encode(base.request_header(257, 0, 1, 1, proxiable=False), [base.avp(296, b"example.org")]), 5005),
    ],
)
def test_refused_cer_is_answered_then_closed(responder: DiameterResponder, raw: bytes, code: int) -> None:
    s = PeerSession(responder, "127.0.0.1")
    reply = s.receive(raw)
    assert reply.close
    assert result(reply.data) == code
    assert bool(answer(reply.data).header.command_flags & base.FLAG_ERROR) == (code == 3010)
    assert s.state is PeerState.WAIT_CER


def test_cer_with_unknown_mandatory_avp_is_5001(responder: DiameterResponder) -> None:
    msg = base.decode(cer())
    msg.avps.append(base.Avp(9999, 0, b"x", base.AVP_FLAG_MANDATORY))
    reply = PeerSession(responder, "127.0.0.1").receive(msg.as_bytes())
    assert (result(reply.data), reply.close) == (5001, True)
    failed = base.find(answer(reply.data).avps, 279)
    assert failed is not None and [a.code for a in failed.value] == [9999]


def test_cer_from_relay_and_inband_tls(responder: DiameterResponder) -> None:
    assert result(PeerSession(responder, "127.0.0.1").receive(cer("relay.example.org", (0xFFFFFFFF,))).data) == 2001
    msg = base.decode(cer())
    msg.avps.append(base.avp(299, 1))
    assert result(PeerSession(responder, "127.0.0.1").receive(msg.as_bytes()).data) == 5017


def test_any_peer_policy(authority: SipAuthority) -> None:
    assert parse_peers("any") is None
    assert parse_peers(" A.example , b.example") == frozenset({"a.example", "b.example"})
    with pytest.raises(ValueError):
        parse_peers(",")
    r = DiameterResponder(authority, ME, None)
    assert result(PeerSession(r, "127.0.0.1").receive(cer("whoever.example")).data) == 2001


def test_anything_before_cer_closes(responder: DiameterResponder) -> None:
    s = PeerSession(responder, "127.0.0.1")
    assert s.receive(base.encode_dwr(PEER, 1, 1, 1)) == Reply(close=True)
    assert s.receive(b"garbage") == Reply(close=True)
    dwa = base.encode_dwa(base.decode(base.encode_dwr(PEER, 1, 1, 1)), PEER, 1)
    assert s.receive(dwa) == Reply(close=True)


def test_dwr_and_dpr(responder: DiameterResponder) -> None:
    s = open_session(responder)
    reply = s.receive(base.encode_dwr(PEER, 1, 0x77, 0x88))
    dwa = answer(reply.data)
    assert not reply.close
    assert (dwa.header.command_code, dwa.header.hop_by_hop_identifier) == (280, 0x77)
    assert (base.unsigned(dwa.avps, 268), base.unsigned(dwa.avps, 278)) == (2001, 42)
    reply = s.receive(base.encode_dpr(PEER, 0, 0x79, 0x89))
    assert reply.close
    assert answer(reply.data).header.command_code == 282
    assert result(reply.data) == 2001


def test_mar_answer_echoes_ids_and_carries_app_avps(responder: DiameterResponder) -> None:
    s = open_session(responder)
    reply = s.receive(sip_app.encode_mar(mar(), 0xABC, 0xDEF))
    info, maa = sip_app.decode_maa(reply.data)
    assert (info.hop_by_hop, info.end_to_end, info.session_id, info.origin_host) == (
        0xABC,
        0xDEF,
        "k;1;1",
        ME.origin_host,
    )
    assert maa.result_code == 1001
    avps = answer(reply.data).avps
    assert (base.unsigned(avps, 258), base.unsigned(avps, 277)) == (6, 1)
    assert responder.stats.by_result == {1001: 1}


def test_sar_answer(responder: DiameterResponder) -> None:
    s = open_session(responder)
    _, saa = sip_app.decode_saa(s.receive(sip_app.encode_sar(sar(), 1, 2)).data)
    assert sip_app.groups_of(saa.user_data) == ["admins", "voicemail"]


def sip_request(command: int, app: int = 6, flags_extra: int = 0) -> bytes:
    raw = bytearray(sip_app.encode_mar(mar(), 1, 2))
    raw[4] |= flags_extra
    raw[5:8] = command.to_bytes(3, "big")
    raw[8:12] = app.to_bytes(4, "big")
    return bytes(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (sip_request(283), 3001),  # UAR: not served
        (sip_request(258, app=0), 3001),  # RAR in the common application
        (sip_request(286, app=16777216), 3001),  # Cx is served, but its MAR is 303
        (sip_request(306, app=16777217), 3007),  # Sh is not
        (sip_request(286, flags_extra=base.FLAG_ERROR), 3008),
    ],
)
def test_protocol_errors(responder: DiameterResponder, raw: bytes, code: int) -> None:
    reply = open_session(responder).receive(raw)
    assert not reply.close
    msg = answer(reply.data)
    assert base.unsigned(msg.avps, 268) == code
    assert msg.header.command_flags & base.FLAG_ERROR
    assert base.text(msg.avps, 263) == "k;1;1"


def test_unknown_mandatory_avp_in_mar_is_5001(responder: DiameterResponder) -> None:
    msg = base.decode(sip_app.encode_mar(mar(), 1, 2), sip_app.GROUPED)
    msg.avps.append(base.Avp(4242, 0, b"x", base.AVP_FLAG_MANDATORY))
    msg.avps.append(base.Avp(4243, 0, b"y", 0))  # without M: ignored
    reply = open_session(responder).receive(msg.as_bytes())
    m = answer(reply.data)
    assert base.unsigned(m.avps, 268) == 5001
    assert not m.header.command_flags & base.FLAG_ERROR
    failed = base.find(m.avps, 279)
    assert failed is not None and [a.code for a in failed.value] == [4242]
    assert (base.unsigned(m.avps, 258), base.unsigned(m.avps, 277)) == (6, 1)


def test_missing_avp_in_mar_is_5005(responder: DiameterResponder) -> None:
    msg = base.decode(sip_app.encode_mar(mar(), 1, 2), sip_app.GROUPED)
    stripped = Message(msg.header, [a for a in msg.avps if a.code != sip_app.AVP_SIP_AOR])
    assert result(open_session(responder).receive(stripped.as_bytes()).data) == 5005


def test_undecodable_input_closes(responder: DiameterResponder) -> None:
    s = open_session(responder)
    raw = sip_app.encode_mar(mar(), 1, 2)
    assert s.receive(raw[:-4]).close
    bad = bytearray(raw)
    bad[20 + 5 : 20 + 8] = (3).to_bytes(3, "big")  # Session-Id AVP length 3
    assert s.receive(bytes(bad)).close


def test_disconnect_sends_dpr_and_dpa_closes(responder: DiameterResponder) -> None:
    assert PeerSession(responder, "127.0.0.1").disconnect() is None  # nobody to tell before CER
    s = open_session(responder)
    dpr = base.decode(s.disconnect() or b"")
    assert (dpr.header.command_code, dpr.header.command_flags) == (282, 0x80)
    assert base.unsigned(dpr.avps, 273) == 0  # REBOOTING
    assert s.state is PeerState.CLOSING
    assert not s.receive(base.encode_dwa(base.decode(base.encode_dwr(PEER, 1, 1, 1)), PEER, 1)).close
    assert s.receive(base.encode_dpa(dpr, PEER)).close


# --- the asyncio shell -----------------------------------------------------------------


async def _read(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readexactly(4), 5)
    return head + await asyncio.wait_for(reader.readexactly(int.from_bytes(head[1:4], "big") - 4), 5)


def test_asyncio_server_split_frames_huge_frame_and_shutdown_dpr(responder: DiameterResponder) -> None:
    async def scenario() -> None:
        sock = bind("127.0.0.1", 0, reuse_port=False)
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        task = asyncio.create_task(serve_diameter(responder, sock, stop))

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = cer() + sip_app.encode_mar(mar(), 5, 6)
        for i in range(0, len(data), 7):  # byte dribble across frames
            writer.write(data[i : i + 7])
            await writer.drain()
        assert result(await _read(reader)) == 2001
        assert result(await _read(reader)) == 1001

        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(cer())
        assert result(await _read(r2)) == 2001
        w2.write(b"\x01\xff\xff\xff" + b"\0" * 16)  # announces 16 MB
        assert await asyncio.wait_for(r2.read(), 5) == b""
        w2.close()

        stop.set()
        dpr = base.decode(await _read(reader))
        assert dpr.header.command_code == 282 and dpr.header.is_request
        writer.write(base.encode_dpa(dpr, PEER))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await asyncio.wait_for(task, 5)
        writer.close()

    asyncio.run(scenario())


def test_asyncio_refuses_addresses_outside_allow(responder: DiameterResponder) -> None:
    async def scenario() -> None:
        sock = bind("127.0.0.1", 0, reuse_port=False)
        stop = asyncio.Event()
        guard = Guard(Limits(), [ipaddress.ip_network("10.0.0.0/8")])
        task = asyncio.create_task(serve_diameter(responder, sock, stop, guard=guard))
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(cer())
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert responder.stats.refused == 1
        assert responder.stats.connections == 0
        assert not guard.table

    asyncio.run(scenario())


def test_watchdog_dwr_after_tw_then_close_after_twice_tw(authority: SipAuthority, clock: Clock) -> None:
    r = DiameterResponder(authority, ME, None, 42, watchdog_interval=6.0, clock=clock)
    s = PeerSession(r, "127.0.0.1")
    assert s.watchdog() == (Reply(), 6.0)
    s.receive(cer())
    clock.now += 5.0
    assert s.watchdog() == (Reply(), 1.0)
    clock.now += 1.0
    reply, again = s.watchdog()
    dwr = Message.from_bytes(reply.data, plain_msg=True)
    assert dwr.header.command_code == base.CMD_DEVICE_WATCHDOG and dwr.header.is_request and again == 6.0
    assert s.watchdog() == (Reply(), 6.0)  # one DWR per silence
    clock.now += 6.0
    assert s.watchdog() == (Reply(close=True), None)


def test_watchdog_is_reset_by_any_message(authority: SipAuthority, clock: Clock) -> None:
    r = DiameterResponder(authority, ME, None, 42, watchdog_interval=6.0, clock=clock)
    s = PeerSession(r, "127.0.0.1")
    s.receive(cer())
    clock.now += 6.0
    assert s.watchdog()[0].data  # DWR
    clock.now += 5.0
    s.receive(base.encode_dwr(PEER, 1, 7, 8))  # the peer speaks: any message resets Tw
    assert s.watchdog() == (Reply(), 6.0)


def test_no_cer_within_tw_closes(authority: SipAuthority, clock: Clock) -> None:
    s = PeerSession(DiameterResponder(authority, ME, None, 42, watchdog_interval=6.0, clock=clock), "127.0.0.1")
    clock.now += 6.0
    assert s.watchdog() == (Reply(close=True), None)


def test_watchdog_off(authority: SipAuthority) -> None:
    s = PeerSession(DiameterResponder(authority, ME, None, 42), "127.0.0.1")
    s.receive(cer())
    assert s.watchdog() == (Reply(), None)


# --- TLS: the CER's Origin-Host must be a name of the client's certificate ---------------------


@pytest.mark.parametrize(
    ("host", "name", "matches"),
    [
        ("kamailio.example.org", "kamailio.example.org", True),
        ("Kamailio.Example.ORG", "kamailio.example.org.", True),
        ("w1.sip1.example.com", "*.sip1.example.com", True),
        ("W12.SIP1.example.com", "*.sip1.example.com", True),
        ("sip1.example.com", "*.sip1.example.com", False),  # the wildcard is one label, not none
        ("a.w1.sip1.example.com", "*.sip1.example.com", False),  # nor two
        ("w1.sip2.example.com", "*.sip1.example.com", False),
        ("w1.sip1.example.com", "w*.sip1.example.com", False),  # only a whole label of * is a wildcard
        ("*.sip1.example.com", "*.sip1.example.com", False),
        ("anything", "*.", False),
        ("", "", False),
    ],
)
def test_name_matches(host: str, name: str, matches: bool) -> None:
    assert name_matches(host, name) is matches


def test_certificate_names_are_the_dns_sans_else_the_cn() -> None:
    subject = ((("countryName", "SE"),), (("commonName", "cn.example.org"),))
    assert certificate_names({"subject": subject}) == ("cn.example.org",)
    sans = (("IP Address", "127.0.0.1"), ("DNS", "*.sip1.example.com"), ("DNS", "sip1.example.com"))
    assert certificate_names({"subject": subject, "subjectAltName": sans}) == ("*.sip1.example.com", "sip1.example.com")
    assert certificate_names({"subject": subject, "subjectAltName": (("IP Address", "127.0.0.1"),)}) == (
        "cn.example.org",
    )
    assert certificate_names({}) == ()


@pytest.mark.parametrize(
    ("names", "host", "accepted"),
    [
        (None, "kamailio.example.org", True),  # no certificate: clear TCP, or TLS without --tls-ca
        (("kamailio.example.org",), "kamailio.example.org", True),
        (("*.kamailio.example.org",), "w3.kamailio.example.org", True),
        (("*.kamailio.example.org",), "kamailio.example.org", False),
        (("other.example.org",), "kamailio.example.org", False),
        ((), "kamailio.example.org", False),
    ],
)
def test_cer_origin_host_bound_to_the_certificate(
    authority: SipAuthority, names: tuple[str, ...] | None, host: str, accepted: bool
) -> None:
    responder = DiameterResponder(authority, ME, None, 42)  # --peers any
    s = PeerSession(responder, "127.0.0.1", "127.0.0.1:5000", certificate_names=names)
    reply = s.receive(cer(host))
    cea = answer(reply.data)
    if accepted:
        assert (result(reply.data), reply.close, s.state) == (2001, False, PeerState.OPEN)
        return
    assert (result(reply.data), reply.close, s.state) == (base.RESULT_UNKNOWN_PEER, True, PeerState.WAIT_CER)
    message = base.text(cea.avps, base.AVP_ERROR_MESSAGE)
    assert message is not None and f"Origin-Host {host!r} is not a name of its TLS certificate" in message
