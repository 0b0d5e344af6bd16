"""sip/uri: the user, host and explicit port of SIP URIs; everything else is an error."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter.sip.uri import SipUri, UriError, parse_uri


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the Request-URI forms of the Resource table (§4.3)
        ("sip:bob@example.com:5080", SipUri("bob", "example.com", "5080")),
        ("sip:bob@example.com;transport=udp", SipUri("bob", "example.com", "")),
        ("sip:example.com:5080", SipUri("", "example.com", "5080")),
        ("sip:example.com", SipUri("", "example.com", "")),
        ("sip:bob@[2001:db8::1]:5062", SipUri("bob", "[2001:db8::1]", "5062")),
    ],
)
def test_resource_table_forms(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:[2001:db8::1]", SipUri("", "[2001:db8::1]", "")),
        ("sip:[::1]:5060;transport=tcp", SipUri("", "[::1]", "5060")),
        ("sip:bob@[2001:db8::1];lr", SipUri("bob", "[2001:db8::1]", "")),
    ],
)
def test_ipv6(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:bob@example.com:5060;transport=tcp;lr", SipUri("bob", "example.com", "5060")),
        ("sip:bob@example.com?subject=hi&priority=urgent", SipUri("bob", "example.com", "")),
        ("sip:bob@example.com:5060?subject=hi", SipUri("bob", "example.com", "5060")),
        ("sip:bob@example.com;maddr=10.0.0.1?x=y", SipUri("bob", "example.com", "")),
        ("sip:example.com;transport=tcp", SipUri("", "example.com", "")),
    ],
)
def test_params_and_headers_are_dropped(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


def test_user_password_keeps_only_user() -> None:
    assert parse_uri("sip:bob:secret@example.com:5070") == SipUri("bob", "example.com", "5070")


def test_sips_and_case_insensitive_scheme() -> None:
    assert parse_uri("sips:bob@example.com") == SipUri("bob", "example.com", "")
    assert parse_uri("SIP:bob@Example.COM") == SipUri("bob", "Example.COM", "")


def test_host_case_is_kept() -> None:
    assert parse_uri("sip:Alice@EXAMPLE.com").host == "EXAMPLE.com"


def test_phone_number_user() -> None:
    assert parse_uri("sip:+4930123456;phone-context=x@example.com;user=phone").user == "+4930123456;phone-context=x"


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "mailto:bob@example.com",
        "http://example.com/",
        "bob@example.com",
        "example.com",
        "sip",
        "sip:",
        "sip:@example.com",
        "sip:bob@",
        "sip:bob@;transport=udp",
        "sip::5060",
        "sip:bob@exa mple.com",
        "sip:bob@<example.com>",
        'sip:bob@"example.com"',
        "sip:bob@example.com\r\nX-Injected: 1",
        "sip:bo\r\nb@example.com",
        "sip:bo\0b@example.com",
        "garbage",
        "<sip:bob@example.com>",
        " sip:bob@example.com",
    ],
)
def test_unparsable_uris(text: str | None) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


@pytest.mark.parametrize(
    "text",
    [
        "sip:bob@example.com:",
        "sip:bob@example.com:abc",
        "sip:bob@example.com:65536",
        "sip:bob@example.com:99999999999999999999",
        "sip:bob@example.com:-1",
        "sip:bob@example.com:+5060",
        "sip:bob@example.com: 5060",
        "sip:bob@example.com:50 60",
        "sip:bob@example.com:5060:5061",
        "sip:bob@example.com:\u0665\u0660\u0666\u0660",  # Arabic-Indic digits
        "sip:bob@example.com:\u00b2",  # superscript two: isdigit() but not a port
        "sip:[2001:db8::1]:",
        "sip:[2001:db8::1]:x",
        "sip:[2001:db8::1]:70000",
    ],
)
def test_bad_ports(text: str) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Kamailio reads tel:/tels: as the number in the user part and an empty host
        ("tel:+4930123456", SipUri("+4930123456", "", "")),
        ("TEL:+4930123456", SipUri("+4930123456", "", "")),
        ("tels:+1-202-555-0100", SipUri("+1-202-555-0100", "", "")),
        ("tel:7042;phone-context=example.com", SipUri("7042", "", "")),
        ("tel:+123?subject=hi", SipUri("+123", "", "")),
        ("tel:+123;ext=1?subject=hi", SipUri("+123", "", "")),
        ("tel:+123?a=b;c=d", SipUri("+123", "", "")),
        ("tel:123@host.com:5060", SipUri("123@host.com:5060", "", "")),  # no host splitting
    ],
)
def test_tel_uris(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "tel:",
        "tels:",
        "tel:;phone-context=x",
        "tel:?x=y",
        "tel:+1 234",
        "tel: +1234",
        "tel:+12\t34",
        "tel:+1234\r\nX-Injected: 1",
        "tel:+12\x0034",
        "telx:+1234",
        "tel+1234",
    ],
)
def test_bad_tel_uris(text: str) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


def test_highest_port_accepted() -> None:
    assert parse_uri("sip:example.com:65535").port == "65535"


@pytest.mark.parametrize(
    "text",
    ["sip:bob@[2001:db8::1", "sip:bob@[2001:db8::1]x", "sip:bob@[2001:db8::1]5060", "sip:[::1]]"],
)
def test_bad_ipv6_references(text: str) -> None:
    with pytest.raises(UriError):
        parse_uri(text)


def test_uri_error_is_value_error() -> None:
    assert issubclass(UriError, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "sip:bob@exam\rple.com",
        "sip:bob@exam\nple.com",
        "sip:bob@exam\0ple.com",
        "sip:exam\0ple.com:5060",
        "sip:bob@example.com\0",
    ],
)
def test_control_characters_in_host_rejected(text: str) -> None:
    # A NUL in the host would reach the server inside Destination-Realm and Resource;
    # CR and LF are refused already, NUL must be too.
    with pytest.raises(UriError):
        parse_uri(text)
