"""authorize: the SIP-side decisions of diameter_www/proxy_authorize (§6), and result_outcome (§5.2, §5.3)."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter import authorize, outcome
from kamailio_auth_diameter.authorize import AuthContext, Result, SipRequest
from kamailio_auth_diameter.sip.uri import SipUri


def cred(realm: str, user: str = "alice") -> str:
    return f'Digest username="{user}", realm="{realm}", nonce="n", uri="sip:x", response="r"'


def req(
    method: str = "INVITE",
    ruri: str | None = "sip:bob@ruri.net",
    from_uri: str | None = "sip:alice@from.org",
    to_uri: str | None = "sip:bob@to.net",
    credentials: tuple[str, ...] = (),
) -> SipRequest:
    return SipRequest(method=method, ruri=ruri, from_uri=from_uri, to_uri=to_uri, credentials=credentials)


def ctx(result: object) -> AuthContext:
    assert isinstance(result, AuthContext), result
    return result


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_exempt(method: str) -> None:
    assert method in authorize.EXEMPT


@pytest.mark.parametrize("method", ["INVITE", "REGISTER", "BYE", "ack", "Cancel", "", "OPTIONS"])
def test_other_methods_are_not_exempt(method: str) -> None:
    assert method not in authorize.EXEMPT


def test_invite_identity_is_from() -> None:
    c = ctx(authorize.plan(req(), "", proxy=False))
    assert c.identity == SipUri("alice", "from.org", "")
    assert c.ruri == SipUri("bob", "ruri.net", "")
    assert c.method == "INVITE"
    assert c.credentials is None


@pytest.mark.parametrize("proxy", [False, True])
def test_register_identity_is_to_in_both_variants(proxy: bool) -> None:
    c = ctx(authorize.plan(req(method="REGISTER"), "", proxy=proxy))
    assert c.identity == SipUri("bob", "to.net", "")


def test_www_register_realm_from_to() -> None:
    r = req(method="REGISTER", credentials=(cred("from.org", "x"), cred("to.net", "y")))
    c = ctx(authorize.plan(r, "", proxy=False))
    assert c.credentials is not None
    assert c.credentials.username == "y"


def test_proxy_register_realm_from_from_then_mismatch() -> None:
    # B15: the lookup realm comes from From, the identity from To; the chosen credentials'
    # realm then differs from the identity host -> -5 with no reply.
    r = req(method="REGISTER", credentials=(cred("from.org", "x"), cred("to.net", "y")))
    assert authorize.plan(r, "", proxy=True) is outcome.NO_REPLY_ERROR


def test_proxy_register_with_no_from_credentials_goes_without() -> None:
    r = req(method="REGISTER", credentials=(cred("to.net", "y"),))
    c = ctx(authorize.plan(r, "", proxy=True))
    assert c.credentials is None
    assert c.identity.host == "to.net"


@pytest.mark.parametrize("proxy", [False, True])
def test_invite_realm_from_from(proxy: bool) -> None:
    r = req(credentials=(cred("to.net", "x"), cred("from.org", "y")))
    c = ctx(authorize.plan(r, "", proxy=proxy))
    assert c.credentials is not None
    assert c.credentials.username == "y"


def test_register_is_case_sensitive() -> None:
    c = ctx(authorize.plan(req(method="register"), "", proxy=False))
    assert c.identity.host == "from.org"


def test_realm_parameter_selects_credentials() -> None:
    r = req(credentials=(cred("from.org", "x"), cred("FROM.ORG", "y")))
    c = ctx(authorize.plan(r, "From.Org", proxy=False))
    assert c.credentials is not None
    assert c.credentials.username == "x"


def test_realm_parameter_not_matching_identity_is_no_reply_error() -> None:
    r = req(credentials=(cred("other.org"),))
    assert authorize.plan(r, "other.org", proxy=False) is outcome.NO_REPLY_ERROR


def test_realm_parameter_with_no_matching_credentials_goes_without() -> None:
    c = ctx(authorize.plan(req(credentials=(cred("from.org"),)), "other.org", proxy=False))
    assert c.credentials is None


def test_credentials_realm_case_insensitive_against_identity() -> None:
    c = ctx(authorize.plan(req(credentials=(cred("FROM.org"),)), "", proxy=False))
    assert c.credentials is not None


def test_non_digest_credentials_are_skipped() -> None:
    c = ctx(authorize.plan(req(credentials=("Basic YWxpY2U6cHc=",)), "", proxy=False))
    assert c.credentials is None


@pytest.mark.parametrize(
    "bad",
    [
        'Digest username="alice, realm=from.org',  # the quote never closes
        'Digest username="a", realm="from.org",',  # trailing comma
        "Digest username",
        "Digest ",
        "Digest username=, realm=from.org",
    ],
)
def test_malformed_credentials_is_bad_request(bad: str) -> None:
    assert authorize.plan(req(credentials=(bad,)), "", proxy=False) is outcome.BAD_REQUEST


@pytest.mark.parametrize(
    "body",
    [
        'Digest username="alice, realm="from.org"',  # username is 'alice, realm=', no realm
        'Digest username="a" realm="from.org"',  # no comma: the realm is skipped
    ],
)
def test_lenient_credentials_without_realm_are_not_selected(body: str) -> None:
    # once a 400, now parsed as Kamailio does: they carry no realm, so nothing matches
    c = ctx(authorize.plan(req(credentials=(body,)), "", proxy=False))
    assert c.credentials is None


def test_lenient_credentials_are_selected_and_kept_raw() -> None:
    body = 'Digest username="a" junk, realm="from.org" junk, nonce="n", response="r"'
    c = ctx(authorize.plan(req(credentials=(body,)), "", proxy=False))
    assert c.credentials is not None
    assert c.credentials.params == {"username": "a", "realm": "from.org", "nonce": "n", "response": "r"}
    assert c.credentials.raw == body


def test_later_realm_parameter_decides_selection() -> None:
    body = 'Digest username="a", realm="other.org", realm="from.org"'
    c = ctx(authorize.plan(req(credentials=(body,)), "", proxy=False))
    assert c.credentials is not None
    assert c.credentials.realm == "from.org"


def test_malformed_before_a_match_is_bad_request() -> None:
    r = req(credentials=('Digest realm="x', cred("from.org")))
    assert authorize.plan(r, "", proxy=False) is outcome.BAD_REQUEST


@pytest.mark.parametrize("from_uri", [None, "", "garbage", "tel:", "tel:+12 34"])
def test_unparsable_from_while_deriving_realm_is_bad_request(from_uri: str | None) -> None:
    assert authorize.plan(req(from_uri=from_uri), "", proxy=False) is outcome.BAD_REQUEST
    assert authorize.plan(req(from_uri=from_uri), "", proxy=True) is outcome.BAD_REQUEST


@pytest.mark.parametrize("proxy", [False, True])
def test_tel_from_derives_an_empty_realm(proxy: bool) -> None:
    # tel: parses with an empty host: the lookup realm is "" (no 400), no credentials
    # with a realm match it, and the identity is the number with no host
    r = req(from_uri="tel:+1234;phone-context=x", credentials=(cred("from.org"),))
    c = ctx(authorize.plan(r, "", proxy=proxy))
    assert c.identity == SipUri("+1234", "", "")
    assert c.credentials is None


@pytest.mark.parametrize("body", ['Digest username="a", nonce="n"', 'Digest username="a", realm=""'])
def test_tel_from_selects_credentials_without_realm(body: str) -> None:
    # the empty realm matches a header with no (or an empty) realm, and equals the empty host
    c = ctx(authorize.plan(req(from_uri="tel:+1234", credentials=(body,)), "", proxy=False))
    assert c.credentials is not None
    assert c.credentials.username == "a"
    assert c.identity.host == ""


def test_tel_from_with_realm_given_and_matching_credentials_is_no_reply_error() -> None:
    # the credentials' realm cannot equal the empty host of a tel: identity
    r = req(from_uri="tel:+1234", credentials=(cred("from.org"),))
    assert authorize.plan(r, "from.org", proxy=False) is outcome.NO_REPLY_ERROR


def test_tel_to_on_www_register_derives_an_empty_realm() -> None:
    c = ctx(authorize.plan(req(method="REGISTER", to_uri="tel:+1234"), "", proxy=False))
    assert c.identity == SipUri("+1234", "", "")


def test_unparsable_to_on_www_register_while_deriving_realm_is_bad_request() -> None:
    assert authorize.plan(req(method="REGISTER", to_uri="garbage"), "", proxy=False) is outcome.BAD_REQUEST


def test_unparsable_to_on_proxy_register_is_no_reply_error() -> None:
    # realm derived from the (good) From; the identity To then fails to parse: -5, no reply
    assert authorize.plan(req(method="REGISTER", to_uri="garbage"), "", proxy=True) is outcome.NO_REPLY_ERROR


def test_unparsable_from_with_realm_given_is_no_reply_error() -> None:
    assert authorize.plan(req(from_uri="garbage"), "from.org", proxy=False) is outcome.NO_REPLY_ERROR


@pytest.mark.parametrize("ruri", [None, "", "tel:", "tel:;x=y", "sip:bob@"])
def test_unparsable_ruri_is_no_reply_error(ruri: str | None) -> None:
    assert authorize.plan(req(ruri=ruri), "", proxy=False) is outcome.NO_REPLY_ERROR


@pytest.mark.parametrize("ruri", ["tel:+123", "TELS:+123;phone-context=x?h=v"])
def test_tel_ruri_parses(ruri: str) -> None:
    c = ctx(authorize.plan(req(ruri=ruri, credentials=(cred("from.org"),)), "", proxy=False))
    assert c.ruri == SipUri("+123", "", "")
    assert c.identity == SipUri("alice", "from.org", "")
    assert c.credentials is not None


def test_bad_request_comes_before_uri_errors() -> None:
    # find_credentials (400) runs before the identity and R-URI are parsed
    r = req(ruri="garbage", credentials=('Digest realm="x',))
    assert authorize.plan(r, "from.org", proxy=False) is outcome.BAD_REQUEST


# --- result_outcome ---------------------------------------------------------------

CH = b'Digest realm="from.org", nonce="abc", qop="auth"\r\n'


def test_authorized_passes() -> None:
    assert authorize.result_outcome(Result.AUTHORIZED, None, proxy=False) is outcome.PASS
    assert authorize.result_outcome(Result.AUTHORIZED, CH, proxy=True) is outcome.PASS


def test_not_authorized_is_forbidden() -> None:
    assert authorize.result_outcome(Result.NOT_AUTHORIZED, CH, proxy=False) is outcome.FORBIDDEN


def test_server_error() -> None:
    assert authorize.result_outcome(Result.SERVER_ERROR, CH, proxy=False) is outcome.SERVER_ERROR


def test_www_challenge() -> None:
    o = authorize.result_outcome(Result.CHALLENGE, CH, proxy=False)
    assert (o.code, o.reason, o.ret) == (401, "Unauthorized", -5)
    assert o.header == "WWW-Authenticate: " + CH.decode()


def test_proxy_challenge() -> None:
    o = authorize.result_outcome(Result.CHALLENGE, CH, proxy=True)
    assert (o.code, o.reason, o.ret) == (407, "Proxy Authentication Required", -5)
    assert o.header == "Proxy-Authenticate: " + CH.decode()


def test_challenge_without_crlf_gets_one() -> None:
    o = authorize.result_outcome(Result.CHALLENGE, CH[:-2], proxy=False)
    assert o.header == "WWW-Authenticate: " + CH.decode()


@pytest.mark.parametrize(
    "challenge", [CH[:-2] + b"\r\nSet-Cookie: x\r\n", b"Digest\nrealm", b"Digest\r", b"", b"Dig\0est\r\n"]
)
def test_hostile_challenge_is_server_error(challenge: bytes) -> None:
    assert authorize.result_outcome(Result.CHALLENGE, challenge, proxy=False) is outcome.SERVER_ERROR
    assert authorize.result_outcome(Result.CHALLENGE, challenge, proxy=True) is outcome.SERVER_ERROR


def test_challenge_result_without_challenge_is_server_error() -> None:
    assert authorize.result_outcome(Result.CHALLENGE, None, proxy=False) is outcome.SERVER_ERROR


# --- identity_check ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "user", "ok"),
    [
        ("INVITE", "alice", True),
        ("INVITE", "alice@from.org", True),
        ("INVITE", "alice@FROM.ORG", True),
        ("INVITE", "mallory", False),
        ("INVITE", "Alice", False),  # SIP compares user parts case-sensitively
        ("INVITE", "alice@other.org", False),
        ("INVITE", "", False),
        ("REGISTER", "bob", True),  # the To user
        ("REGISTER", "alice", False),  # the From user does not count for REGISTER
    ],
)
def test_identity_check(method: str, user: str, ok: bool) -> None:
    realm = "to.net" if method == "REGISTER" else "from.org"
    r = req(method=method, credentials=(cred(realm, user),))
    result = authorize.plan(r, "", proxy=False, check_identity=True)
    if ok:
        assert isinstance(result, AuthContext)
    else:
        assert result == outcome.FORBIDDEN and "is not the" in result.note
    assert isinstance(authorize.plan(r, "", proxy=False), AuthContext)  # off: the C module's behaviour


def test_identity_check_needs_credentials_to_apply() -> None:
    assert isinstance(authorize.plan(req(from_uri="sip:from.org"), "", proxy=False, check_identity=True), AuthContext)
