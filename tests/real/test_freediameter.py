"""Scale-out through a real Diameter relay: Kamailio (rfc4740) -> freeDiameterd -> two reference servers on PostgreSQL.

freeDiameterd relays realm example.com with its load-balancing extension
(rt_load_balance: each request to the server with the fewest pending). The two
servers share users, groups and the nonce secret through one PostgreSQL.

Because freeDiameterd 1.2.1 listens on every address whatever it is told, these
tests run in a network namespace of their own (tests/netns.py): in the normal run
one test re-runs this file there and reports its result.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests import netns
from tests.freediameter import FreeDiameter
from tests.harness import ROOT, Kamailio, Postgres, ReferenceServer, example_kamailio, free_port
from tests.real.conftest import GROUPS, USERS, mar_count, run
from tests.real.test_rfc4740 import rfc4740_defines

pytestmark = pytest.mark.kamailio

# no SIP retransmissions (-nr): a lost Diameter answer must show as a failed call, not be
# covered up by a retransmitted REGISTER that another worker answers
LOAD = {"auth_user": "alice", "password": "secret", "extra": ("-recv_timeout", "2000", "-nr")}


@pytest.mark.skipif(netns.inside(), reason="this is the wrapper; the tests below run in the namespace")
def test_relay_tests_pass_in_a_network_namespace_of_their_own():
    r = netns.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed", r.stdout), r.stdout[-2000:]


if netns.inside():

    @pytest.fixture(scope="module")
    def servers(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[list[ReferenceServer]]:
        run_dir = tmp_path_factory.mktemp("servers")
        made = []
        for name in ("aaa1", "aaa2"):
            s = ReferenceServer(db=postgres.url, log_path=run_dir / f"{name}.log", diameter_port=free_port())
            s.extra = ("--origin-host", f"{name}.example.com", "--origin-realm", "example.com", "-v")
            made.append(s)
        for user in USERS:
            made[0].add_user(*user)
        for member in GROUPS:
            made[0].add_group(*member)
        for s in made:
            s.start()
        yield made
        for s in made:
            s.stop()

    @pytest.fixture(scope="module")
    def relay(tmp_path_factory: pytest.TempPathFactory, servers: list[ReferenceServer]) -> Iterator[FreeDiameter]:
        upstream = [("127.0.0.1", s.diameter_port, f"aaa{i}.example.com") for i, s in enumerate(servers, 1)]
        fd = FreeDiameter(upstream, tmp_path_factory.mktemp("freediameter"), tls_port=0)
        fd.start()
        yield fd
        fd.stop()

    @pytest.fixture(scope="module")
    def kamailio(
        tmp_path_factory: pytest.TempPathFactory, servers: list[ReferenceServer], relay: FreeDiameter
    ) -> Iterator[Kamailio]:
        # The workers' realm is not the servers': a relay load-balances a realm's requests over
        # every peer of that realm that advertises application 6, and our workers do.
        defines = rfc4740_defines(relay.port, ORIGIN_REALM='"kamailio.example.com"', DESTINATION_REALM='"example.com"')
        k = example_kamailio(tmp_path_factory.mktemp("kamailio"), servers[0].port, **defines)
        k.start()
        yield k
        k.stop()
        k.assert_no_crash()

    def test_flows_through_the_relay(kamailio, tmp_path):
        run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret", calls=3)
        run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="carol")
        run(kamailio, tmp_path, "register_forbidden", user="alice", auth_user="alice", password="wrong")
        run(kamailio, tmp_path, "register_forbidden", user="mallory", auth_user="mallory", password="x")
        run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="voicemail")
        run(kamailio, tmp_path, "invite_auth_403", user="bob", auth_user="bob", password="bobpw", service="voicemail")

    def test_requests_are_shared_between_both_servers(kamailio, servers, tmp_path):
        before = [mar_count(s) for s in servers]
        run(kamailio, tmp_path, "register_auth", calls=300, rate=300, **LOAD)
        shares = [mar_count(s) - b for s, b in zip(servers, before, strict=True)]
        assert sum(shares) >= 600 and min(shares) >= 150, shares

    def test_a_kamailio_restart_is_served_at_once(kamailio, relay, tmp_path):
        """Workers come back under the same Origin-Hosts without having sent a DPR:
        freeDiameter reopens them with three DWRs, which the first request must answer."""
        kamailio.stop()
        kamailio.start()
        run(kamailio, tmp_path, "register_auth", calls=10, rate=50, **LOAD)
        assert "Diameter exchange failed" not in kamailio.log()

    def test_idle_past_twice_tw_then_traffic(kamailio, relay, tmp_path):
        """freeDiameter's DWRs to the idle workers go unanswered and after 2 Tw it holds them
        SUSPECT, delivering nothing to them. The next request of each worker answers the DWR,
        parts with DPR/DPA and reconnects before it is sent."""
        run(kamailio, tmp_path / "before", "register_auth", calls=10, rate=50, **LOAD)
        since = relay.log_offset()
        time.sleep(2 * relay.tw_timer + 1.5)
        assert re.search(r"STATE_SUSPECT'\s+'w\d\.kamailio\.example\.com", relay.log()[since:])
        run(kamailio, tmp_path / "after", "register_auth", calls=10, rate=50, **LOAD)
        assert "Diameter exchange failed" not in kamailio.log()

    def test_a_server_killed_under_load_loses_nothing(kamailio, servers, relay, tmp_path):
        victim = servers[1]
        killer = threading.Timer(1.0, lambda: victim.stop(signal.SIGKILL))
        killer.start()
        try:
            run(kamailio, tmp_path, "register_auth", calls=600, rate=200, **LOAD)
        finally:
            killer.join()
            since = relay.log_offset()
            victim.start()
            relay.wait_open("aaa2.example.com", timeout=10, since=since)
        assert "Diameter exchange failed" not in kamailio.log()

    def test_a_restarted_server_is_used_again(kamailio, servers, relay, tmp_path):
        victim = servers[0]
        victim.stop()
        run(kamailio, tmp_path / "down", "register_auth", calls=50, rate=200, **LOAD)
        since = relay.log_offset()
        victim.start()
        relay.wait_open("aaa1.example.com", timeout=10, since=since)
        before = mar_count(victim)
        run(kamailio, tmp_path / "up", "register_auth", calls=200, rate=200, **LOAD)
        assert mar_count(victim) - before >= 80

    def test_flows_over_tls_through_the_relay(servers, tmp_path):
        """RFC 6733 TLS (handshake first, then CER) against another implementation
        (freeDiameter on GnuTLS), which insists on a client certificate from its CA."""
        upstream = [("127.0.0.1", s.diameter_port, f"aaa{i}.example.com") for i, s in enumerate(servers, 1)]
        fd = FreeDiameter(upstream, tmp_path / "freediameter-tls")
        fd.start()
        try:
            assert fd.ca is not None
            cert, key = fd.client_cert("kamailio.example.com")
            defines = rfc4740_defines(
                fd.tls_port,
                ORIGIN_REALM='"kamailio.example.com"',
                DESTINATION_REALM='"example.com"',
                DIAMETER_TLS="1",
                TLS_CA_FILE=f'"{fd.ca}"',
                TLS_CERT_FILE=f'"{cert}"',
                TLS_KEY_FILE=f'"{key}"',
            )
            k = example_kamailio(tmp_path / "k", servers[0].port, **defines)
            k.start()
            try:
                run(k, tmp_path, "register_auth", calls=5, rate=50, **LOAD)
                run(k, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="voicemail")
                assert "Diameter exchange failed" not in k.log()
                assert re.search(r"Connected to 'w\d\.kamailio\.example\.com' \(TCP,TLS", fd.log())
            finally:
                k.stop()
                k.assert_no_crash()
        finally:
            fd.stop()
