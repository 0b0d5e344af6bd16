"""The plugin's own RFC 6733/4740 messages, captured from a real Kamailio and decoded by tshark.

Every message decodes cleanly with every AVP recognised, and a failover re-send is
visible on the wire: the same end-to-end id, a new hop-by-hop id and the T flag.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests import tshark
from tests.harness import ReferenceServer, example_kamailio, free_port, sipp
from tests.real.conftest import GROUPS, USERS, make_server
from tests.real.test_rfc4740 import ORIGIN, rfc4740_defines

pytestmark = pytest.mark.kamailio

MAR, SAR, CER, DWR = 286, 284, 257, 280


def clean(pcap: Path, ports: list[int], sent_at_least: int) -> list[tshark.DiameterMessage]:
    messages = tshark.decode(pcap, ports)
    assert tshark.problems(messages) == []
    assert tshark.undecoded(pcap, ports) == []
    assert len(messages) >= sent_at_least
    return messages


def test_plugin_messages_decode_cleanly(tmp_path):
    (tmp_path / "server").mkdir()
    server = make_server(tmp_path / "server")
    server.diameter_port = free_port()
    server.extra = ("--origin-realm", "example.com")
    server.start()
    assert server.diameter_port is not None
    k = example_kamailio(tmp_path / "k", server.port, children=2, **rfc4740_defines(server.diameter_port))
    try:
        with tshark.Capture(tmp_path / "plugin.pcapng", [server.diameter_port]):
            k.start()
            for scenario, kw in (
                ("register_auth", {"auth_user": "alice", "password": "secret", "calls": 2}),
                ("register_forbidden", {"auth_user": "alice", "password": "wrong"}),
                ("invite_auth_200", {"auth_user": "alice", "password": "secret", "service": "voicemail"}),
            ):
                r = sipp(scenario, k.sip_port, run_dir=tmp_path / scenario, **kw)
                assert r.returncode == 0, r.output
            k.stop()
        messages = clean(tmp_path / "plugin.pcapng", [server.diameter_port], 2 * (2 + 2 * 2 + 2 + 2 + 1))
    finally:
        k.stop()
        server.stop()
    requests = [m for m in messages if m.request and m.src_port != server.diameter_port]
    assert {m.command_code for m in requests} >= {CER, MAR, SAR}
    for m in requests:
        origin = m.value(264)
        assert origin is not None and origin.endswith(f".{ORIGIN}") and origin.split(".")[0] in ("w1", "w2")
        assert not m.retransmit
        if m.command_code in (MAR, SAR):
            session = m.value(263)
            assert session is not None and session.startswith(f"{origin};")
            assert m.value(283) == "example.com" and m.proxiable
    answers = {(m.hop_by_hop, m.end_to_end) for m in messages if not m.request}
    assert all((m.hop_by_hop, m.end_to_end) in answers for m in requests)  # every request was answered
    with_credentials = [m for m in requests if m.command_code == MAR and m.find(376, 380, 103)]
    assert with_credentials and all(m.value(1) == "alice" for m in with_credentials)


def test_failover_re_send_carries_t_flag_and_same_end_to_end(tmp_path):
    db = tmp_path / "users.db"
    a = ReferenceServer(
        db=db, log_path=tmp_path / "a.log", diameter_port=free_port(), extra=("--origin-realm", "example.com")
    )
    b = ReferenceServer(
        db=db, log_path=tmp_path / "b.log", diameter_port=free_port(), extra=("--origin-realm", "example.com")
    )
    for user in USERS:
        a.add_user(*user)
    for member in GROUPS:
        a.add_group(*member)
    a.start()
    b.start()
    assert a.diameter_port and b.diameter_port and a.proc
    ports = [a.diameter_port, b.diameter_port]
    k = example_kamailio(tmp_path / "k", a.port, children=2, **rfc4740_defines(*ports, FAILOVER_TIMEOUT="300"))
    try:
        k.start()
        # every worker opens its connections to both servers first
        r = sipp("register_auth", k.sip_port, run_dir=tmp_path / "w", auth_user="alice", password="secret", calls=10)
        assert r.returncode == 0, r.output
        with tshark.Capture(tmp_path / "failover.pcapng", ports):
            os.kill(a.proc.pid, signal.SIGSTOP)  # alive, connections open, but silent
            threading.Timer(1.5, os.kill, (a.proc.pid, signal.SIGCONT)).start()
            r = sipp("register_auth", k.sip_port, run_dir=tmp_path / "s", auth_user="alice", password="secret", calls=6,
                     rate=10, extra=("-recv_timeout", "1500"))  # fmt: skip
            assert r.returncode == 0, r.output
        messages = clean(tmp_path / "failover.pcapng", ports, 6)
    finally:
        k.stop()
        a.stop()
        b.stop()
    mars = [m for m in messages if m.request and m.command_code == MAR]
    first = {m.end_to_end: m for m in mars if m.dst_port == a.diameter_port and not m.retransmit}
    resent = [m for m in mars if m.retransmit]
    assert resent, [m.label for m in messages]
    for m in resent:
        assert m.dst_port == b.diameter_port and m.end_to_end in first  # same request, the other server
    answered = {m.end_to_end for m in messages if not m.request and m.src_port == b.diameter_port}
    assert {m.end_to_end for m in resent} <= answered
