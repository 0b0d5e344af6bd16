"""Every request ends by its deadline, whatever the network does, in a real Kamailio.

The attack: with ``answer_timeout = 1000`` a host name resolving to two addresses that
drop SYNs held a REGISTER for 2 s (each connect got the whole timeout), and a name
server that never answers held it for as long as the system resolver waits (10 s
with glibc's defaults). Both need names and silent addresses of our own, so these
tests run in a network and mount namespace of their own (tests/netns.py,
``run_with_names``): one test re-runs this file there and reports its result.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator

import pytest

from tests import netns
from tests.harness import ROOT, Kamailio, SipClient, example_kamailio
from tests.real.test_faults import set_cfg

pytestmark = pytest.mark.kamailio

TWO_BLACK_HOLES = "two-black-holes.test"  # two addresses where every packet is dropped
NO_ANSWER = "no-answer.test"  # in no hosts file: the name server is asked and never answers
HOSTS = {TWO_BLACK_HOLES: ("198.51.100.1", "198.51.100.2")}
DEADLINE = 1.0  # answer_timeout
SLACK = 0.25  # Kamailio's own work, the SIP round trip, a loaded 2-core machine


@pytest.mark.skipif(netns.inside(), reason="this is the wrapper; the tests below run in the namespace")
def test_deadlines_hold_in_a_namespace_with_black_holes_and_a_dead_name_server():
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-s", __file__]
    r = netns.run_with_names(cmd, cwd=ROOT, timeout=300, hosts=HOSTS)
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert re.search(r"\b[1-9]\d* passed", r.stdout), r.stdout[-2000:]


if netns.inside():

    @pytest.fixture(scope="module")
    def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
        k = example_kamailio(tmp_path_factory.mktemp("kamailio-deadlines"), 3868, children=1)
        k.start()
        yield k
        k.stop()
        k.assert_no_crash()

    @pytest.mark.parametrize("protocol", ["legacy", "rfc4740"])
    @pytest.mark.parametrize("host", [TWO_BLACK_HOLES, NO_ANSWER])
    def test_a_request_ends_by_its_deadline_whatever_the_network_does(kamailio, protocol, host):
        # connect_timeout as long as the deadline: each connect got all of it before;
        # no fail-fast, so that the request really tries
        values = {"protocol": protocol, "diameter_client_host": host, "answer_timeout": int(DEADLINE * 1000)}
        set_cfg(kamailio, **values, connect_timeout=1000, reconnect_interval=0)
        start = time.monotonic()
        reply = SipClient(kamailio.sip_port).request("REGISTER", "sip:example.com", timeout=15)
        took = time.monotonic() - start
        print(f"\n{protocol} {host}: REGISTER -> {reply.code} in {took * 1000:.0f} ms")
        assert reply.code == 500
        assert DEADLINE - 0.05 < took < DEADLINE + SLACK
        assert kamailio.alive()
