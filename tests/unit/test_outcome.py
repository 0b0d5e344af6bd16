"""outcome: replies and return codes, and the challenge header guard."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter import outcome
from kamailio_auth_diameter.backend import rfc4740 as rfc4740_backend
from kamailio_auth_diameter.outcome import ChallengeError, Outcome
from kamailio_auth_diameter.wire import sip_app

CH = b'Digest realm="example.com", nonce="abc", qop="auth"'


def test_fixed_outcomes() -> None:
    assert outcome.PASS == Outcome(0, "", 1)
    assert outcome.NO_REPLY_ERROR == Outcome(0, "", -5)
    assert outcome.BAD_REQUEST == Outcome(400, "Bad Request", 0)
    assert outcome.FORBIDDEN == Outcome(403, "Forbidden", -5)
    assert outcome.SERVER_ERROR == Outcome(500, "Server Internal Error", -5)


def test_return_code_constants() -> None:
    assert (outcome.AUTHORIZED, outcome.AUTH_ERROR, outcome.STOP) == (1, -5, 0)


def test_www_challenge_keeps_its_crlf() -> None:
    o = outcome.challenge(False, CH + b"\r\n")
    assert o == Outcome(401, "Unauthorized", -5, "WWW-Authenticate: " + CH.decode() + "\r\n")


def test_proxy_challenge() -> None:
    o = outcome.challenge(True, CH + b"\r\n")
    assert o == Outcome(407, "Proxy Authentication Required", -5, "Proxy-Authenticate: " + CH.decode() + "\r\n")


def test_missing_crlf_is_added() -> None:  # B13
    assert outcome.challenge(False, CH).header == "WWW-Authenticate: " + CH.decode() + "\r\n"


def test_header_ends_with_exactly_one_crlf() -> None:
    header = outcome.challenge(False, CH + b"\r\n").header
    assert header.endswith("\r\n")
    assert not header.endswith("\r\n\r\n")
    assert header.count("\r") == 1


def test_utf8_is_kept() -> None:
    o = outcome.challenge(False, 'Digest realm="b\u00fccher.example"\r\n'.encode())
    assert o.header == 'WWW-Authenticate: Digest realm="b\u00fccher.example"\r\n'


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"\r\n",
        CH + b"\r\n\r\n",  # a blank line would end the headers
        CH + b"\r\nX-Injected: 1\r\n",
        CH + b"\nX: 1",
        CH + b"\rX: 1",
        CH + b"\r",
        CH + b"\n",
        CH + b"\0\r\n",
        b"\0" + CH,
        CH + b"\xff\xfe",  # not UTF-8
        CH + b"\xed\xa0\x80",  # an encoded surrogate is not UTF-8 either
        CH + b"\x0b",  # VT, ESC, DEL and the other controls break parsers and terminals (they passed)
        CH[:10] + b"\x1b[2J" + CH[10:],
        CH + b"\x7f\r\n",
        CH + b"\x01",
    ],
)
def test_hostile_challenges_are_refused(value: bytes) -> None:
    with pytest.raises(ChallengeError):
        outcome.challenge(False, value)
    with pytest.raises(ChallengeError):
        outcome.challenge(True, value)


def test_challenge_error_is_value_error() -> None:
    assert issubclass(ChallengeError, ValueError)


def test_tab_is_white_space_and_stays() -> None:
    assert outcome.challenge(False, b'Digest\trealm="a"\r\n').header == 'WWW-Authenticate: Digest\trealm="a"\r\n'


@pytest.mark.parametrize("nonce", ["ab\x0bc", "ab\x1bc", "ab\x7fc", "ab\tc", 'a"b', "a\\b"])
def test_rfc4740_challenge_values_with_controls_are_refused(nonce: str) -> None:
    """The same rule for a challenge rebuilt from an MAA's Digest-* values (wire/sip_app)."""
    assert rfc4740_backend.challenge_value(sip_app.DigestChallenge("example.com", nonce)) is None
    assert rfc4740_backend.challenge_value(sip_app.DigestChallenge("example.com", "abc")) is not None
