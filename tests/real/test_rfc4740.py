"""RFC 4740 mode end to end: real Kamailio (kamailio.cfg.example), sipp, our server as an RFC 6733 peer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Kamailio, ReferenceServer, SipClient, example_kamailio, free_port, sipp
from tests.real.conftest import make_server, run
from tests.real.test_faults import set_cfg

pytestmark = pytest.mark.kamailio

ORIGIN = "kamailio.example.com"


def rfc4740_defines(*peers: int, **more: str) -> dict[str, str]:
    return {
        "DIAMETER_PROTOCOL": '"rfc4740"',
        "DIAMETER_PEERS": '"' + ",".join(f"127.0.0.1:{p}" for p in peers) + '"',
        "ORIGIN_HOST": f'"{ORIGIN}"',
        **more,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("server"))
    s.diameter_port = free_port()
    s.extra = ("--origin-host", "aaa.example.com", "--origin-realm", "example.com", "-v")
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, server: ReferenceServer) -> Iterator[Kamailio]:
    assert server.diameter_port is not None
    k = example_kamailio(tmp_path_factory.mktemp("kamailio"), server.port, **rfc4740_defines(server.diameter_port))
    k.start()
    yield k
    k.stop()
    k.assert_no_crash()


@pytest.mark.parametrize("auth_user", ["alice", "alice@example.com"])
def test_register_401_then_200(kamailio, tmp_path, auth_user):
    run(kamailio, tmp_path, "register_auth", auth_user=auth_user, password="secret", calls=3)


def test_invite_407_then_200(kamailio, tmp_path):
    run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="carol")


def test_wrong_password_gets_403(kamailio, tmp_path):
    """RFC 4740 mode maps 4001 to 403, as the issue asks (legacy re-challenges)."""
    run(kamailio, tmp_path, "register_forbidden", user="alice", auth_user="alice", password="wrong")


def test_unknown_user_gets_403(kamailio, tmp_path):
    run(kamailio, tmp_path, "register_forbidden", user="mallory", auth_user="mallory", password="x")


def test_group_member_may_call_voicemail(kamailio, tmp_path):
    run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="voicemail")


def test_non_member_may_not_call_voicemail(kamailio, tmp_path):
    run(kamailio, tmp_path, "invite_auth_403", user="bob", auth_user="bob", password="bobpw", service="voicemail")


def test_challenge_comes_from_sip_authenticate(kamailio):
    reply = SipClient(kamailio.sip_port).request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com")
    assert reply.code == 401
    challenge = reply.header("WWW-Authenticate")
    assert challenge is not None and challenge.startswith('Digest realm="example.com", nonce="')
    assert challenge.endswith('algorithm=MD5, qop="auth"')


def test_each_worker_is_its_own_peer(kamailio, server, tmp_path):
    run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret", calls=20)
    log = (server.log_path).read_text()
    assert f"w1.{ORIGIN}" in log or f"w2.{ORIGIN}" in log, log[-2000:]


def test_switching_protocol_and_peers_at_run_time(tmp_path, server):
    """cfg_rpc changes apply within 0.1 s: legacy -> rfc4740 -> back; a bad value is refused and logged."""
    assert server.diameter_port is not None
    k = example_kamailio(tmp_path / "k", server.port, children=1, ORIGIN_HOST=f'"{ORIGIN}"')
    k.start()
    try:
        flows = dict(auth_user="alice", password="secret", calls=2)
        assert sipp("register_auth", k.sip_port, run_dir=tmp_path / "legacy", **flows).returncode == 0
        before = server.log_path.read_text().count("CER from w1.")
        set_cfg(k, protocol="rfc4740", peers=f"127.0.0.1:{server.diameter_port}")
        assert sipp("register_auth", k.sip_port, run_dir=tmp_path / "rfc4740", **flows).returncode == 0
        assert server.log_path.read_text().count("CER from w1.") == before + 1
        out = k.kamcmd("cfg.set", "auth_diameter", "peers", "not a host")
        assert "error" not in out.lower(), out  # Kamailio takes any string; the plugin refuses it
        assert sipp("register_auth", k.sip_port, run_dir=tmp_path / "kept", **flows).returncode == 0
        assert "auth_diameter.peers: 'not a host' is not host[:port]" in k.log()
        set_cfg(k, protocol="legacy", peers="")
        assert sipp("register_auth", k.sip_port, run_dir=tmp_path / "back", **flows).returncode == 0
    finally:
        k.stop()
        k.assert_no_crash()
