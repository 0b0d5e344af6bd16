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


def test_backslash_is_not_an_escape() -> None:
    # Kamailio ends a quoted value at the next double quote, backslash or not; what
    # follows up to the next comma is skipped
    cred = _parse(r'Digest username="al\"ice", realm="ex\\ample.com", nonce="a\bc"')
    assert cred.params == {"username": "al\\", "realm": "ex\\\\ample.com", "nonce": "a\\bc"}
    assert _parse('Digest username="\\", realm="r"').params == {"username": "\\", "realm": "r"}


def test_comma_and_equals_inside_quotes() -> None:
    cred = _parse('Digest username="a, b=c", realm="example.com"')
    assert cred.username == "a, b=c"
    assert cred.realm == "example.com"


def test_empty_quoted_value() -> None:
    assert _parse('Digest username="", realm="example.com"').username == ""


def test_later_occurrence_replaces_earlier() -> None:
    cred = _parse('Digest realm="first.com", username="a", realm="second.com"')
    assert cred.realm == "second.com"
    assert _parse("Digest Username=a, USERNAME=b, username=c").username == "c"
    # an empty quoted value replaces too
    assert _parse('Digest realm="r", realm=""').params == {"realm": ""}


def test_unknown_parameters_are_dropped() -> None:
    cred = _parse('Digest username="a", stale=true, domain="x, y=z", auts=q, realm=r, Algorithm=MD5')
    assert cred.params == {"username": "a", "realm": "r", "algorithm": "MD5"}


def test_all_known_parameters_are_kept() -> None:
    names = ("username", "realm", "nonce", "uri", "response", "cnonce", "opaque", "qop", "nc", "algorithm")
    cred = _parse("Digest " + ", ".join(f"{n.upper()}={n}-v" for n in names))
    assert cred.params == {n: f"{n}-v" for n in names}


def test_unquoted_value_ends_at_lws_or_comma() -> None:
    assert _parse("Digest nonce=abc def, realm=r").params == {"nonce": "abc", "realm": "r"}
    assert _parse("Digest nonce=abc\r\n def").params == {"nonce": "abc"}
    # quotes and '=' inside an unquoted value are ordinary characters
    assert _parse('Digest username=a"b"c, nonce=x=y').params == {"username": 'a"b"c', "nonce": "x=y"}


def test_value_may_follow_lws_and_line_folding() -> None:
    assert _parse('Digest username =\r\n "a" , realm=\t\tr').params == {"username": "a", "realm": "r"}


@pytest.mark.parametrize("sep", [" ", "\t", "\r", "\n", ",", "\r\n "])
def test_scheme_is_followed_by_lws_or_comma(sep: str) -> None:
    assert _parse(f"Digest{sep}username=a").params == {"username": "a"}


def test_leading_lws_before_scheme() -> None:
    assert _parse(" \t\r\nDigest username=a").params == {"username": "a"}


@pytest.mark.parametrize(
    ("body", "params"),
    [
        # formerly malformed under the RFC 3261 grammar; Kamailio accepts them and the C
        # module forwards them, so they must parse, to exactly these values
        ('Digest username="alice, realm="example.com', {"username": "alice, realm="}),
        ('Digest username="alice", realm="example.com" garbage', {"username": "alice", "realm": "example.com"}),
        ('Digest username="alice", realm="example.com"x', {"username": "alice", "realm": "example.com"}),
        ('Digest username="a" realm="b"', {"username": "a"}),  # no comma: realm is skipped
        ("Digest username=alice realm=example.com", {"username": "alice"}),
        ('Digest realm="r";foo=bar, nonce=n', {"realm": "r", "nonce": "n"}),
        ('Digest username "alice", realm="example.com"', {}),  # name is 'username "alice", realm'
        ('Digest ="alice"', {}),  # empty name: not a known parameter
        ('Digest ="alice", realm=r', {"realm": "r"}),
        ("Digest username=@lice", {"username": "@lice"}),
        ('Digest username="a\rb", realm="r"', {"username": "a\rb", "realm": "r"}),
        ('Digest username="a\nb", realm="r"', {"username": "a\nb", "realm": "r"}),
        ('Digest username="a\0b", realm="r"', {"username": "a\0b", "realm": "r"}),
        ('Digest username=alice\0, realm="r"', {"username": "alice\0", "realm": "r"}),
        ('Digest username="al\\\rice", realm="r"', {"username": "al\\\rice", "realm": "r"}),
        ('Digest username="al\\\nice", realm="r"', {"username": "al\\\nice", "realm": "r"}),
        # a parameter without '=' before a real one takes that one's name with it
        ('Digest foo, username="a", realm=r', {"realm": "r"}),
        ('Digest ,username="a", realm="r"', {"realm": "r"}),
        ('Digest username="a",, realm="r"', {"username": "a"}),
        ('Digest username="a",, realm="r", realm="s"', {"username": "a", "realm": "s"}),
        ("Digest " + "=" * 20, {}),
    ],
)
def test_lenient_forms_parse_as_kamailio_does(body: str, params: dict[str, str]) -> None:
    cred = _parse(body)
    assert cred.params == params
    assert cred.raw == body


def test_missing_username_and_realm_read_as_empty() -> None:
    cred = _parse("Digest nonce=x")
    assert cred.username == ""
    assert cred.realm == ""


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "Digest",  # the scheme alone
        "  Digest",
        "\tDIGEST",
        "Digest=x",
        "Digest:x=y",
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
        "Digest ",  # nothing after the scheme
        "Digest,",
        "Digest\t",
        "Digest   \r\n ",
        'Digest username="alice',  # unterminated quote
        'Digest username="alice\\',  # backslash then end
        'Digest username="a\\"b", realm="r',  # the quote after the backslash closed the first value
        'Digest username="alice", realm="example.com',
        "Digest username",  # missing '='
        'Digest username="a", realm',
        "Digest username=",  # missing value
        "Digest username= \t\r\n",
        'Digest username=, realm="r"',  # empty unquoted value
        'Digest username= , realm="r"',
        "Digest a=,b=c",
        'Digest username="a",',  # trailing comma
        'Digest username="a", ',
        "Digest username=a , ,",
        'Digest username="a", realm="r" x,',
    ],
)
def test_malformed_raises(body: str) -> None:
    with pytest.raises(CredentialsError):
        parse_credentials(body)


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
        select_credentials(['Digest username="x", realm="other.org', _header("example.com")], "example.com")


def test_malformed_other_realm_header_before_a_match_raises() -> None:
    with pytest.raises(CredentialsError):
        select_credentials(['Digest realm="other.org", username="x",', _header("example.com")], "example.com")


def test_malformed_header_after_the_match_is_not_read() -> None:
    cred = select_credentials([_header("example.com", "a"), 'Digest username="x'], "example.com")
    assert cred is not None
    assert cred.username == "a"


def test_lenient_header_before_a_match_is_skipped() -> None:
    # no comma before username: parsed (realm other.org, no username), does not match
    bodies = ['Digest realm="other.org" username="x"', _header("example.com", "b")]
    cred = select_credentials(bodies, "example.com")
    assert cred is not None
    assert cred.username == "b"


def test_realm_lost_to_a_missing_comma_does_not_match() -> None:
    assert select_credentials(['Digest username="x" realm="example.com"'], "example.com") is None


def test_lenient_header_can_be_selected() -> None:
    body = 'Digest username="x" junk, realm="example.com" junk, nonce=n'
    cred = select_credentials([body], "example.com")
    assert cred is not None
    assert cred.params == {"username": "x", "realm": "example.com", "nonce": "n"}
    assert cred.raw == body


def test_empty_realm_selects_credentials_without_realm() -> None:
    # an empty lookup realm (e.g. derived from a tel: URI) matches a header with no realm
    cred = select_credentials(['Digest username="x"', 'Digest username="y", realm=""'], "")
    assert cred is not None
    assert cred.username == "x"
    assert select_credentials([_header("example.com")], "") is None


def test_long_values_and_many_params() -> None:
    long_value = "x" * 100_000
    many = ", ".join(f"p{i}={i}, nc={i}" for i in range(2000))
    cred = _parse(f'Digest username="{long_value}", {many}, realm="example.com"')
    assert cred.params == {"username": long_value, "nc": "1999", "realm": "example.com"}


@pytest.mark.parametrize(
    ("body", "params"),
    [
        ("Digest username=u " + "a=b " * 10_000, {"username": "u"}),  # no commas: all skipped
        ("Digest " + "=" * 100_000, {}),
        ('Digest username="' + "\\" * 100_001 + '"', {"username": "\\" * 100_001}),
        ("Digest username=u" + '"' * 100_000, {"username": "u" + '"' * 100_000}),
    ],
)
def test_long_lenient_input_parses(body: str, params: dict[str, str]) -> None:
    assert _parse(body).params == params


@pytest.mark.parametrize(
    "body",
    [
        "Digest " + "a" * 100_000,  # a name that never gets its '='
        'Digest username="' + "a" * 100_000,  # a quote that never closes
        'Digest username="' + "\\" * 100_001,  # an escape that never ends
        "Digest " + "a=b " * 10_000 + ",",  # no commas until a trailing one
        "Digest " + "a=b," * 10_000,  # trailing comma after many parameters
        "Digest " + "," * 100_000,
        "Digest a=b" + ", x" * 30_000,
    ],
)
def test_long_malformed_input_raises(body: str) -> None:
    with pytest.raises(CredentialsError):
        parse_credentials(body)


def test_hostile_input_of_a_megabyte_parses() -> None:
    # 200k parameters: instant when every step moves forward, minutes (and a visibly
    # stuck suite) if any step rescanned the header from its start
    parsed = parse_credentials("Digest " + "nc=1 x," * 200_000 + "nc=2")
    assert parsed is not None and parsed.params == {"nc": "2"}
    parsed = parse_credentials("Digest " + "a=b," * 200_000 + "realm=r")
    assert parsed is not None and parsed.params == {"realm": "r"}
    with pytest.raises(CredentialsError):
        parse_credentials("Digest " + 'a="x",' * 200_000 + 'b="')
