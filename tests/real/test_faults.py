"""Hostile answers, dead, slow and restarted servers, and settings, against a real Kamailio.

Every case must end in its documented SIP reply within the deadline, with Kamailio
still serving afterwards and nothing in its log that says a process crashed.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from kamailio_auth_diameter.kamailio.config import REFRESH_INTERVAL
from tests.fake_diameter import FakeDiameter
from tests.harness import EXAMPLE_CFG, Kamailio, SipClient, example_kamailio, running, sipp
from tests.real.conftest import make_server

pytestmark = pytest.mark.kamailio


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiameter]:
    f = FakeDiameter()
    yield f
    f.close()


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory, fake) -> Iterator[Kamailio]:
    k = example_kamailio(tmp_path_factory.mktemp("kamailio-faults"), fake.port, children=1).start()
    yield k
    k.stop()
    k.assert_no_crash()


def set_cfg(k: Kamailio, **values: int | str) -> None:
    """cfg.set each value, then wait until the workers re-read their settings."""
    for name, value in values.items():
        out = k.kamcmd("cfg.set", "auth_diameter", name, str(value))
        assert "error" not in out.lower(), out
    time.sleep(REFRESH_INTERVAL + 0.02)


def register(k: Kamailio, timeout: float = 5.0):
    return SipClient(k.sip_port).request("REGISTER", "sip:example.com", timeout=timeout)


@pytest.fixture(autouse=True)
def defaults(kamailio, fake):
    fake.mode = "challenge"
    set_cfg(kamailio, diameter_client_port=fake.port, reconnect_interval=0, answer_timeout=2000)
    yield
    assert kamailio.alive()
    kamailio.assert_no_crash()


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("challenge", 401),
        ("no-result-code", 500),  # C bug B2: SIGSEGV there
        ("unknown-code", 500),
        ("challenge-injection", 500),
        ("challenge-escape", 500),  # it went into the 401 as it was
        ("bad-version", 500),
        ("huge-length", 500),
        ("garbage-avp", 500),
        ("close", 500),
        ("split", 401),  # C bug B8: 500 there
        ("stale-then-right", 401),
    ],
)
def test_hostile_or_odd_answers_get_their_documented_reply(kamailio, fake, mode, code):
    fake.mode = mode
    reply = register(kamailio)
    assert reply.code == code, reply.raw
    assert reply.header("X-Injected") is None
    fake.mode = "challenge"
    assert register(kamailio).code == 401  # the next request is served normally


def test_challenge_without_crlf_gets_one(kamailio, fake):
    fake.mode = "challenge-no-crlf"
    reply = register(kamailio)
    assert reply.code == 401
    assert reply.header("WWW-Authenticate") == 'Digest realm="example.com", nonce="0123456789abcdef", qop="auth"'
    assert (
        reply.header(
            "Server",
        )
        is not None
    )  # the next header was not glued onto the challenge


@pytest.mark.parametrize("mode", ["silent", "stale-only"])
def test_unanswered_request_gets_500_at_the_deadline(kamailio, fake, mode):
    set_cfg(kamailio, answer_timeout=700)
    fake.mode = mode
    start = time.monotonic()
    reply = register(kamailio)
    elapsed = time.monotonic() - start
    assert reply.code == 500
    assert 0.6 < elapsed < 1.5, elapsed


def test_one_late_answer_does_not_fail_the_requests_after_it(kamailio, fake):
    """A server that stalled once for longer than answer_timeout made the worker answer 500 at
    once for reconnect_interval; now only a failed connect does (see the server-down test)."""
    set_cfg(kamailio, answer_timeout=500, reconnect_interval=3000)
    fake.mode = "silent-once"
    start = time.monotonic()
    assert register(kamailio).code == 500
    assert 0.45 < time.monotonic() - start < 0.8
    assert [register(kamailio).code for _ in range(3)] == [401] * 3


def test_invalid_run_time_change_is_refused_and_logged(kamailio):
    set_cfg(kamailio, diameter_client_port=70000)  # Kamailio itself accepts any int
    assert register(kamailio).code == 401
    assert "auth_diameter.diameter_client_port: 70000 is outside 1..65535" in kamailio.log()


def test_group_check_on_hostile_answer_is_false_without_reply(kamailio, fake):
    fake.mode = "success"  # proxy_authorize succeeds, then the group check gets no Result-Code
    client = SipClient(kamailio.sip_port)
    cred = (
        'Proxy-Authorization: Digest username="alice", realm="example.com", nonce="n", '
        'uri="sip:voicemail@example.com", response="0"'
    )
    reply = client.request("INVITE", "sip:voicemail@example.com", headers=(cred,))
    assert reply.code == 200  # both succeed
    fake.mode = "no-result-code"
    reply = client.request("INVITE", "sip:voicemail@example.com", headers=(cred,))
    assert reply.code == 500


# --- a real server that dies and comes back ------------------------------------------


def test_server_down_gets_500_quickly_and_restart_recovers(tmp_path):
    server = make_server(tmp_path)
    k = example_kamailio(tmp_path / "k", server.port)
    k.start()  # the server is not running yet: Kamailio starts anyway (C bug B10)
    try:
        start = time.monotonic()
        assert register(k).code == 500
        assert time.monotonic() - start < 1.0
        server.start()
        time.sleep(1.1)  # reconnect_interval of the example cfg
        r = sipp("register_auth", k.sip_port, run_dir=tmp_path, auth_user="alice", password="secret", calls=4)
        assert r.returncode == 0, r.output
        server.stop(signal.SIGKILL)
        start = time.monotonic()
        assert register(k).code == 500
        assert time.monotonic() - start < 1.0
        server.start()
        time.sleep(1.1)
        r = sipp("register_auth", k.sip_port, run_dir=tmp_path, auth_user="alice", password="secret", calls=4)
        assert r.returncode == 0, r.output
    finally:
        server.stop()
        k.stop()
    k.assert_no_crash()


@pytest.mark.parametrize(
    ("define", "value", "message"),
    [
        ("DIAMETER_PORT", "0", "auth_diameter.diameter_client_port: 0 is outside 1..65535"),
        ("DIAMETER_HOST", '"bad host"', "auth_diameter.diameter_client_host: 'bad host' is not a host name"),
    ],
)
def test_bad_setting_stops_kamailio_at_start_up(tmp_path, define, value, message):
    k = Kamailio(cfg=EXAMPLE_CFG, run_dir=tmp_path, defines={define: value, "CHILDREN": "1"})
    k.start(wait=False)
    assert k.proc is not None
    rc = k.proc.wait(20)
    assert rc != 0
    assert message in k.log()


def test_unknown_setting_name_stops_kamailio(tmp_path):
    cfg = tmp_path / "typo.cfg"
    cfg.write_text(EXAMPLE_CFG.read_text().replace("auth_diameter.use_domain = 0", "auth_diameter.use_domian = 0"))
    k = Kamailio(cfg=cfg, run_dir=tmp_path / "k", defines={"CHILDREN": "1"})
    k.start(wait=False)
    assert k.proc.wait(20) != 0
    assert "auth_diameter.use_domian: unknown setting" in k.log()


def test_missing_settings_take_their_defaults(tmp_path):
    server = make_server(tmp_path)
    cfg = tmp_path / "minimal.cfg"
    lines = [ln for ln in EXAMPLE_CFG.read_text().splitlines() if not ln.startswith("auth_diameter.")]
    # only the port differs from the defaults (a test cannot own port 3000)
    lines.insert(
        lines.index("listen=udp:127.0.0.1:SIP_PORT"), f'auth_diameter.diameter_client_port = {server.port} desc "port"'
    )
    cfg.write_text("\n".join(lines) + "\n")
    k = Kamailio(cfg=cfg, run_dir=tmp_path / "k", defines={"CHILDREN": "1"})
    with running(server, k):
        r = sipp("register_auth", k.sip_port, run_dir=tmp_path, auth_user="alice", password="secret")
        assert r.returncode == 0, r.output
    assert "settings declared in" in k.log() and "diameter_client_port" in k.log()
    k.assert_no_crash()
