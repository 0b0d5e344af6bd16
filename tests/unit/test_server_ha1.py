"""The reference server hands H(A1)s to trusted peers: RFC 4740 Flow B (SipAuthority with
``ha1``), 3GPP Cx (CxAuthority), and who is trusted (--ha1-peer, per connection)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.auth import CxAuthority, SipAuthority, user_ha1s
from kamailio_auth_diameter.server.diameter import DiameterResponder, PeerSession, parse_ha1_peer
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.wire import base, cx, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.digest_avps import DigestHa1

REALM = "example.com"
ME = Identity("aaa.example.com", "example.com")
WORKER = Identity("w1.proxy.example.com", "proxy.example.com")


def md5(user: str, password: str = "pw") -> DigestHa1:
    return DigestHa1("MD5", digest.ha1(user, REALM, password), REALM, "auth")


def sha(user: str, password: str = "pw") -> DigestHa1:
    return DigestHa1("SHA-256", digest.ha1(user, REALM, password, "SHA-256"), REALM, "auth")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "auth.sqlite"))
    s.add_user("alice", REALM, "pw")
    s.add_user("bob", REALM, "bobpw")
    imported = (digest.ha1("carol", REALM, "pw"), digest.ha1(f"carol@{REALM}", REALM, "pw"))
    s.add_user_hashes("carol", REALM, *imported, replace=False)  # user import: MD5 only
    yield s
    s.close()


@pytest.fixture
def authority(store: SqliteStore, clock: Clock) -> SipAuthority:
    return SipAuthority(store, NonceFactory(store.nonce_secret(), lifetime=300, clock=clock), hide_unknown_users=True)


def untouched(store: SqliteStore) -> bool:
    """Nothing counted: no nonce count, no failure."""
    return not store._rows("SELECT 1 FROM nonce_counts") and not store._rows("SELECT 1 FROM auth_failures")


# --- the H(A1)s of a user --------------------------------------------------------------


def test_user_ha1s_sha_256_first_and_the_variant_of_the_username(store: SqliteStore) -> None:
    assert user_ha1s(store, "alice", REALM) == (sha("alice"), md5("alice"))
    assert user_ha1s(store, "alice@example.com", REALM) == (sha("alice@example.com"), md5("alice@example.com"))
    assert user_ha1s(store, "alice@EXAMPLE.com", REALM) == (sha("alice@example.com"), md5("alice@example.com"))
    assert user_ha1s(store, "carol", REALM) == (md5("carol"),)  # imported by MD5 hashes: no SHA-256
    for nobody in ("alice@other.com", "dave", "", "@example.com", "Alice"):
        assert user_ha1s(store, nobody, REALM) is None


# --- RFC 4740 Flow B -------------------------------------------------------------------


def flow_b_mar(
    user: str | None = "alice", aor: str = "sip:alice@example.com", **kw: object
) -> sip_app.MultimediaAuthRequest:
    values = {"session_id": "s;1", "origin_host": WORKER.origin_host, "origin_realm": WORKER.origin_realm}
    values |= {"destination_realm": REALM, "sip_aor": aor, "sip_method": "REGISTER", "user_name": user}
    return sip_app.MultimediaAuthRequest(**(values | kw))  # type: ignore[arg-type]


def test_a_trusted_peer_gets_flow_b(authority: SipAuthority, store: SqliteStore) -> None:
    answer = authority.multimedia_auth(flow_b_mar(server_uri="sip:proxy.example.com"), ha1=True)
    assert answer.result_code == 1001
    assert answer.ha1s == (sha("alice"), md5("alice"))
    c = answer.challenge
    assert c is not None and (c.realm, c.algorithm, c.qop, len(c.nonce)) == (REALM, "SHA-256", "auth", 48)
    answer = authority.multimedia_auth(flow_b_mar("alice@example.com", sip_method="INVITE"), ha1=True)
    assert answer.result_code == 2008  # no SIP-Server-URI: "challenge sent, server name not stored"
    assert answer.ha1s == (sha("alice@example.com"), md5("alice@example.com"))
    assert authority.multimedia_auth(flow_b_mar("carol", "sip:carol@example.com"), ha1=True).ha1s == (md5("carol"),)
    assert untouched(store)


def test_an_untrusted_peer_gets_flow_a(authority: SipAuthority) -> None:
    answer = authority.multimedia_auth(flow_b_mar())
    assert answer.result_code == 2008 and answer.challenge is not None and answer.ha1s == ()
    assert answer.challenge.algorithm == "MD5"


def test_flow_b_needs_a_user_name(authority: SipAuthority) -> None:
    answer = authority.multimedia_auth(flow_b_mar(None), ha1=True)
    assert answer.result_code == 2008 and answer.challenge is not None and answer.ha1s == ()


@pytest.mark.parametrize(
    ("mar", "code"),
    [
        (flow_b_mar("mallory", "sip:mallory@example.com"), 5032),  # even with hide_unknown_users: the peer is trusted
        (flow_b_mar("alice@other.com"), 5033),  # a REGISTER for another domain's alice
        (flow_b_mar("alice@other.com", sip_method="INVITE"), 5032),
        (flow_b_mar("bob"), 5033),  # bob may not register alice's address
        (flow_b_mar("alice", "tel:+15551234"), 5004),
    ],
)
def test_flow_b_refusals(
    authority: SipAuthority, store: SqliteStore, mar: sip_app.MultimediaAuthRequest, code: int
) -> None:
    answer = authority.multimedia_auth(mar, ha1=True)
    assert (answer.result_code, answer.ha1s, answer.challenge) == (code, (), None)
    assert untouched(store)


def test_flow_b_for_an_invite_takes_the_realm_of_the_aor(authority: SipAuthority) -> None:
    """Not a REGISTER: no ownership check (RFC 4740's SIP-AOR may be the Request-URI)."""
    answer = authority.multimedia_auth(flow_b_mar("bob", sip_method="INVITE"), ha1=True)
    assert answer.ha1s == (sha("bob", "bobpw"), md5("bob", "bobpw"))


def test_credentials_from_a_trusted_peer_are_still_checked_here(authority: SipAuthority) -> None:
    challenge = authority.multimedia_auth(flow_b_mar(), ha1=True).challenge
    assert challenge is not None
    d = digest.DigestInput("REGISTER", "sip:example.com", challenge.nonce, qop="auth", nc="00000001", cnonce="c")
    cred = sip_app.DigestResponse(
        "alice",
        REALM,
        challenge.nonce,
        "sip:example.com",
        digest.response(md5("alice").ha1, d),
        "MD5",
        "c",
        "auth",
        "00000001",
    )
    answer = authority.multimedia_auth(flow_b_mar(credentials=cred), ha1=True)
    assert (answer.result_code, answer.ha1s) == (2006, ())


# --- 3GPP Cx ---------------------------------------------------------------------------


@pytest.fixture
def hss(store: SqliteStore) -> CxAuthority:
    return CxAuthority(store)


def cx_mar(
    impi: str = "alice", impu: str = "sip:alice@example.com", scheme: str = "SIP Digest"
) -> cx.MultimediaAuthRequest:
    return cx.MultimediaAuthRequest(
        "s;1", WORKER.origin_host, WORKER.origin_realm, REALM, impi, impu, "sip:proxy.example.com", scheme
    )


def test_cx_gives_ha1s_to_a_trusted_peer(hss: CxAuthority, store: SqliteStore) -> None:
    assert hss.multimedia_auth(cx_mar(), True) == cx.MultimediaAuthAnswer(2001, ha1s=(sha("alice"), md5("alice")))
    answer = hss.multimedia_auth(cx_mar("alice@example.com", scheme="Unknown"), True)
    assert answer.ha1s == (sha("alice@example.com"), md5("alice@example.com"))
    assert hss.multimedia_auth(cx_mar("carol", "sip:carol@example.com"), True).ha1s == (md5("carol"),)
    assert untouched(store)


def test_cx_refuses_an_untrusted_peer_outright(hss: CxAuthority) -> None:
    answer = hss.multimedia_auth(cx_mar(), False)
    assert (answer.result_code, answer.experimental_result, answer.ha1s) == (5012, None, ())
    assert "--ha1-peer" in (answer.error_message or "")


@pytest.mark.parametrize(
    ("mar", "code"),
    [
        (cx_mar("mallory", "sip:mallory@example.com"), cx.USER_UNKNOWN),
        (cx_mar("alice", "sip:alice@other.com"), cx.USER_UNKNOWN),
        (cx_mar("alice", "tel:+15551234"), cx.USER_UNKNOWN),
        (cx_mar("alice", "sip:nobody@example.com"), cx.USER_UNKNOWN),  # the IMPU is nobody's
        (cx_mar("bob", "sip:alice@example.com"), cx.IDENTITIES_DONT_MATCH),
        (cx_mar("alice@other.com"), cx.USER_UNKNOWN),
        (cx_mar(scheme="Digest-AKAv1-MD5"), cx.AUTH_SCHEME_NOT_SUPPORTED),
        (cx_mar("mallory", "sip:mallory@example.com", "Digest-AKAv1-MD5"), cx.USER_UNKNOWN),  # TS 29.228's order
    ],
)
def test_cx_refusals_are_experimental_results(hss: CxAuthority, mar: cx.MultimediaAuthRequest, code: int) -> None:
    answer = hss.multimedia_auth(mar, True)
    assert (answer.result_code, answer.experimental_result, answer.ha1s) == (None, code, ())


# --- who is trusted: --ha1-peer, decided per connection at its CER -------------------------


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("*.proxy.example.com", "*.proxy.example.com"), ("W1.Proxy.Example.com.", "w1.proxy.example.com"), ("p", "p")],
)
def test_ha1_peer_patterns(text: str, pattern: str) -> None:
    assert parse_ha1_peer(text) == pattern


@pytest.mark.parametrize("text", ["", "*", "*.com", "*.*.example.com", "w*.example.com", "a..b", "a b.c", "-a.b"])
def test_bad_ha1_peer_patterns(text: str) -> None:
    with pytest.raises(ValueError, match="--ha1-peer"):
        parse_ha1_peer(text)


@pytest.fixture
def responder(authority: SipAuthority) -> DiameterResponder:
    return DiameterResponder(authority, ME, None, 42, ha1_peers=("*.proxy.example.com", "relay.example.com"))


def opened(responder: DiameterResponder, host: str, names: tuple[str, ...] | None = None) -> PeerSession:
    s = PeerSession(responder, "127.0.0.1", certificate_names=names)
    caps = Capabilities(Identity(host, "example.com"), ("127.0.0.1",), vendor_applications=(cx.APPLICATION,))
    reply = s.receive(base.encode_cer(caps, 1, 1))
    assert base.decode_lean(reply.data).avps.unsigned(base.AVP_RESULT_CODE) == 2001
    return s


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("w1.proxy.example.com", True),
        ("p4711.proxy.example.com", True),
        ("relay.example.com", True),
        ("proxy.example.com", False),  # the pattern names the workers one label below
        ("a.w1.proxy.example.com", False),
        ("w1.proxy.example.com.evil.org", False),
        ("w1.other.example.com", False),
    ],
)
def test_trust_follows_the_connections_origin_host(responder: DiameterResponder, host: str, trusted: bool) -> None:
    """The MAR claims a trusted worker's Origin-Host either way: the connection's CER decides."""
    s = opened(responder, host)
    assert s.ha1_trusted is trusted
    mar = dataclasses.replace(cx_mar(), origin_host="w1.proxy.example.com")
    _, maa = cx.decode_maa(s.receive(cx.encode_mar(mar, 5, 6)).data)
    assert (maa.result_code, len(maa.ha1s)) == ((2001, 2) if trusted else (5012, 0))
    _, maa = sip_app.decode_maa(s.receive(sip_app.encode_mar(flow_b_mar(), 7, 8)).data)
    assert (maa.result_code, len(maa.ha1s)) == (2008, 2 if trusted else 0)


def test_with_client_certificates_the_certificate_must_name_the_trusted_host(responder: DiameterResponder) -> None:
    s = PeerSession(responder, "127.0.0.1", certificate_names=("w2.proxy.example.com",))
    reply = s.receive(base.encode_cer(Capabilities(WORKER, ("127.0.0.1",), (6,)), 1, 1))
    assert reply.close and base.decode_lean(reply.data).avps.unsigned(base.AVP_RESULT_CODE) == 3010
    assert not s.ha1_trusted
    assert opened(responder, "w1.proxy.example.com", ("*.proxy.example.com",)).ha1_trusted


def test_a_cx_only_peer_is_welcome(responder: DiameterResponder) -> None:
    for caps in (
        Capabilities(WORKER, ("127.0.0.1",), vendor_applications=(cx.APPLICATION,)),
        Capabilities(WORKER, ("127.0.0.1",), (cx.APP_CX,)),
    ):
        reply = PeerSession(responder, "127.0.0.1").receive(base.encode_cer(caps, 1, 1))
        assert not reply.close


def test_cx_answers_on_the_wire(responder: DiameterResponder) -> None:
    s = opened(responder, "w1.proxy.example.com")
    raw = s.receive(cx.encode_mar(cx_mar(), 5, 6)).data
    msg = base.decode_lean(raw)
    assert (msg.command, msg.application, msg.flags, msg.hop_by_hop) == (303, 16777216, 0x40, 5)
    assert msg.avps.text(base.AVP_USER_NAME) == "alice"
    assert msg.avps.text(cx.AVP_PUBLIC_IDENTITY, cx.VENDOR_3GPP) == "sip:alice@example.com"
    assert cx.decode_maa(raw)[1].ha1s == (md5("alice"), sha("alice"))  # MD5 in Digest-HA1, SHA-256 the alternate
    raw = s.receive(cx.encode_mar(cx_mar("bob"), 7, 8)).data
    assert cx.decode_maa(raw)[1].experimental_result == 5002
    assert base.decode_lean(raw).avps.unsigned(base.AVP_RESULT_CODE) is None


def test_cx_errors_carry_the_cx_session_avps(responder: DiameterResponder) -> None:
    s = opened(responder, "w1.proxy.example.com")
    full = cx.encode_mar(cx_mar(), 5, 6)
    msg = base.decode_lean(full)
    body = b"".join(
        base.pack_avp(c, d, f & ~base.AVP_FLAG_VENDOR, v) for c, f, v, d in msg.avps.items if c != cx.AVP_SERVER_NAME
    )
    raw = s.receive(base.pack_message(0xC0, 303, cx.APP_CX, 5, 6, body)).data
    answer = base.decode(raw, cx.GROUPED)
    assert base.unsigned(answer.avps, base.AVP_RESULT_CODE) == 5005
    failed = base.find(answer.avps, base.AVP_FAILED_AVP)
    assert failed is not None and [(a.code, a.vendor_id) for a in failed.value] == [(602, 10415)]
    vsai = base.find(answer.avps, base.AVP_VENDOR_SPECIFIC_APPLICATION_ID)
    assert vsai is not None and [base.unsigned_of(a) for a in vsai.value] == [10415, 16777216]
    unknown = full + base.pack_u32(4242, 1, vendor=4491)
    unknown = unknown[:1] + len(unknown).to_bytes(3, "big") + unknown[4:]
    answer = base.decode(s.receive(unknown).data, cx.GROUPED)
    assert base.unsigned(answer.avps, base.AVP_RESULT_CODE) == 5001
    other = bytearray(full)
    other[5:8] = (301).to_bytes(3, "big")  # Cx SAR: not served
    reply = base.decode_lean(s.receive(bytes(other)).data)
    assert (reply.avps.unsigned(base.AVP_RESULT_CODE), reply.flags & base.FLAG_ERROR) == (3001, base.FLAG_ERROR)
