"""digest: RFC 2617 / RFC 7616 vectors, RFC 2069 style, -sess, and check() on hostile responses."""

from __future__ import annotations

import hashlib

import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.digest import DigestInput, UnsupportedAlgorithm

RFC2617_HA1 = digest.ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
RFC2617_INPUT = DigestInput(
    method="GET",
    uri="/dir/index.html",
    nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
    qop="auth",
    nc="00000001",
    cnonce="0a4f113b",
)
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"

RFC7616_REALM = "http-auth@example.org"
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _rfc7616_input(algorithm: str) -> DigestInput:
    return DigestInput(
        method="GET",
        uri="/dir/index.html",
        nonce=RFC7616_NONCE,
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC7616_CNONCE,
    )


def test_rfc2617_vector() -> None:
    assert digest.response(RFC2617_HA1, RFC2617_INPUT) == RFC2617_RESPONSE


def test_rfc2617_ha1_is_md5_of_user_realm_password() -> None:
    assert RFC2617_HA1 == _md5("Mufasa:testrealm@host.com:Circle Of Life")


def test_rfc7616_md5_vector() -> None:
    ha1 = digest.ha1("Mufasa", RFC7616_REALM, "Circle of Life", "MD5")
    assert digest.response(ha1, _rfc7616_input("MD5")) == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_vector() -> None:
    ha1 = digest.ha1("Mufasa", RFC7616_REALM, "Circle of Life", "SHA-256")
    expected = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert digest.response(ha1, _rfc7616_input("SHA-256")) == expected


def test_algorithm_token_is_case_insensitive() -> None:
    ha1 = digest.ha1("Mufasa", RFC7616_REALM, "Circle of Life", "sha-256")
    expected = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert digest.response(ha1, _rfc7616_input("sha-256")) == expected


def test_empty_algorithm_means_md5() -> None:
    assert digest.ha1("a", "r", "p", "") == _md5("a:r:p")


def test_sha512_256_ha1() -> None:
    assert digest.ha1("a", "r", "p", "SHA-512-256") == hashlib.new("sha512_256", b"a:r:p").hexdigest()


def test_rfc2069_style_without_qop() -> None:
    ha1 = _md5("Mufasa:testrealm@host.com:Circle Of Life")
    d = DigestInput(method="GET", uri="/dir/index.html", nonce="abc")
    ha2 = _md5("GET:/dir/index.html")
    assert digest.response(ha1, d) == _md5(f"{ha1}:abc:{ha2}")


def test_md5_sess() -> None:
    ha1 = digest.ha1("u", "r", "p")
    d = DigestInput(
        method="REGISTER", uri="sip:r", nonce="n1", algorithm="MD5-sess", qop="auth", nc="00000001", cnonce="c1"
    )
    a1 = _md5(f"{ha1}:n1:c1")
    ha2 = _md5("REGISTER:sip:r")
    assert digest.response(ha1, d) == _md5(f"{a1}:n1:00000001:c1:auth:{ha2}")


def test_sha256_sess_uses_sha256_everywhere() -> None:
    ha1 = digest.ha1("u", "r", "p", "SHA-256-sess")
    assert ha1 == hashlib.sha256(b"u:r:p").hexdigest()
    d = DigestInput(method="INVITE", uri="sip:b@r", nonce="n", algorithm="SHA-256-sess", qop="auth", nc="1", cnonce="c")

    def h(t: str) -> str:
        return hashlib.sha256(t.encode()).hexdigest()

    expected = h(f"{h(f'{ha1}:n:c')}:n:1:c:auth:{h('INVITE:sip:b@r')}")
    assert digest.response(ha1, d) == expected


def test_auth_int_hashes_the_body() -> None:
    ha1 = digest.ha1("u", "r", "p")
    d = DigestInput(method="INVITE", uri="sip:b@r", nonce="n", qop="auth-int", nc="1", cnonce="c", body=b"v=0\r\n")
    ha2 = _md5(f"INVITE:sip:b@r:{hashlib.md5(b'v=0' + bytes([13, 10])).hexdigest()}")
    assert digest.response(ha1, d) == _md5(f"{ha1}:n:1:c:auth-int:{ha2}")


def test_check_accepts_right_response() -> None:
    assert digest.check(RFC2617_HA1, RFC2617_INPUT, RFC2617_RESPONSE)


def test_check_accepts_upper_case_hex() -> None:
    assert digest.check(RFC2617_HA1, RFC2617_INPUT, RFC2617_RESPONSE.upper())


@pytest.mark.parametrize(
    "given",
    [
        "",
        "6629fae49393a05397450978507c4ef0",  # last digit off
        RFC2617_RESPONSE[:-1],  # one short
        RFC2617_RESPONSE + "0",  # one long
        " " + RFC2617_RESPONSE,
        "6629fae49393a05397450978507c4ef\u00e9",  # non-ASCII
        "\u0130" * 32,  # lower() changes the length
        "\udc80" * 32,  # lone surrogates
        "\0" * 32,
    ],
)
def test_check_rejects_wrong_responses_without_raising(given: str) -> None:
    assert digest.check(RFC2617_HA1, RFC2617_INPUT, given) is False


def test_check_wrong_password() -> None:
    assert not digest.check(
        digest.ha1("Mufasa", "testrealm@host.com", "circle of life"), RFC2617_INPUT, RFC2617_RESPONSE
    )


@pytest.mark.parametrize("algorithm", ["SHA-1", "MD4", "bogus", "MD5-sess-sess", "-sess"])
def test_check_unsupported_algorithm_is_false(algorithm: str) -> None:
    d = DigestInput(method="GET", uri="/", nonce="n", algorithm=algorithm)
    assert digest.check(RFC2617_HA1, d, RFC2617_RESPONSE) is False


@pytest.mark.parametrize("algorithm", ["SHA-1", "bogus"])
def test_response_and_ha1_raise_on_unsupported_algorithm(algorithm: str) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        digest.ha1("u", "r", "p", algorithm)
    with pytest.raises(UnsupportedAlgorithm):
        digest.response(RFC2617_HA1, DigestInput(method="GET", uri="/", nonce="n", algorithm=algorithm))


def test_unsupported_algorithm_is_a_value_error() -> None:
    assert issubclass(UnsupportedAlgorithm, ValueError)


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "MD5-SESS", "SHA-256-SESS", "SHA-512-256", "SHA-1"])
@pytest.mark.parametrize("given", [None, "upper", "wrong", "\u0130" * 32])
def test_check_auth_says_what_check_says(algorithm: str, given: str | None) -> None:
    """check_auth, the verifying proxy's shortcut for qop=auth, against the general check
    for every algorithm token, including those it hands over to check."""
    d = _rfc7616_input(algorithm)
    try:
        right = digest.response(RFC2617_HA1, d)
    except UnsupportedAlgorithm:
        right = "0" * 32
    text = {None: right, "upper": right.upper(), "wrong": right[:-1] + "x"}.get(given, given)
    expected = digest.check(RFC2617_HA1, d, text)
    assert digest.check_auth(RFC2617_HA1, algorithm, d.method, d.uri, d.nonce, d.nc, d.cnonce, text) is expected
    assert expected is (given in (None, "upper") and algorithm != "SHA-1")
