"""The plugin's counters in a real Kamailio: kamailio.cfg.example with -A WITH_METRICS, the
reference server and sipp; read back with ``kamcmd stats.get_statistics script:`` and
scraped from ``/metrics`` (xhttp_prom)."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import metrics
from tests.harness import EXAMPLE_CFG, Kamailio, ReferenceServer, SipClient, example_kamailio, free_port
from tests.real.conftest import make_server, run

pytestmark = pytest.mark.kamailio

OUTCOMES = [name for name in metrics.COUNTERS if name.startswith(("dia_auth_", "dia_group_"))]


def metered(run_dir: Path, server: ReferenceServer, children: int = 2, cfg: Path = EXAMPLE_CFG) -> Kamailio:
    k = example_kamailio(run_dir, server.port, children=children, WITH_METRICS="1", METRICS_PORT=str(free_port()))
    k.cfg = cfg
    return k


def metrics_port(k: Kamailio) -> int:
    return int(k.defines["METRICS_PORT"])


def kamcmd_stats(k: Kamailio) -> dict[str, int]:
    out = k.kamcmd("stats.get_statistics", "script:")
    return {m[1]: int(m[2]) for m in re.finditer(r"^script:(\w+) = (-?\d+)$", out, re.MULTILINE)}


def scrape(k: Kamailio, path: str = "/metrics", port: int | None = None) -> str:
    url = f"http://127.0.0.1:{port or metrics_port(k)}{path}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        return reply.read().decode()


def scraped(k: Kamailio) -> dict[str, int]:
    text = scrape(k)
    return {m[1]: int(m[2]) for m in re.finditer(r"^kamailio_script_(\w+) (\d+)", text, re.MULTILINE)}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("server")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, server: ReferenceServer) -> Iterator[Kamailio]:
    k = metered(tmp_path_factory.mktemp("kamailio"), server).start()
    yield k
    k.stop()
    k.assert_no_crash()


def test_every_counter_is_declared_and_starts_at_zero(tmp_path: Path, server: ReferenceServer) -> None:
    k = metered(tmp_path, server).start(wait=False)
    try:
        time.sleep(1.0)  # before any SIP request: the readiness OPTIONS would be counted
        first = kamcmd_stats(k)
        k.wait_ready()
    finally:
        k.stop()
    assert first == {name: 0 for name in metrics.COUNTERS}


def test_flows_are_counted_and_both_views_agree(kamailio: Kamailio, tmp_path: Path) -> None:
    before = kamcmd_stats(kamailio)
    run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret", calls=3)
    run(kamailio, tmp_path, "register_rechallenge", auth_user="alice", password="wrong")
    run(kamailio, tmp_path, "register_forbidden", user="mallory", auth_user="mallory", password="x")
    run(kamailio, tmp_path, "register_malformed")
    run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="voicemail")
    run(kamailio, tmp_path, "invite_auth_403", user="bob", auth_user="bob", password="bobpw", service="voicemail")
    after = kamcmd_stats(kamailio)
    changed = delta(after, before)
    # 3 REGISTER flows (401, 200), a wrong password (401, 401), an unknown user (401, 403),
    # a malformed header (400), two INVITE flows (407, then 200 or 403 after the group check)
    assert {name: n for name, n in changed.items() if name in OUTCOMES} == {
        "dia_auth_challenged": 7,
        "dia_auth_authorized": 5,
        "dia_auth_refused": 2,
        "dia_auth_bad_request": 1,
        "dia_group_member": 1,
        "dia_group_not_member": 1,
    }
    exchanges = 3 * 2 + 2 + 2 + 3 + 3
    assert changed[metrics.RTT_COUNT] == exchanges
    assert changed["dia_rtt_le_1_000"] == exchanges  # loopback: every answer well within a second
    buckets = [changed.get(name, 0) for _, name in metrics.RTT_BOUNDS]
    assert buckets == sorted(buckets) and buckets[0] > 0
    assert 0 < changed[metrics.RTT_SUM] < exchanges * 1_000_000
    for failure in ("dia_exchange_failures", "dia_timeouts", "dia_connect_failures", "dia_failovers"):
        assert failure not in changed
    assert scraped(kamailio) == after  # nothing happened in between: the same numbers over HTTP


def test_metrics_is_prometheus_text_and_only_on_its_port(kamailio: Kamailio) -> None:
    text = scrape(kamailio)
    for name in metrics.COUNTERS:
        assert re.search(rf"^kamailio_script_{name} \d+( \d+)?$", text, re.MULTILINE), name
    for path, port in (("/other", None), ("/metrics", kamailio.sip_port)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(kamailio, path, port)
        assert refused.value.code == 404
    assert SipClient(kamailio.sip_port).options().code == 407  # SIP as before


def test_a_stopped_server_moves_the_timeout_and_connect_failure_counters(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    k = metered(tmp_path / "kamailio", server, children=1)
    server.start()
    try:
        k.start()
        sip = SipClient(k.sip_port)

        def register() -> int:
            return sip.request("REGISTER", "sip:example.com").code

        assert register() == 401
        before = kamcmd_stats(k)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # connected, but silent
        try:
            assert register() == 500  # after answer_timeout
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
        assert register() == 500  # connect refused
        assert register() == 500  # at once: marked down for reconnect_interval
        silent_and_down = delta(kamcmd_stats(k), before)
        server.start()
        time.sleep(1.1)  # reconnect_interval
        assert register() == 401
        after = kamcmd_stats(k)
        assert scraped(k) == after
    finally:
        k.stop()
        server.stop()
    k.assert_no_crash()
    assert silent_and_down == {
        "dia_timeouts": 1,
        "dia_connect_failures": 1,
        "dia_peer_down": 1,
        "dia_exchange_failures": 3,
        "dia_auth_error": 3,
    }
    back = delta(after, before)
    assert back["dia_reconnects"] == 1 and back["dia_connects"] == 1 and back["dia_peer_up"] == 1
    assert back["dia_auth_challenged"] == 1 and back[metrics.RTT_COUNT] == 1


def _without(text: str, lines: list[str]) -> str:
    for line in lines:
        assert line + "\n" in text, line
        text = text.replace(line + "\n", "")
    return text


def test_a_cfg_missing_declarations_still_authenticates_and_says_so_once(tmp_path: Path) -> None:
    missing = ["dia_auth_challenged", metrics.RTT_SUM]
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(
        _without(EXAMPLE_CFG.read_text(), [f'modparam("statistics", "variable", "{name}")' for name in missing])
    )
    server = make_server(tmp_path)
    k = metered(tmp_path / "kamailio", server, children=1, cfg=cfg)
    server.start()
    try:
        k.start()
        run(k, tmp_path, "register_auth", auth_user="alice", password="secret", calls=3)
        counted = kamcmd_stats(k)
        over_http = scraped(k)
    finally:
        k.stop()
        server.stop()
    k.assert_no_crash()
    assert counted["dia_auth_authorized"] == 3 and counted == over_http
    assert not set(missing) & set(counted)
    log = k.log()
    for name in missing:
        assert log.count(f"statistics: counter {name} is not updated by this worker: not declared") == 1
        assert log.count(f"variable <{name}> not defined") == 1  # Kamailio's own error, once too


def test_a_cfg_without_the_statistics_module_still_authenticates_and_says_so_once(tmp_path: Path) -> None:
    text = EXAMPLE_CFG.read_text()
    lines = ['loadmodule "statistics.so"', *re.findall(r'^modparam\("statistics".*$', text, re.MULTILINE)]
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text(_without(text, lines))
    server = make_server(tmp_path)
    k = example_kamailio(tmp_path / "kamailio", server.port, children=1)
    k.cfg = cfg
    server.start()
    try:
        k.start()
        run(k, tmp_path, "register_auth", auth_user="alice", password="secret", calls=3)
    finally:
        k.stop()
        server.stop()
    k.assert_no_crash()
    assert k.log().count('statistics: nothing is counted: loadmodule "statistics.so" is missing') == 1
