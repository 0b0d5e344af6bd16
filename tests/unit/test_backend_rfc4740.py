"""backend/rfc4740: what a SIP request means as a MAR, and what an MAA means for SIP."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter.authorize import AuthContext, Result
from kamailio_auth_diameter.backend import rfc4740
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import SipUri
from kamailio_auth_diameter.wire import base, sip_app

KAM = base.Identity("w1.kamailio.example.com", "example.com")
ALICE = SipUri("alice", "example.com", "")
CARD = (
    'Digest username="alice", realm="example.com", nonce="n1", uri="sip:example.com", response="r", '
    'qop=auth, nc=00000001, cnonce="c", opaque="o", algorithm=MD5'
)


def ctx(method: str = "REGISTER", credentials: str | None = None) -> AuthContext:
    cred = parse_credentials(credentials) if credentials else None
    return AuthContext(method, SipUri("bob", "other.org", "5060"), ALICE, cred, realm="example.com")


def test_mar_for_register_uses_to_as_aor_and_nai_user_name() -> None:
    m = rfc4740.mar_for(ctx(), "example.com", "sess", KAM, "aaa.example.com")
    assert m is not None
    assert (m.sip_aor, m.user_name, m.sip_method, m.destination_realm) == (
        "sip:alice@example.com",
        "alice@example.com",
        "REGISTER",
        "aaa.example.com",
    )
    assert m.server_uri is None and m.credentials is None and m.origin_host == KAM.origin_host


def test_mar_for_other_methods_uses_the_request_uri() -> None:
    m = rfc4740.mar_for(ctx("INVITE", CARD), "example.com", "sess", KAM, "example.com")
    assert m is not None and m.sip_aor == "sip:bob@other.org" and m.user_name == "alice"
    c = m.credentials
    assert c is not None
    assert (c.username, c.realm, c.nonce, c.uri, c.response, c.qop, c.nonce_count, c.cnonce, c.opaque) == (
        "alice",
        "example.com",
        "n1",
        "sip:example.com",
        "r",
        "auth",
        "00000001",
        "c",
        "o",
    )
    assert c.method == "INVITE" and c.algorithm == "MD5"


def test_mar_for_incomplete_credentials_is_the_uas_fault() -> None:
    with pytest.raises(rfc4740.IncompleteCredentials, match="response"):
        rfc4740.mar_for(
            ctx(credentials='Digest username="alice", realm="example.com", nonce="n", uri="u"'),
            "example.com",
            "s",
            KAM,
            "r",
        )


def test_mar_for_without_host_cannot_be_built() -> None:
    tel = AuthContext("REGISTER", ALICE, SipUri("+123", "", ""), None, realm="example.com")
    assert rfc4740.mar_for(tel, "example.com", "s", KAM, "r") is None


@pytest.mark.parametrize(
    ("code", "challenge", "expected"),
    [
        (1001, True, Result.CHALLENGE),
        (2008, True, Result.CHALLENGE),
        (2001, True, Result.CHALLENGE),
        (1001, False, Result.SERVER_ERROR),
        (2001, False, Result.AUTHORIZED),
        (2006, False, Result.AUTHORIZED),
        (4001, True, Result.NOT_AUTHORIZED),
        (4001, False, Result.NOT_AUTHORIZED),
        (5003, False, Result.NOT_AUTHORIZED),
        (5032, False, Result.NOT_AUTHORIZED),
        (5033, False, Result.NOT_AUTHORIZED),
        (5012, False, Result.SERVER_ERROR),
        (3002, False, Result.SERVER_ERROR),
        (2008, False, Result.SERVER_ERROR),
    ],
)
def test_verdict(code: int, challenge: bool, expected: Result) -> None:
    ch = sip_app.DigestChallenge("example.com", "n") if challenge else None
    assert rfc4740.verdict(sip_app.MultimediaAuthAnswer(code, ch)) is expected


def test_challenge_value_puts_quotes_back() -> None:
    ch = sip_app.DigestChallenge("example.com", "abc", opaque="op", stale=True)
    assert rfc4740.challenge_value(ch) == (
        b'Digest realm="example.com", nonce="abc", opaque="op", stale=true, algorithm=MD5, qop="auth"'
    )
    plain = sip_app.DigestChallenge("example.com", "abc", qop=None, algorithm=None)
    assert rfc4740.challenge_value(plain) == b'Digest realm="example.com", nonce="abc"'


@pytest.mark.parametrize(
    "ch",
    [
        sip_app.DigestChallenge('exa"mple.com', "n"),
        sip_app.DigestChallenge("example.com", "n\r\nX-Injected: 1"),
        sip_app.DigestChallenge("example.com", ""),
        sip_app.DigestChallenge("example.com", "n", algorithm="MD5, qop=auth-int"),
        sip_app.DigestChallenge("example.com", "n\\"),
    ],
)
def test_challenge_value_refuses_what_would_break_the_header(ch: sip_app.DigestChallenge) -> None:
    assert rfc4740.challenge_value(ch) is None
