"""Idle workers and the server's watchdog: an idle period longer than twice Tw costs no request anything.

Kamailio 5.6 runs no Python while a worker waits for SIP, so the server's DWR goes
unanswered and, after twice Tw, the server closes the connection. The next request
must find that out before it is sent, reconnect (CER/CEA) and be answered well within
its deadline.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.harness import ReferenceServer, example_kamailio, free_port, sipp
from tests.real.conftest import make_server
from tests.real.test_rfc4740 import ORIGIN, rfc4740_defines

pytestmark = pytest.mark.kamailio

TW = 6  # seconds, the least RFC 3539 allows


def test_idle_longer_than_twice_tw_loses_nothing(tmp_path):
    (tmp_path / "server").mkdir()
    server: ReferenceServer = make_server(tmp_path / "server")
    server.diameter_port = free_port()
    server.extra = ("--origin-realm", "example.com", "--watchdog-interval", str(TW), "-v")
    server.start()
    try:
        assert server.diameter_port is not None
        k = example_kamailio(tmp_path / "kamailio", server.port, children=2, **rfc4740_defines(server.diameter_port))
        k.start()
        try:
            flows = dict(auth_user="alice", password="secret", calls=20, rate=100, extra=("-recv_timeout", "1000"))
            r = sipp("register_auth", k.sip_port, run_dir=tmp_path / "before", **flows)
            assert r.returncode == 0, r.output
            time.sleep(2 * TW + 1)
            log = server.log_path.read_text()
            closed = re.findall(rf"closing Diameter connection of (w\d\.{re.escape(ORIGIN)}).*silent", log)
            assert closed, log[-3000:]  # the server gave up on the idle workers
            r = sipp("register_auth", k.sip_port, run_dir=tmp_path / "after", **flows)
            assert r.returncode == 0, r.output  # every reply within 1 s (deadline 2 s)
            log = server.log_path.read_text()
            for worker in set(closed):
                assert len(re.findall(rf"CER from {re.escape(worker)} ", log)) >= 2  # it came back
            assert "Diameter exchange failed" not in k.log()
        finally:
            k.stop()
            k.assert_no_crash()
    finally:
        server.stop()
