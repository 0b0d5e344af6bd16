"""The user-visible flows, proven with a real Kamailio (kamailio.cfg.example), sipp and our server."""

from __future__ import annotations

import pytest

from tests.harness import SipClient
from tests.real.conftest import run

pytestmark = pytest.mark.kamailio


@pytest.mark.parametrize("auth_user", ["alice", "alice@example.com"])
def test_register_401_then_200(kamailio, tmp_path, auth_user):
    run(kamailio, tmp_path, "register_auth", auth_user=auth_user, password="secret", calls=3)


def test_invite_407_then_200(kamailio, tmp_path):
    run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="carol")


def test_wrong_password_is_challenged_again_with_a_fresh_nonce(kamailio, tmp_path):
    run(kamailio, tmp_path, "register_rechallenge", auth_user="alice", password="wrong")


def test_unknown_user_gets_403(kamailio, tmp_path):
    run(kamailio, tmp_path, "register_forbidden", user="mallory", auth_user="mallory", password="x")


def test_malformed_authorization_gets_400(kamailio, tmp_path):
    run(kamailio, tmp_path, "register_malformed")


def test_group_member_may_call_voicemail(kamailio, tmp_path):
    run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="voicemail")


def test_non_member_may_not_call_voicemail(kamailio, tmp_path):
    run(kamailio, tmp_path, "invite_auth_403", user="bob", auth_user="bob", password="bobpw", service="voicemail")


def test_challenge_header_is_well_formed(kamailio):
    reply = SipClient(kamailio.sip_port).request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com")
    assert reply.code == 401 and reply.reason == "Unauthorized"
    challenge = reply.header("WWW-Authenticate")
    assert challenge is not None and challenge.startswith('Digest realm="example.com", nonce="')
    assert challenge.endswith('qop="auth"')
    reply = SipClient(kamailio.sip_port).request("MESSAGE", "sip:bob@example.com")
    assert reply.code == 407 and reply.reason == "Proxy Authentication Required"
    assert reply.header("Proxy-Authenticate").startswith('Digest realm="example.com"')


def test_credentials_for_another_realm_are_ignored_and_challenged(kamailio):
    cred = 'Authorization: Digest username="alice", realm="other.org", nonce="x", uri="sip:example.com", response="0"'
    reply = SipClient(kamailio.sip_port).request("REGISTER", "sip:example.com", headers=(cred,))
    assert reply.code == 401


@pytest.mark.parametrize(
    "from_uri",
    ["sip:alice@example.com;user=phone", "sips:alice@example.com", "sip:example.com"],
)
def test_odd_but_valid_identities_are_challenged(kamailio, from_uri):
    reply = SipClient(kamailio.sip_port).request("INVITE", "sip:bob@example.com", from_uri=from_uri)
    assert reply.code == 407
