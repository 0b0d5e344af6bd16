"""The reference server hands H(A1)s to trusted peers, over a real TCP connection: our own
transport (transport/client.py's DiameterClient: CER/CEA, then requests) against
``serve --diameter-listen --ha1-peer``, in 3GPP Cx and in RFC 4740 Flow B, from a
trusted Origin-Host and from one that is not."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest

from kamailio_auth_diameter import digest, settings
from kamailio_auth_diameter.transport.client import DiameterClient, LocalPeer
from kamailio_auth_diameter.wire import base, cx, sip_app
from kamailio_auth_diameter.wire.base import Identity
from kamailio_auth_diameter.wire.digest_avps import DigestHa1
from tests.harness import ReferenceServer, free_port
from tests.real.conftest import make_server

REALM = "example.com"
TRUSTED = Identity("w1.proxy.example.com", "proxy.example.com")
STRANGER = Identity("w1.other.example.com", "other.example.com")


def md5(user: str, password: str) -> DigestHa1:
    return DigestHa1("MD5", digest.ha1(user, REALM, password), REALM, "auth")


def sha(user: str, password: str) -> DigestHa1:
    return DigestHa1("SHA-256", digest.ha1(user, REALM, password, "SHA-256"), REALM, "auth")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    """alice and bob added with a password (MD5 and SHA-256), carol known by MD5 only (as
    after ``user import``, or a database from before SHA-256)."""
    s = make_server(tmp_path_factory.mktemp("ha1"))
    s.add_user("carol", REALM, "carolpw")
    with sqlite3.connect(s.db) as db:
        db.execute("UPDATE users SET ha1_sha256 = NULL, ha1b_sha256 = NULL WHERE username = 'carol'")
    s.diameter_port = free_port()
    s.extra = ("--origin-host", "aaa.example.com", "--origin-realm", REALM, "-v", "--ha1-peer", "*.proxy.example.com")
    s.start()
    yield s
    s.stop()


class Peer:
    """One worker's DiameterClient and its identity, speaking Cx or RFC 4740."""

    def __init__(self, server: ReferenceServer, identity: Identity, cx_app: bool) -> None:
        self.identity = identity
        local = LocalPeer(identity, (), 7, (cx.APPLICATION,)) if cx_app else LocalPeer(identity, (6,), 7)
        self.client = DiameterClient(local)
        self.client.configure(settings.parse({"protocol": "rfc4740", "peers": f"127.0.0.1:{server.diameter_port}"}))
        self.sessions = base.SessionIds(identity.origin_host)

    def close(self) -> None:
        self.client.close(time.monotonic() + 1)


def ask_cx(
    c: Peer, impi: str, impu: str, scheme: str = cx.SCHEME_SIP_DIGEST
) -> tuple[base.AnswerInfo, cx.MultimediaAuthAnswer]:
    mar = cx.MultimediaAuthRequest(
        session_id=c.sessions(),
        origin_host=c.identity.origin_host,
        origin_realm=c.identity.origin_realm,
        destination_realm=REALM,
        user_name=impi,
        public_identity=impu,
        server_name="sip:proxy.example.com",
        scheme=scheme,
    )
    frame = c.client.request(lambda hop, e2e, t: cx.encode_mar(mar, hop, e2e, t), time.monotonic(), 2.0)
    return cx.decode_maa(frame)


def ask_flow_b(c: Peer, user: str | None, aor: str) -> sip_app.MultimediaAuthAnswer:
    mar = sip_app.MultimediaAuthRequest(
        session_id=c.sessions(),
        origin_host=c.identity.origin_host,
        origin_realm=c.identity.origin_realm,
        destination_realm=REALM,
        sip_aor=aor,
        sip_method="REGISTER",
        user_name=user,
    )
    frame = c.client.request(lambda hop, e2e, t: sip_app.encode_mar(mar, hop, e2e, t), time.monotonic(), 2.0)
    return sip_app.decode_maa(frame)[1]


def test_cx_mar_from_a_trusted_peer(server: ReferenceServer) -> None:
    c = Peer(server, TRUSTED, cx_app=True)
    try:
        info, maa = ask_cx(c, "alice", "sip:alice@example.com")
        assert info.origin_host == "aaa.example.com"
        assert maa == cx.MultimediaAuthAnswer(2001, ha1s=(md5("alice", "secret"), sha("alice", "secret")))
        _, maa = ask_cx(c, "alice@example.com", "sip:alice@example.com", cx.SCHEME_UNKNOWN)
        assert maa.ha1s == (md5("alice@example.com", "secret"), sha("alice@example.com", "secret"))
        assert ask_cx(c, "carol", "sip:carol@example.com")[1].ha1s == (md5("carol", "carolpw"),)
        refusals = [
            ask_cx(c, "mallory", "sip:mallory@example.com")[1],
            ask_cx(c, "bob", "sip:alice@example.com")[1],
            ask_cx(c, "alice", "sip:alice@example.com", "Digest-AKAv1-MD5")[1],
        ]
        assert [(m.result_code, m.experimental_result, m.ha1s) for m in refusals] == [
            (None, cx.USER_UNKNOWN, ()),
            (None, cx.IDENTITIES_DONT_MATCH, ()),
            (None, cx.AUTH_SCHEME_NOT_SUPPORTED, ()),
        ]
        protocol = c.client.links[0].protocol
        peer = protocol.peer if protocol is not None else None
        assert peer is not None and cx.APPLICATION in peer.vendor_applications and 6 in peer.applications
    finally:
        c.close()


def test_cx_mar_from_a_peer_not_trusted(server: ReferenceServer) -> None:
    c = Peer(server, STRANGER, cx_app=True)
    try:
        _, maa = ask_cx(c, "alice", "sip:alice@example.com")
        assert (maa.result_code, maa.experimental_result, maa.ha1s) == (5012, None, ())
        assert "--ha1-peer" in (maa.error_message or "")
    finally:
        c.close()


def test_rfc4740_flow_b_only_for_a_trusted_peer(server: ReferenceServer) -> None:
    trusted, stranger = Peer(server, TRUSTED, cx_app=False), Peer(server, STRANGER, cx_app=False)
    try:
        maa = ask_flow_b(trusted, "alice", "sip:alice@example.com")
        assert maa.result_code == 2008 and maa.ha1s == (sha("alice", "secret"), md5("alice", "secret"))
        assert maa.challenge is not None and maa.challenge.algorithm == "SHA-256"
        assert ask_flow_b(trusted, "carol", "sip:carol@example.com").ha1s == (md5("carol", "carolpw"),)
        assert ask_flow_b(trusted, "mallory", "sip:mallory@example.com").result_code == 5032
        flow_a = ask_flow_b(stranger, "alice", "sip:alice@example.com")
        assert flow_a.result_code == 2008 and flow_a.challenge is not None and flow_a.ha1s == ()
    finally:
        trusted.close()
        stranger.close()


def test_no_ha1_in_the_log_and_nothing_counted(server: ReferenceServer) -> None:
    """The server logs every request (-v) and never an H(A1); a fetch writes nothing."""
    c = Peer(server, TRUSTED, cx_app=True)
    try:
        assert ask_cx(c, "alice", "sip:alice@example.com")[1].ha1s
    finally:
        c.close()
    text = server.log_path.read_text(errors="replace")
    assert "command 303 from w1.proxy.example.com -> 2001" in text
    assert "HA1 is given to peers *.proxy.example.com" in text
    for secret in (md5("alice", "secret").ha1, sha("alice", "secret").ha1, md5("carol", "carolpw").ha1):
        assert secret not in text
    with sqlite3.connect(server.db) as db:
        assert db.execute("SELECT COUNT(*) FROM nonce_counts").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM auth_failures").fetchone() == (0,)
