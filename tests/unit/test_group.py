"""group: diameter_is_user_in's parameter and SIP-side decisions (§7)."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter import group
from kamailio_auth_diameter.group import GroupContext, GroupParamError, GroupQuery
from kamailio_auth_diameter.sip.credentials import Credentials, parse_credentials

RURI = "sip:carl@ruri.net"


def cred(username: str, realm: str = "example.com") -> Credentials:
    c = parse_credentials(f'Digest username="{username}", realm="{realm}", nonce="n", uri="sip:x", response="r"')
    assert c is not None
    return c


@pytest.mark.parametrize(
    ("param", "who"),
    [
        ("From,voicemail", "from"),
        ("FROM,voicemail", "from"),
        ("to,voicemail", "to"),
        ("Request-URI,voicemail", "request-uri"),
        ("request-uri,voicemail", "request-uri"),
        ("Credentials,voicemail", "credentials"),
        (" From ,voicemail", "from"),
    ],
)
def test_parse_param_who(param: str, who: str) -> None:
    assert group.parse_param(param) == GroupQuery(who=who, group="voicemail")


def test_group_is_literal() -> None:
    assert group.parse_param("From,$fU").group == "$fU"
    assert group.parse_param("From,a,b").group == "a,b"
    assert group.parse_param("From, spaced ").group == " spaced "


@pytest.mark.parametrize(
    "param",
    [
        "",
        "From",
        "From,",
        ",voicemail",
        "Contact,voicemail",
        "RURI,voicemail",
        "Request_URI,voicemail",
        "Fromx,g",
        "From;g",
    ],
)
def test_parse_param_errors(param: str) -> None:
    with pytest.raises(GroupParamError, match="diameter_is_user_in"):
        group.parse_param(param)


def test_group_param_error_is_value_error() -> None:
    assert issubclass(GroupParamError, ValueError)


def test_who_list() -> None:
    assert set(group.WHO) == {"request-uri", "to", "from", "credentials"}


@pytest.mark.parametrize("who", ["from", "to", "request-uri"])
def test_plan_uri_user(who: str) -> None:
    uri = RURI if who == "request-uri" else "sip:alice@example.com:5070;transport=tcp"
    expected_user = b"carl" if who == "request-uri" else b"alice"
    assert group.plan(who, uri, RURI, None, use_domain=False) == GroupContext("ruri.net", expected_user)


def test_plan_use_domain() -> None:
    assert group.plan("from", "sip:alice@example.com", RURI, None, use_domain=True) == GroupContext(
        "ruri.net", b"alice@example.com"
    )
    assert group.plan("request-uri", RURI, RURI, None, use_domain=True) == GroupContext("ruri.net", b"carl@ruri.net")


def test_plan_no_user_with_use_domain_sends_domain_and_nul() -> None:
    assert group.plan("from", "sip:example.com", RURI, None, use_domain=True) == GroupContext(
        "ruri.net", b"example.com\0"
    )


def test_plan_no_user_without_use_domain_is_error() -> None:
    assert group.plan("from", "sip:example.com", RURI, None, use_domain=False) == group.ERROR


def test_destination_realm_is_ruri_host_whatever_who() -> None:
    for who in ("from", "to"):
        plan = group.plan(who, "sip:alice@example.com", "sip:x@[2001:db8::2]:5060", None, use_domain=False)
        assert isinstance(plan, GroupContext)
        assert plan.destination_realm == "[2001:db8::2]"


@pytest.mark.parametrize(
    ("username", "realm", "use_domain", "expected"),
    [
        ("alice", "example.com", False, b"alice"),
        ("alice", "example.com", True, b"alice@example.com"),
        ("sip:alice@dom.org", "example.com", False, b"alice"),
        ("sip:alice@dom.org", "example.com", True, b"alice@example.com"),
        ("alice@dom.org", "example.com", True, b"alice@example.com"),
    ],
)
def test_plan_credentials(username: str, realm: str, use_domain: bool, expected: bytes) -> None:
    assert group.plan("credentials", None, RURI, cred(username, realm), use_domain) == GroupContext(
        "ruri.net", expected
    )


def test_plan_credentials_empty_user() -> None:
    assert group.plan("credentials", None, RURI, cred(""), use_domain=False) == group.ERROR
    assert group.plan("credentials", None, RURI, cred(""), use_domain=True) == GroupContext(
        "ruri.net", b"example.com\0"
    )


def test_return_codes() -> None:
    assert (group.USER_IN, group.ERROR, group.BAD_TO, group.BAD_FROM, group.NO_CREDENTIALS, group.BAD_URI) == (
        1,
        -1,
        -2,
        -3,
        -4,
        -5,
    )


def test_no_authorized_credentials() -> None:
    assert group.plan("credentials", None, RURI, None, use_domain=False) == -4


def test_missing_to_and_from() -> None:
    assert group.plan("to", None, RURI, None, use_domain=False) == -2
    assert group.plan("from", None, RURI, None, use_domain=False) == -3
    assert group.plan("request-uri", None, None, None, use_domain=False) == -5


@pytest.mark.parametrize("who", ["to", "from", "request-uri"])
@pytest.mark.parametrize("uri", ["garbage", "tel:", "tel:+1 23", "sip:@x", ""])
def test_unparsable_uri_is_minus_5(who: str, uri: str) -> None:
    ruri = uri if who == "request-uri" else RURI
    assert group.plan(who, uri, ruri, None, use_domain=False) == -5


@pytest.mark.parametrize("ruri", [None, "garbage", "", "tel:"])
def test_unparsable_ruri_for_destination_realm_is_minus_1(ruri: str | None) -> None:
    assert group.plan("from", "sip:alice@example.com", ruri, None, use_domain=False) == -1
    assert group.plan("credentials", None, ruri, cred("alice"), use_domain=False) == -1


@pytest.mark.parametrize(
    ("use_domain", "user_name"),
    [(False, b"+123"), (True, b"+123@")],  # the empty host still gets its '@'
)
@pytest.mark.parametrize("who", ["to", "from"])
def test_tel_to_and_from_give_the_number(who: str, use_domain: bool, user_name: bytes) -> None:
    assert group.plan(who, "tel:+123;phone-context=x", RURI, None, use_domain) == GroupContext("ruri.net", user_name)


@pytest.mark.parametrize("use_domain", [False, True])
def test_tel_ruri_gives_the_number_and_an_empty_destination_realm(use_domain: bool) -> None:
    # the plan succeeds; encoding the empty Destination-Realm then fails (-1, see test_plugin)
    expected = GroupContext("", b"+123@" if use_domain else b"+123")
    assert group.plan("request-uri", "tel:+123", "tel:+123", None, use_domain) == expected


def test_tel_ruri_empty_destination_realm_for_every_who() -> None:
    assert group.plan("from", "sip:alice@example.com", "tel:+123", None, use_domain=False) == GroupContext("", b"alice")
    assert group.plan("credentials", None, "tel:+123", cred("alice"), use_domain=False) == GroupContext("", b"alice")
