"""Kamailio's workers keep being served while a local attacker holds every connection it can.

Real Kamailio (kamailio.cfg.example, legacy mode) against the reference server, sipp
registering under load, and tests/attacker.py on the same 127.0.0.1 keeping idle
connections, half-sent 64 KB messages and clients that never read their answers, more
of them than the server will hold. The attacker starts first, so the workers' first
connections come in when the server is already full: they get in by evicting the
attacker's silent connections. Once with explicit caps, once with the server under a
file descriptor limit of 64 (the caps then derive from it).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.harness import PYTHON, ROOT, ReferenceServer, example_kamailio, free_port, running, sipp
from tests.real.conftest import make_server

pytestmark = pytest.mark.kamailio

CALLS, RATE = 150, 50  # REGISTER 401 -> REGISTER 200: two requests to the server per call


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def _under_attack(tmp_path: Path, server: ReferenceServer, attack: tuple[str, ...]) -> Counter:
    attacker = subprocess.Popen(
        [PYTHON, "-m", "tests.attacker", "--port", str(server.port), "--seconds", "30", *attack],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # the server is full before Kamailio starts
        assert server.proc is not None
        rss_before = _rss_kb(server.proc.pid)
        kamailio = example_kamailio(tmp_path / "kamailio", server.port, children=2)
        with running(kamailio):
            r = sipp("register_auth", kamailio.sip_port, run_dir=tmp_path / "sipp", auth_user="alice",
                     password="secret", calls=CALLS, rate=RATE, timeout=60)  # fmt: skip
            assert r.returncode == 0, r.output
            rss_after = _rss_kb(server.proc.pid)
            assert kamailio.alive()
        kamailio.assert_no_crash()
    finally:
        attacker.terminate()  # it stops and prints its counters
        out, _ = attacker.communicate(timeout=10)
    return Counter({"rss_before": rss_before, "rss_after": rss_after, **json.loads(out)})


def _check(server: ReferenceServer, result: Counter, *reasons: str) -> None:
    """The attacker's connections were closed (evicted, or timed out) and reopened over and
    over; the server's memory did not grow with what it was sent."""
    print(result)
    assert result["idle_opened"] > 0 and result["partial_closed"] > 0 and result["never_reading_closed"] > 0
    assert result["requests_written"] > 20_000  # 3 MB of answers, had they all been made
    assert result["rss_after"] - result["rss_before"] < 5_000, result
    log = server.log_path.read_text()
    for why in ("our answers not read for 1 s (--message-timeout)", *reasons):
        assert why in log
    assert "Traceback" not in log


def test_workers_are_served_while_an_attacker_holds_connections(tmp_path: Path) -> None:
    """Fewer attacker connections than the cap: the workers get in beside them, the
    half-sent messages and the client that never reads are closed by the message timeout."""
    server = make_server(tmp_path)
    server.extra = ("--max-connections", "40", "--max-connections-per-address", "40", "--message-timeout", "1")
    with running(server):
        result = _under_attack(tmp_path, server, ("--idle", "20", "--partial", "10", "--never-reading", "2"))
    _check(server, result, "a message begun is not complete after 1 s (--message-timeout)")
    assert result["idle_closed"] == 0  # nobody needed their room


def test_workers_are_served_while_an_attacker_holds_the_rest_under_a_file_descriptor_limit_of_64(
    tmp_path: Path,
) -> None:
    """More attacker connections than the server holds (32: the default caps leave room for
    the listener and the database out of 64 descriptors): the workers' connections get in,
    and stay, by evicting the attacker's silent ones, which evict each other in turn."""
    server = make_server(tmp_path)
    server.prefix = ("prlimit", "--nofile=64:64", "--")
    server.extra = ("--message-timeout", "1")
    with running(server):
        result = _under_attack(tmp_path, server, ("--idle", "80", "--partial", "10", "--never-reading", "1"))
    _check(server, result, "(--max-connections-per-address), to make room")
    assert result["idle_closed"] > 1000
    assert "at most 32 connections, 32 per address (file descriptor limit 64)" in server.log_path.read_text()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.prefix = ("prlimit", "--nofile=64:4096", "--")
    with running(server):
        pass
    assert "at most 4064 connections, 256 per address (file descriptor limit 4096)" in server.log_path.read_text()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (("--max-connections", "100"), "error: --max-connections 100 needs 132 file descriptors, but the limit is 64"),
        (("--max-connections", "20", "--max-connections-per-address", "21"),
         "error: --max-connections-per-address 21 is more than --max-connections 20"),
        (("--max-connections-per-address", "33"),
         "error: --max-connections-per-address 33 is more than --max-connections 32"),
        (("--max-connections", "0"), "argument --max-connections: '0' is not a whole number of at least 1"),
        (("--idle-timeout", "-1"), "argument --idle-timeout: '-1' is not a number of seconds from 0 to 604800"),
        (("--message-timeout", "0"), "argument --message-timeout: '0' is outside 0.1..300 seconds"),
    ],
)  # fmt: skip
def test_limits_the_descriptors_cannot_back_or_out_of_range_are_refused(
    tmp_path: Path, options: tuple[str, ...], error: str
) -> None:
    r = subprocess.run(
        ["prlimit", "--nofile=64:64", "--", PYTHON, "-m", "kamailio_auth_diameter.server", "serve",
         "--db", str(tmp_path / "u.db"), "--legacy-listen", f"127.0.0.1:{free_port()}", *options],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode in (1, 2) and error in r.stderr, r.stderr
