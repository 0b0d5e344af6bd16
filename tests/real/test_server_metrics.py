"""``serve --metrics-listen``: the reference server's counts, scraped over HTTP after real
traffic, equal that traffic: REGISTER and INVITE flows through Kamailio
(kamailio.cfg.example) and sipp; RFC 6733 sessions on a raw socket with our codecs (CER,
DWR, DPR, RFC 4740 MAR and SAR, Cx MAR, H(A1) given and refused); legacy clients hitting
the throttle, a locked database and the connection limits; and with ``--processes 2``,
where each scrape, whichever process answers it, shows the sum. An address other than
loopback is refused unless the operator says otherwise."""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import base, cx, legacy, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.framing import Framer
from tests.harness import PYTHON, ROOT, Kamailio, ReferenceServer, example_kamailio, free_port
from tests.real.conftest import make_server, run

pytestmark = pytest.mark.kamailio

P = "auth_diameter_server_"
REALM = "example.com"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """One scrape, parsed by prometheus_client's own parser of the text format."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a series not shown yet (a counter never incremented)."""
    return samples.get((P + name, frozenset(labels.items())), 0.0)


def settled(port: int) -> Samples:
    """A scrape once the requests stopped changing: Kamailio's start-up probe (OPTIONS,
    which the example cfg challenges: a request to the server) may be sent twice, the
    second while the first is still being answered."""
    last = scrape(port)
    while True:
        time.sleep(0.5)
        now = scrape(port)
        if requests(now) == requests(last):
            return now
        last = now


def delta(after: Samples, before: Samples) -> dict[tuple[str, str], float]:
    """The requests counted between two scrapes, those that changed."""
    old = requests(before)
    return {k: v - old.get(k, 0) for k, v in requests(after).items() if v != old.get(k, 0)}


def requests(samples: Samples) -> dict[tuple[str, str], float]:
    """requests_total as {(type, result): count}."""
    out = {}
    for (name, labels), v in samples.items():
        if name == P + "requests_total":
            d = dict(labels)
            out[d["type"], d["result"]] = v
    return out


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def closed(sock: socket.socket) -> bool:
    """The server closed it (waiting for that up to the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# --- through Kamailio and sipp ---------------------------------------------------------


def flows(kamailio: Kamailio, run_dir: Path, scenario: str, calls: int, **kw: str) -> None:
    """``calls`` sipp flows as alice, without retransmissions: a worker's first request may
    take longer than sipp's timer (500 ms), and Kamailio, stateless here, would ask the
    server again for the copy; the counts are to be the flows'."""
    run(kamailio, run_dir, scenario, auth_user="alice", password="secret", calls=calls, extra=("-nr",), **kw)


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[ReferenceServer]:
    """The server Kamailio's fixture (conftest) talks to, with metrics on a bare port."""
    s = make_server(tmp_path_factory.mktemp("server"))
    s.extra = ("--metrics-listen", str(metrics_port))
    s.start()
    yield s
    s.stop()


def test_sipp_flows_through_kamailio_are_counted(
    server: ReferenceServer, kamailio: Kamailio, metrics_port: int, tmp_path: Path
) -> None:
    port = metrics_port
    assert f"INFO metrics on http://127.0.0.1:{port}/metrics\n" in server.log_path.read_text()
    before = settled(port)
    flows(kamailio, tmp_path, "register_auth", 5)
    flows(kamailio, tmp_path, "invite_auth_200", 3, service="voicemail")
    after = scrape(port)
    # each flow: a request without credentials (4001 and a challenge), then the right response
    # (2001); each INVITE to voicemail: a group check too
    assert delta(after, before) == {
        ("legacy_auth", "4001"): 8,
        ("legacy_auth", "2001"): 8,
        ("legacy_group", "2001"): 3,
    }
    latency = value(after, "request_duration_seconds_count", listener="legacy") - value(
        before, "request_duration_seconds_count", listener="legacy"
    )
    assert latency == 19
    assert value(after, "request_duration_seconds_bucket", listener="legacy", le="+Inf") == value(
        after, "request_duration_seconds_count", listener="legacy"
    )
    assert 0 < value(after, "request_duration_seconds_sum", listener="legacy") < 19 * 0.5
    assert value(after, "connections", listener="legacy") >= 1  # the workers' own
    for name in ("store_errors_total", "throttled_responses_total", "connections_refused_total"):
        assert value(after, name) == 0, name
    assert ("auth_diameter_server_requests_created", frozenset()) not in after  # no _created series

    kamailio.stop()  # its workers' connections close: the gauge says so
    wait_for("the gauge to drop", lambda: value(scrape(port), "connections", listener="legacy") == 0)


# --- RFC 6733 on a raw socket ------------------------------------------------------------

TRUSTED = Identity("w1.proxy.example.com", "proxy.example.com")
STRANGER = Identity("w1.other.example.com", "other.example.com")


class RawPeer:
    """One RFC 6733 connection, each request written with our codecs and its answer's
    Result-Code (or Experimental-Result code) read back."""

    def __init__(self, port: int, identity: Identity) -> None:
        self.identity = identity
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.framer = Framer()
        self.ids = 1000
        self.sessions = base.SessionIds(identity.origin_host)

    def send(self, encode: Callable[[int, int], bytes]) -> bytes:
        self.ids += 1
        self.sock.sendall(encode(self.ids, self.ids))
        while (frame := self.framer.next_message()) is None:
            chunk = self.sock.recv(65536)
            assert chunk, "closed without an answer"
            self.framer.feed(chunk)
        return frame

    def result(self, encode: Callable[[int, int], bytes]) -> int:
        msg = base.decode(self.send(encode))
        code = base.unsigned(msg.avps, base.AVP_RESULT_CODE)
        assert code is not None
        return code

    def cer(self, served: bool = True) -> int:
        """A CER naming application 6 and Cx, or (``served`` False) only application 4."""
        caps = Capabilities(
            self.identity, ("127.0.0.1",), (sip_app.APP_SIP,) if served else (4,),
            supported_vendor_ids=(cx.VENDOR_3GPP,), vendor_applications=(cx.APPLICATION,) if served else (),
        )  # fmt: skip
        return self.result(lambda hop, e2e: base.encode_cer(caps, hop, e2e))

    def dwr(self) -> int:
        return self.result(lambda hop, e2e: base.encode_dwr(self.identity, 1, hop, e2e))

    def dpr(self) -> int:
        return self.result(lambda hop, e2e: base.encode_dpr(self.identity, base.DISCONNECT_REBOOTING, hop, e2e))

    def flow_b(self, user: str) -> sip_app.MultimediaAuthAnswer:
        mar = sip_app.MultimediaAuthRequest(
            self.sessions(), self.identity.origin_host, self.identity.origin_realm, REALM,
            sip_aor=f"sip:{user}@{REALM}", sip_method="REGISTER", user_name=user,
            server_uri="sip:registrar.example.com",
        )  # fmt: skip
        return sip_app.decode_maa(self.send(lambda hop, e2e: sip_app.encode_mar(mar, hop, e2e)))[1]

    def sar(self, user: str) -> sip_app.ServerAssignmentAnswer:
        sar = sip_app.ServerAssignmentRequest(
            self.sessions(), self.identity.origin_host, self.identity.origin_realm, REALM,
            sip_app.ASSIGNMENT_NO_ASSIGNMENT, user_name=user,
        )  # fmt: skip
        return sip_app.decode_saa(self.send(lambda hop, e2e: sip_app.encode_sar(sar, hop, e2e)))[1]

    def cx_mar(self, user: str) -> cx.MultimediaAuthAnswer:
        mar = cx.MultimediaAuthRequest(
            self.sessions(), self.identity.origin_host, self.identity.origin_realm, REALM,
            user_name=user, public_identity=f"sip:{user}@{REALM}", server_name="sip:proxy.example.com",
            scheme=cx.SCHEME_SIP_DIGEST,
        )  # fmt: skip
        return cx.decode_maa(self.send(lambda hop, e2e: cx.encode_mar(mar, hop, e2e)))[1]

    def unserved(self) -> int:
        """A command application 6 does not have (3001)."""
        body = [base.avp(base.AVP_SESSION_ID, self.sessions()), *base.identity_avps(self.identity)]
        return self.result(
            lambda hop, e2e: base.encode(base.request_header(999, sip_app.APP_SIP, hop, e2e, proxiable=True), body)
        )

    def close(self) -> None:
        self.sock.close()


def test_diameter_requests_ha1_and_refusals_are_counted(tmp_path: Path) -> None:
    s = make_server(tmp_path)
    s.diameter_port = free_port()
    metrics = free_port()
    s.extra = ("--metrics-listen", f"127.0.0.1:{metrics}", "--ha1-peer", "*.proxy.example.com")
    s.start()
    try:
        trusted = RawPeer(s.diameter_port, TRUSTED)
        assert trusted.cer() == 2001
        assert [trusted.dwr(), trusted.dwr()] == [2001, 2001]
        maa = trusted.flow_b("alice")
        assert maa.result_code == 1001 and len(maa.ha1s) == 2  # Flow B: MD5 and SHA-256
        assert trusted.sar("alice").result_code == 2001
        assert trusted.cx_mar("alice").ha1s[0].ha1 == digest.ha1("alice", REALM, "secret")
        assert trusted.unserved() == 3001
        assert trusted.dpr() == 2001
        trusted.close()

        stranger = RawPeer(s.diameter_port, STRANGER)
        assert stranger.cer() == 2001
        assert stranger.cx_mar("alice").result_code == 5012
        maa = stranger.flow_b("alice")
        assert maa.result_code == 1001 and maa.ha1s == ()  # Flow A's challenge: not a refusal
        refused = RawPeer(s.diameter_port, STRANGER)
        assert refused.cer(served=False) == 5010
        samples = scrape(metrics)
        assert requests(samples) == {
            ("cer", "2001"): 2,
            ("cer", "5010"): 1,
            ("dwr", "2001"): 2,
            ("dpr", "2001"): 1,
            ("mar", "1001"): 2,
            ("sar", "2001"): 1,
            ("cx_mar", "2001"): 1,
            ("cx_mar", "5012"): 1,
            ("other", "3001"): 1,
        }
        assert value(samples, "ha1_given_total", application="rfc4740") == 1
        assert value(samples, "ha1_given_total", application="cx") == 1
        assert value(samples, "ha1_refused_total") == 1
        assert value(samples, "request_duration_seconds_count", listener="diameter") == 12
        assert value(samples, "request_duration_seconds_count", listener="legacy") == 0
        assert value(samples, "connections", listener="diameter") == 1  # the stranger's: the others closed
        assert ("auth_diameter_server_connections", frozenset({("listener", "diameter_tls")})) not in samples
        stranger.close()
        refused.close()
        wait_for("the gauge to drop", lambda: value(scrape(metrics), "connections", listener="diameter") == 0)
    finally:
        s.stop()


# --- legacy clients: the throttle, the store, the limits -------------------------------


class LegacyClient:
    """One connection to the legacy listener, from 127.0.0.2 (the address --allow names)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
        self.msgid = 0

    def ask(self, credentials: str | None) -> legacy.Answer:
        self.msgid += 1
        cred = parse_credentials(credentials) if credentials is not None else None
        self.sock.sendall(
            legacy.encode_auth_request(
                parse_uri("sip:example.com"), parse_uri("sip:alice@example.com"), self.msgid, cred, "REGISTER"
            )
        )
        buf = b""
        while len(buf) < 4 or len(buf) < int.from_bytes(buf[1:4], "big"):
            chunk = self.sock.recv(65536)
            assert chunk, "closed without an answer"
            buf += chunk
        return legacy.decode_answer(buf)

    def authenticate(self, password: str) -> int | None:
        challenge = self.ask(None).challenge
        assert challenge is not None
        m = re.search(rb'nonce="([^"]+)"', challenge)
        assert m
        nonce = m.group(1).decode()
        d = digest.DigestInput(
            method="REGISTER", uri="sip:example.com", nonce=nonce, qop="auth", nc="00000001", cnonce="c0ffee"
        )
        response = digest.response(digest.ha1("alice", REALM, password), d)
        return self.ask(
            f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="sip:example.com", '
            f'response="{response}", qop=auth, nc=00000001, cnonce="c0ffee"'
        ).result_code


def test_throttle_store_errors_and_limits_are_counted(tmp_path: Path) -> None:
    s = make_server(tmp_path)
    metrics = free_port()
    s.extra = (
        "--metrics-listen", f"localhost:{metrics}", "--allow", "127.0.0.2/32", "--throttle-after", "0",
        "--max-connections-per-address", "3", "--message-timeout", "0.5",
    )  # fmt: skip
    s.start()
    try:
        client = LegacyClient(s.port)
        assert client.authenticate("secret") == 2001  # and the purge of expired counts is done
        # the store: a write lock held elsewhere outlasts the busy timeout (1 s)
        with sqlite3.connect(s.db, isolation_level=None) as db:
            db.execute("BEGIN IMMEDIATE")
            assert client.authenticate("secret") == 5012
            db.execute("ROLLBACK")
        # the throttle: one wrong response blocks alice for 1 s, the next one is not checked
        assert client.authenticate("wrong") == 4001
        assert client.authenticate("secret") == 4001
        # the limits: a client not in --allow, a fourth connection from one address, a
        # message begun and not finished
        refused = value(scrape(metrics), "connections_refused_total")  # the harness's probe that it serves
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as outsider:
            assert closed(outsider)
        idle = [
            socket.create_connection(("127.0.0.1", s.port), timeout=5, source_address=("127.0.0.2", 0))
            for _ in range(3)
        ]
        assert closed(idle[0])  # the oldest silent one made room
        idle[1].sendall(b"\x01\x00")
        assert closed(idle[1])  # cut after the message timeout
        samples = scrape(metrics)
        # each authentication: a challenge (4001), then the response: right, store failed, wrong, throttled
        assert requests(samples) == {("legacy_auth", "4001"): 6, ("legacy_auth", "2001"): 1, ("legacy_auth", "5012"): 1}
        assert value(samples, "store_errors_total") == 1
        assert value(samples, "throttled_responses_total") == 1
        assert value(samples, "connections_refused_total") == refused + 1
        assert value(samples, "connections_evicted_total", reason="address-cap") == 1
        assert value(samples, "connections_timed_out_total", reason="partial") == 1
        assert value(samples, "connections_timed_out_total", reason="idle") == 0  # shown from the start
        assert value(samples, "connections", listener="legacy") == 2  # the client and the last idle one
        for sock in (client.sock, *idle):
            sock.close()

        # the endpoint itself: a client that says nothing, one that is not HTTP, more than
        # the 8 connections it holds at once; a scrape still gets through, and POST is refused
        with socket.create_connection(("127.0.0.1", metrics), timeout=5) as junk:
            junk.sendall(b"hello\r\n\r\n")
            assert closed(junk)
        silent = [socket.create_connection(("127.0.0.1", metrics)) for _ in range(10)]
        started = time.monotonic()
        assert value(scrape(metrics), "store_errors_total") == 1
        assert time.monotonic() - started < 2
        for sock in silent:
            sock.close()
        post = urllib.request.Request(f"http://127.0.0.1:{metrics}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError, match="405"):
            urllib.request.urlopen(post, timeout=5)
        assert "Traceback" not in s.log_path.read_text()
    finally:
        s.stop()


# --- several processes ---------------------------------------------------------------------


def test_with_two_processes_every_scrape_shows_the_sums(tmp_path: Path) -> None:
    s = make_server(tmp_path)
    metrics = free_port()
    s.extra = ("--processes", "2", "--metrics-listen", str(metrics), "-v")
    k = example_kamailio(tmp_path / "kamailio", s.port, children=4)
    s.start()
    try:
        assert s.proc is not None
        main = s.proc.pid
        wait_for("two processes", lambda: len(_children(main)) == 2)
        m = re.search(r"every process's counts summed \(their files in (\S+)\)", s.log_path.read_text())
        assert m
        directory = Path(m.group(1))
        k.start()
        try:
            before = settled(metrics)
            flows(k, tmp_path, "register_auth", 10)
            # group checks on new connections, until the kernel gave some to each process
            groups = 0
            while groups < 100 and len(set(re.findall(r"\[(\d+)\] DEBUG service b'8'", s.log_path.read_text()))) < 2:
                with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
                    c.sendall(legacy.encode_group_request(REALM, 1, "voicemail", b"alice"))
                    assert legacy.decode_answer(c.recv(4096)).result_code == 2001
                groups += 1
            assert groups < 100, "the kernel gave every connection to one process"
            expected = {("legacy_auth", "4001"): 10, ("legacy_auth", "2001"): 10, ("legacy_group", "2001"): groups}
            answered = value(before, "request_duration_seconds_count", listener="legacy") + 20 + groups
            for _ in range(10):  # each scrape on a new connection: both processes answer some
                samples = scrape(metrics)
                assert delta(samples, before) == expected
                assert value(samples, "request_duration_seconds_count", listener="legacy") == answered
            held = _connections(s.port)  # Kamailio's workers', by server process
            assert value(samples, "connections", listener="legacy") == sum(held.values())

            # a process killed: its counts stay, its connections leave the gauge
            victim, lost = held.most_common(1)[0]
            children = _children(main)
            subprocess.run(["kill", "-9", str(victim)], check=True)
            wait_for("a replacement", lambda: len(_children(main)) == 2 and _children(main) != children)
            samples = scrape(metrics)
            assert delta(samples, before) == expected
            assert value(samples, "connections", listener="legacy") == sum(held.values()) - lost
            flows(k, tmp_path / "again", "register_auth", 2)
            assert delta(scrape(metrics), before)["legacy_auth", "2001"] == 12
        finally:
            k.stop()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(15) == 0
        assert not directory.exists()  # the files go with the server
        assert "Traceback" not in s.log_path.read_text()
    finally:
        s.stop()


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _connections(port: int) -> Counter[int]:
    """Established connections to 127.0.0.1:port, by the pid of the process holding them (ss)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    return Counter(int(pid) for pid in re.findall(r"pid=(\d+)", out))


# --- where the endpoint may listen ------------------------------------------------------


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--db", str(tmp_path / "u.db"),
         "--legacy-listen", f"127.0.0.1:{free_port()}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_an_address_other_than_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    for where in ("192.0.2.1:9464", "0.0.0.0:9464", "[::]:9464", "metrics.example.com:9464"):
        r = _serve(tmp_path, "--metrics-listen", where)
        host = where.rpartition(":")[0]
        assert (r.returncode, r.stderr) == (
            1,
            f"error: --metrics-listen {host}:9464 is not a loopback address: anyone who reaches it would read the "
            "server's counts; add --metrics-allow-remote to serve them there (and let a firewall choose who "
            "reaches it)\n",
        )
    # allowed, the address is tried: this machine has no 192.0.2.1 (TEST-NET-1), so nothing listens outside
    r = _serve(tmp_path, "--metrics-listen", "192.0.2.1:9464", "--metrics-allow-remote")
    assert (r.returncode, r.stderr) == (1, "error: --metrics-listen 192.0.2.1:9464: Cannot assign requested address\n")
    r = _serve(tmp_path, "--metrics-allow-remote")
    assert (r.returncode, r.stderr) == (1, "error: --metrics-allow-remote without --metrics-listen\n")
    r = _serve(tmp_path, "--metrics-listen", "nowhere")
    assert r.returncode == 2 and "argument --metrics-listen: 'nowhere' is not HOST:PORT or PORT" in r.stderr


def test_the_config_file_sets_it(tmp_path: Path) -> None:
    s = make_server(tmp_path)
    metrics = free_port()
    config = tmp_path / "server.conf"
    config.write_text(f"db = {s.db}\nlegacy-listen = 127.0.0.1:{s.port}\nmetrics-listen = {metrics}\n")
    s.config = config
    s.start()
    try:
        assert ("auth_diameter_server_connections", frozenset({("listener", "legacy")})) in scrape(metrics)
    finally:
        s.stop()
    config.write_text(f"db = {s.db}\nlegacy-listen = 127.0.0.1:{s.port}\nmetrics-listen = 192.0.2.1:{metrics}\n")
    r = subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 1 and "--metrics-listen 192.0.2.1" in r.stderr and "is not a loopback address" in r.stderr
