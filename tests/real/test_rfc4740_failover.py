"""RFC 4740 mode with two servers: load sharing, a server killed under load, a server restarted;
and one peer that was late once.

Both reference servers share one user database (and so one nonce secret): a
challenge made by one is checked by the other, as with a shared PostgreSQL.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from diameter.message import Message

from tests.fake_peer import SILENT, FakePeer, answer_mar
from tests.harness import Kamailio, ReferenceServer, SipClient, example_kamailio, free_port, large_sip_messages
from tests.real.conftest import GROUPS, USERS, mar_count, run
from tests.real.test_faults import set_cfg
from tests.real.test_rfc4740 import rfc4740_defines

pytestmark = pytest.mark.kamailio


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ReferenceServer, ReferenceServer]]:
    db = tmp_path / "users.db"
    servers = []
    for name in ("a", "b"):
        s = ReferenceServer(db=db, log_path=tmp_path / f"server-{name}.log", diameter_port=free_port())
        s.extra = ("--origin-host", f"aaa-{name}.example.com", "--origin-realm", "example.com", "-v")
        servers.append(s)
    for user in USERS:
        servers[0].add_user(*user)
    for member in GROUPS:
        servers[0].add_group(*member)
    for s in servers:
        s.start()
    yield servers[0], servers[1]
    for s in servers:
        s.stop()


@pytest.fixture
def kamailio(tmp_path: Path, pair: tuple[ReferenceServer, ReferenceServer]) -> Iterator[Kamailio]:
    a, b = pair
    assert a.diameter_port and b.diameter_port
    defines = {**rfc4740_defines(a.diameter_port, b.diameter_port), **large_sip_messages()}
    k = example_kamailio(tmp_path / "kamailio", a.port, children=4, **defines)
    k.start()
    yield k
    k.stop()
    k.assert_no_crash()


def test_requests_are_shared_between_the_servers(kamailio, pair, tmp_path):
    run(kamailio, tmp_path / "sipp", "register_auth", auth_user="alice", password="secret", calls=100, rate=200)
    a, b = (mar_count(s) for s in pair)
    assert a + b >= 200 and min(a, b) >= 60, (a, b)  # and the readiness probe's OPTIONS


def test_a_server_killed_under_load_loses_nothing(kamailio, pair, tmp_path):
    a, b = pair
    killer = threading.Timer(1.0, lambda: a.stop(signal.SIGKILL))
    killer.start()
    try:
        load = {"calls": 600, "rate": 200, "extra": ("-recv_timeout", "2000")}
        run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret", **load)
    finally:
        killer.join()
    assert "Diameter exchange failed" not in kamailio.log()
    assert mar_count(b) > 600


def test_a_restarted_server_takes_its_share_again(kamailio, pair, tmp_path):
    a = pair[0]
    a.stop()
    run(kamailio, tmp_path / "s1", "register_auth", auth_user="alice", password="secret", calls=50, rate=200)
    before = mar_count(a)
    a.start()
    # past the back-off of a peer that refused connections once or twice (1 s, then 2 s)
    time.sleep(2.2)
    run(kamailio, tmp_path / "s2", "register_auth", auth_user="alice", password="secret", calls=100, rate=200)
    assert mar_count(a) - before >= 60
    assert "Diameter exchange failed" not in kamailio.log()


def test_a_request_too_large_for_a_frame_is_400_and_blames_no_server(kamailio, pair, tmp_path):
    """A 22 KB user name (in To and in the credentials) makes a MAR over the 64 KiB frame limit.
    It was sent, each server closed the connection, both were backed off and every request on
    that worker got 500; now it is never sent and nothing else changes."""
    user = "u" * 22_000
    credentials = (
        f'Authorization: Digest username="{user}", realm="example.com", nonce="n", uri="sip:example.com", '
        'response="00000000000000000000000000000000"'
    )
    before = [mar_count(s) for s in pair]
    aor = f"sip:{user}@example.com"
    reply = SipClient(kamailio.sip_port).request("REGISTER", "sip:example.com", to_uri=aor, headers=(credentials,))
    assert reply.code == 400
    time.sleep(0.1)
    assert [mar_count(s) for s in pair] == before
    run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret", calls=20, rate=200)
    assert "Diameter exchange failed" not in kamailio.log()
    assert "more than the 65536 a frame may" in kamailio.log()


def test_one_late_answer_does_not_fail_the_requests_after_it(tmp_path):
    """The worker's only peer stalls one MAA past answer_timeout: that request gets 500 at its
    deadline, and the next ones are sent to it again (they got 500 at once, without being sent,
    for reconnect_interval)."""
    late = [False]  # armed after start-up: the readiness probe's OPTIONS asks too

    def stall_once(msg: Message) -> bytes:
        if late[0]:
            late[0] = False
            return SILENT
        return answer_mar(msg, peer.identity, 2001)

    peer = FakePeer(behaviour=stall_once)
    k = example_kamailio(tmp_path / "kamailio", 3000, children=1, **rfc4740_defines(peer.port))
    try:
        k.start()
        set_cfg(k, answer_timeout=500, reconnect_interval=3000)
        late[0] = True
        asked = len(peer.requests())
        start = time.monotonic()
        assert SipClient(k.sip_port).request("REGISTER", "sip:example.com").code == 500
        assert 0.45 < time.monotonic() - start < 0.8
        assert [SipClient(k.sip_port).request("REGISTER", "sip:example.com").code for _ in range(3)] == [200] * 3
        assert len(peer.requests()) - asked == 4
    finally:
        k.stop()
        peer.stop()
    k.assert_no_crash()
