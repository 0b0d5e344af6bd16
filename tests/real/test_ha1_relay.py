"""H(A1) delegation through a real Diameter relay: our DiameterClient -> freeDiameterd
(Debian's 1.2.1, relaying realm example.com) -> the reference server, in 3GPP Cx and in
RFC 4740 Flow B.

What this shows of freeDiameter: it relays Cx (application 16777216 of vendor 10415)
with only the extensions the other relay tests load (dict_sip, acl_wl,
rt_load_balance): no 3GPP dictionary (dict_dcca_3gpp) is needed. It routes a request
by Destination-Realm to a server whose CEA names the application, and the server's
CEA names Cx as Vendor-Specific-Application-Id; it forwards the AVPs it has no
dictionary entry for (3GPP's 601-663) untouched.

The server trusts the relay (``--ha1-peer relay.example.com``): the relay is the peer
of the connection, whatever Origin-Host the requests it forwards claim, and it admits
only the proxy's workers (``*.proxy.example.com``). A second server that does not
trust it answers the same requests with Flow A and 5012.

freeDiameterd listens on every address whatever it is told, so these tests run in a
network namespace of their own (tests/netns.py), like tests/real/test_freediameter.py.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest

from kamailio_auth_diameter import digest, settings
from kamailio_auth_diameter.transport.client import DiameterClient, LocalPeer
from kamailio_auth_diameter.wire import base, cx, sip_app
from kamailio_auth_diameter.wire.base import Identity
from tests import netns
from tests.freediameter import FreeDiameter
from tests.harness import ROOT, ReferenceServer, example_kamailio, free_port
from tests.real.conftest import make_server, run

REALM = "example.com"
WORKER = Identity("w1.proxy.example.com", "proxy.example.com")


@pytest.mark.skipif(netns.inside(), reason="this is the wrapper; the tests below run in the namespace")
def test_ha1_relay_tests_pass_in_a_network_namespace_of_their_own():
    r = netns.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed", r.stdout), r.stdout[-2000:]


if netns.inside():

    def _server(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str) -> ReferenceServer:
        s = make_server(tmp_path_factory.mktemp(name))
        s.diameter_port = free_port()
        s.extra = ("--origin-host", f"{name}.example.com", "--origin-realm", REALM, "-v", *extra)
        return s.start()

    @pytest.fixture(scope="module")
    def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
        s = _server(tmp_path_factory, "trusting", "--ha1-peer", "relay.example.com")
        yield s
        s.stop()

    @pytest.fixture(scope="module")
    def wary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
        s = _server(tmp_path_factory, "wary")
        yield s
        s.stop()

    def _relay(tmp_path_factory: pytest.TempPathFactory, server: ReferenceServer, name: str) -> FreeDiameter:
        assert server.diameter_port is not None
        upstream = [("127.0.0.1", server.diameter_port, f"{name}.example.com")]
        fd = FreeDiameter(upstream, tmp_path_factory.mktemp(f"fd-{name}"), clients=("*.proxy.example.com",), tls_port=0)
        return fd.start()

    @pytest.fixture(scope="module")
    def relay(tmp_path_factory: pytest.TempPathFactory, trusting: ReferenceServer) -> Iterator[FreeDiameter]:
        fd = _relay(tmp_path_factory, trusting, "trusting")
        yield fd
        fd.stop()

    @pytest.fixture(scope="module")
    def wary_relay(tmp_path_factory: pytest.TempPathFactory, wary: ReferenceServer) -> Iterator[FreeDiameter]:
        fd = _relay(tmp_path_factory, wary, "wary")
        yield fd
        fd.stop()

    class Worker:
        """A proxy worker's DiameterClient to the relay, naming Cx or RFC 4740 in its CER."""

        def __init__(self, relay: FreeDiameter, cx_app: bool, identity: Identity = WORKER) -> None:
            local = LocalPeer(identity, (), 7, (cx.APPLICATION,)) if cx_app else LocalPeer(identity, (6,), 7)
            self.identity = identity
            self.client = DiameterClient(local)
            self.client.configure(settings.parse({"protocol": "rfc4740", "peers": f"127.0.0.1:{relay.port}"}))
            self.sessions = base.SessionIds(identity.origin_host)

        def cx(self, impi: str, impu: str) -> cx.MultimediaAuthAnswer:
            me = self.identity
            mar = cx.MultimediaAuthRequest(
                self.sessions(), me.origin_host, me.origin_realm, REALM, impi, impu, "sip:proxy.example.com"
            )
            frame = self.client.request(lambda h, e, t: cx.encode_mar(mar, h, e, t), time.monotonic(), 3.0)
            return cx.decode_maa(frame)[1]

        def flow_b(self, user: str) -> sip_app.MultimediaAuthAnswer:
            me = self.identity
            mar = sip_app.MultimediaAuthRequest(
                self.sessions(), me.origin_host, me.origin_realm, REALM, f"sip:{user}@{REALM}", "REGISTER", user
            )
            frame = self.client.request(lambda h, e, t: sip_app.encode_mar(mar, h, e, t), time.monotonic(), 3.0)
            return sip_app.decode_maa(frame)[1]

        def close(self) -> None:
            self.client.close(time.monotonic() + 1)

    def test_cx_through_the_relay(relay: FreeDiameter) -> None:
        w = Worker(relay, cx_app=True)
        try:
            maa = w.cx("alice", "sip:alice@example.com")
            assert maa.result_code == 2001
            assert [(h.algorithm, h.ha1) for h in maa.ha1s] == [
                ("MD5", digest.ha1("alice", REALM, "secret")),
                ("SHA-256", digest.ha1("alice", REALM, "secret", "SHA-256")),
            ]
            assert w.cx("mallory", "sip:mallory@example.com").experimental_result == cx.USER_UNKNOWN
            assert w.cx("bob", "sip:alice@example.com").experimental_result == cx.IDENTITIES_DONT_MATCH
            protocol = w.client.links[0].protocol
            assert protocol is not None and protocol.peer is not None
            assert base.APP_RELAY in protocol.peer.applications  # the relay's CEA: we opened on "relay"
        finally:
            w.close()

    def test_flow_b_through_the_relay(relay: FreeDiameter) -> None:
        # not WORKER: the test before parted from the relay under that Origin-Host a moment
        # ago, and freeDiameterd closed a new connection under it while still closing the old
        # one (seen once in a full run)
        w = Worker(relay, cx_app=False, identity=Identity("w7.proxy.example.com", WORKER.origin_realm))
        try:
            maa = w.flow_b("alice")
            assert maa.result_code == 2008
            assert [h.algorithm for h in maa.ha1s] == ["SHA-256", "MD5"]
        finally:
            w.close()

    def test_a_server_that_does_not_trust_the_relay(wary_relay: FreeDiameter) -> None:
        w = Worker(wary_relay, cx_app=True)
        w4740 = Worker(wary_relay, cx_app=False, identity=Identity("w2.proxy.example.com", WORKER.origin_realm))
        try:
            maa = w.cx("alice", "sip:alice@example.com")
            assert (maa.result_code, maa.ha1s) == (5012, ())
            flow_a = w4740.flow_b("alice")
            assert flow_a.result_code == 2008 and flow_a.challenge is not None and flow_a.ha1s == ()
        finally:
            w.close()
            w4740.close()

    @pytest.mark.parametrize("mode", ["rfc4740-ha1", "cx"])
    def test_kamailio_verifies_through_the_relay(
        relay: FreeDiameter, trusting: ReferenceServer, mode: str, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """The whole path: sipp -> Kamailio (the example cfg, verifying) -> freeDiameterd ->
        the server. A cached user's next REGISTERs pass without a message to the relay."""
        secret = tmp_path_factory.mktemp("secret") / "nonce.key"
        secret.write_text("s" * 48)
        secret.chmod(0o600)
        k = example_kamailio(
            tmp_path_factory.mktemp(f"kamailio-{mode}"),
            trusting.port,
            children=2,
            DIAMETER_PROTOCOL=f'"{mode}"',
            DIAMETER_PEERS=f'"127.0.0.1:{relay.port}"',
            ORIGIN_HOST='"proxy.example.com"',
            ORIGIN_REALM='"proxy.example.com"',
            DESTINATION_REALM=f'"{REALM}"',
            NONCE_SECRET_FILE=f'"{secret}"',
        )
        k.start()
        try:
            run(k, tmp_path_factory.mktemp(f"sipp-{mode}"), "register_auth", auth_user="alice", password="secret")
            before = len(re.findall(r"command (?:286|303) from", trusting.log_path.read_text(errors="replace")))
            run(
                k,
                tmp_path_factory.mktemp(f"sipp2-{mode}"),
                "register_auth",
                auth_user="alice",
                password="secret",
                calls=3,
            )
            after = len(re.findall(r"command (?:286|303) from", trusting.log_path.read_text(errors="replace")))
            assert after == before
        finally:
            k.stop()
            k.assert_no_crash()
