"""kamailio/plugin in a verifying mode, with a fake KSR whose htables hold the HA1 cache:
what a flow reads through KSR, and the plugin's part of the judgement (no Diameter here;
tests/real/test_verify_in_proxy.py runs the same with Kamailio, sipp and a server)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fake_ksr import FakeKSR

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.backend.shared import cache_key
from kamailio_auth_diameter.kamailio.plugin import AuthDiameter

REALM = "example.com"
HA1 = digest.ha1("alice", REALM, "secret")
NONCE = re.compile(r'nonce="([0-9a-f]{48})"')


@pytest.fixture
def ksr() -> FakeKSR:
    k = FakeKSR()
    k.tables[("authdia_ha1", cache_key(REALM, "alice"))] = f"MD5={HA1}"  # cached: no Diameter needed
    return k


@pytest.fixture
def p(make: Callable[..., AuthDiameter], ksr: FakeKSR, secret: str) -> AuthDiameter:
    values = {
        "protocol": "rfc4740-ha1",
        "nonce_secret_file": secret,
        "peers": "127.0.0.1:9",  # never asked: every test's user is cached
        "origin_host": "kamailio.example.com",
        "origin_realm": REALM,
    }
    return make(ksr, values)


def register(ksr: FakeKSR, authorization: list[str] | None = None, to: str = "sip:alice@example.com") -> None:
    ksr.request(method="REGISTER", ruri="sip:example.com", fu=to, tu=to, authorization=authorization)
    ksr.calls.clear()


def answer(nonce: str, nc: str = "00000001", uri: str = "sip:example.com") -> str:
    d = digest.DigestInput("REGISTER", uri, nonce, "MD5", "auth", nc, "c0ffee")
    return (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{digest.response(HA1, d)}", algorithm=MD5, cnonce="c0ffee", qop=auth, nc={nc}'
    )


def challenged_nonce(p: AuthDiameter, ksr: FakeKSR) -> str:
    register(ksr)
    assert p.diameter_www_authorize(None, REALM) == -5
    assert ksr.replies == [(401, "Unauthorized")]
    m = NONCE.search(ksr.reply_headers[0])
    assert m is not None, ksr.reply_headers
    return m.group(1)


def test_a_request_without_credentials_is_challenged_on_its_method_and_header_count(
    p: AuthDiameter, ksr: FakeKSR
) -> None:
    challenged_nonce(p, ksr)
    reads = {c[1] for c in ksr.calls if c[0] == "pv.get" and not c[1].startswith("$sel(")}
    assert reads == {"$rm", "$hdrc(Authorization)"}  # no URI, no $mi: the challenge needs neither
    assert ksr.pvs["$avp(auth_diameter)"] == "challenged"
    assert ksr.stats.get("dia_auth_challenged") == 1


def test_a_request_without_credentials_is_challenged_whatever_its_to(p: AuthDiameter, ksr: FakeKSR) -> None:
    """Unlike the modes that ask the server (the C module gives up on such a request
    without a reply), a challenge here reads no URI: the credentials that answer it are
    checked against the request that carries them."""
    register(ksr, to="not a uri")
    assert p.diameter_www_authorize(None, REALM) == -5
    assert ksr.replies == [(401, "Unauthorized")]


def test_the_answer_is_authorized_once_and_its_replay_is_stale(p: AuthDiameter, ksr: FakeKSR) -> None:
    nonce = challenged_nonce(p, ksr)
    register(ksr, [answer(nonce)])
    assert p.diameter_www_authorize(None, REALM) == 1
    assert ksr.replies == []
    assert ksr.stats.get("dia_ha1_cache_hits") == 1
    register(ksr, [answer(nonce)])  # the same nonce-count again
    assert p.diameter_www_authorize(None, REALM) == -5
    assert "stale=true" in ksr.reply_headers[0]
    assert ksr.stats.get("dia_replays") == 1


def test_credentials_are_checked_against_the_request_that_carries_them(p: AuthDiameter, ksr: FakeKSR) -> None:
    nonce = challenged_nonce(p, ksr)
    register(ksr, [answer(nonce)], to="not a uri")  # planned as before: no reply, -5
    assert p.diameter_www_authorize(None, REALM) == -5
    assert ksr.replies == []
    register(ksr, [answer(nonce, uri="sip:bob@example.com")])  # the digest uri is not the R-URI
    assert p.diameter_www_authorize(None, REALM) == -5
    assert ksr.pvs["$avp(auth_diameter)"] == "refused"
    register(ksr, [answer(nonce)])  # neither consumed the nonce-count
    assert p.diameter_www_authorize(None, REALM) == 1


def test_without_a_realm_the_request_is_planned_first(p: AuthDiameter, ksr: FakeKSR) -> None:
    """An empty realm is derived from To (REGISTER) or From, as in every mode."""
    register(ksr)
    assert p.diameter_www_authorize(None, "") == -5
    assert 'realm="example.com"' in ksr.reply_headers[0]
    assert ("pv.get", "$tu") in ksr.calls
