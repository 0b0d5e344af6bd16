"""sip/credentials: Digest credentials parsing and selection by realm."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter.sip.credentials import (
    Credentials,
    CredentialsError,
    parse_credentials,
    select_credentials,
)

GOOD = (
    'Digest username="alice", realm="example.com", nonce="abc123", uri="sip:example.com", '
    'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"'
)


def _parse(body: str) -> Credentials:
    cred = parse_credentials(body)
    assert cred is not None
    return cred


def test_good_header() -> None:
    cred = _parse(GOOD)
    assert cred.username == "alice"
    assert cred.realm == "example.com"
    assert cred.params == {
        "username": "alice",
        "realm": "example.com",
        "nonce": "abc123",
        "uri": "sip:example.com",
        "response": "6629fae49393a05397450978507c4ef1",
        "algorithm": "MD5",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
    }


def test_raw_is_kept_byte_for_byte() -> None:
    assert _parse(GOOD).raw == GOOD


def test_scheme_and_param_names_are_case_insensitive() -> None:
    cred = _parse('dIgEsT UserName="alice", REALM="example.com"')
    assert cred.username == "alice"
    assert cred.realm == "example.com"


def test_unquoted_values() -> None:
    cred = _parse("Digest username=alice, realm=example.com, nc=00000001")
    assert cred.params == {"username": "alice", "realm": "example.com", "nc": "00000001"}


def test_lws_around_equals_and_commas() -> None:
    cred = _parse('  Digest   username = "alice"  ,realm=\t"example.com" ,  nonce = x  ')
    assert cred.params == {"username": "alice", "realm": "example.com", "nonce": "x"}


def test_folded_whitespace() -> None:
    cred = _parse('Digest username="alice",\r\n realm="example.com",\r\n\tnonce="n"')
    assert cred.params == {"username": "alice", "realm": "example.com", "nonce": "n"}


def test_escaped_quotes_and_backslashes() -> None:
    cred = _parse(r'Digest username="al\"ice", realm="ex\\ample.com", nonce="a\bc"')
    assert cred.username == 'al"ice'
    assert cred.realm == "ex\\ample.com"
    assert cred.params["nonce"] == "abc"


def test_comma_and_equals_inside_quotes() -> None:
    cred = _parse('Digest username="a, b=c", realm="example.com"')
    assert cred.username == "a, b=c"
    assert cred.realm == "example.com"


def test_empty_quoted_value() -> None:
    assert _parse('Digest username="", realm="example.com"').username == ""


def test_first_occurrence_wins() -> None:
    cred = _parse('Digest realm="first.com", username="a", realm="second.com"')
    assert cred.realm == "first.com"


def test_extra_commas_are_tolerated() -> None:
    cred = _parse('Digest ,username="a",, realm="r",')
    assert cred.params == {"username": "a", "realm": "r"}


def test_missing_username_and_realm_read_as_empty() -> None:
    cred = _parse("Digest nonce=x")
    assert cred.username == ""
    assert cred.realm == ""


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer abc.def",
        'DigestX username="alice", realm="example.com"',
        'Digest-AKA username="alice"',
        "NTLM TlRMTVNTUAAB",
        ',Digest username="alice"',
    ],
)
def test_non_digest_is_none(body: str) -> None:
    assert parse_credentials(body) is None


@pytest.mark.parametrize(
    "body",
    [
        'Digest username="alice, realm="example.com',  # unterminated quote
        'Digest username="alice',
        'Digest username="alice\\',  # backslash then end
        'Digest username "alice", realm="example.com"',  # missing '='
        "Digest username",
        "Digest username=",  # missing value
        'Digest username=, realm="r"',
        'Digest username="alice", realm="example.com" garbage',  # trailing garbage
        'Digest username="alice", realm="example.com"x',
        'Digest username="alice" realm="example.com"',  # missing comma
        "Digest username=alice realm=example.com",
        'Digest ="alice"',  # missing name
        "Digest username=@lice",  # not a token
        'Digest username="a\rb", realm="r"',  # control characters inside quotes
        'Digest username="a\nb", realm="r"',
        'Digest username="a\0b", realm="r"',
        'Digest username=alice\0, realm="r"',
    ],
)
def test_malformed_raises(body: str) -> None:
    with pytest.raises(CredentialsError):
        parse_credentials(body)


@pytest.mark.parametrize("escaped", ["\r", "\n"])
def test_escaped_cr_lf_inside_quotes_raise(escaped: str) -> None:
    # RFC 3261 §25.1: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): CR and LF cannot be
    # escaped, so a CR or LF must not slip into a value through a backslash.
    with pytest.raises(CredentialsError):
        parse_credentials('Digest username="al\\' + escaped + 'ice", realm="example.com"')


def test_credentials_error_is_value_error() -> None:
    assert issubclass(CredentialsError, ValueError)


def _header(realm: str, user: str = "alice") -> str:
    return f'Digest username="{user}", realm="{realm}", nonce="n", uri="sip:x", response="r"'


def test_select_by_realm() -> None:
    bodies = [_header("other.org", "a"), _header("example.com", "b")]
    cred = select_credentials(bodies, "example.com")
    assert cred is not None
    assert cred.username == "b"
    assert cred.raw == bodies[1]


def test_select_is_case_insensitive() -> None:
    cred = select_credentials([_header("Example.COM")], "eXample.com")
    assert cred is not None
    assert cred.realm == "Example.COM"


def test_select_first_of_two_matches() -> None:
    cred = select_credentials([_header("example.com", "a"), _header("example.com", "b")], "example.com")
    assert cred is not None
    assert cred.username == "a"


def test_select_none_when_no_realm_matches() -> None:
    assert select_credentials([_header("other.org")], "example.com") is None
    assert select_credentials([], "example.com") is None


def test_select_is_exact_not_prefix() -> None:
    assert select_credentials([_header("example.com.evil")], "example.com") is None
    assert select_credentials([_header("example.co")], "example.com") is None


def test_select_skips_non_digest() -> None:
    cred = select_credentials(["Basic YWxpY2U6c2VjcmV0", _header("example.com")], "example.com")
    assert cred is not None


def test_malformed_header_before_a_matching_one_raises() -> None:
    with pytest.raises(CredentialsError):
        select_credentials(['Digest username="x, realm="other.org', _header("example.com")], "example.com")


def test_malformed_other_realm_header_before_a_match_raises() -> None:
    with pytest.raises(CredentialsError):
        select_credentials(['Digest realm="other.org" username="x"', _header("example.com")], "example.com")


def test_long_values_and_many_params() -> None:
    long_value = "x" * 100_000
    many = ", ".join(f"p{i}={i}" for i in range(2000))
    cred = _parse(f'Digest username="{long_value}", {many}, realm="example.com"')
    assert cred.username == long_value
    assert cred.realm == "example.com"
    assert len(cred.params) == 2002


@pytest.mark.parametrize(
    "body",
    [
        "Digest " + "a" * 100_000,  # a name that never gets its '='
        'Digest username="' + "a" * 100_000,  # a quote that never closes
        'Digest username="' + "\\" * 100_001,  # an escape that never ends
        "Digest " + "a=b " * 10_000,  # no commas
    ],
)
def test_long_malformed_input_raises(body: str) -> None:
    with pytest.raises(CredentialsError):
        parse_credentials(body)
