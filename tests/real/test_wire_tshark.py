"""Wireshark judges our Diameter bytes: a real exchange with the reference server, captured on loopback.

The client is made of our encoders on a plain socket and the server is ours too,
so both directions are our encoders' output; tshark's dissector and dictionary
are the independent reading (tests/tshark.py). The client also sends one message
in three TCP segments and two messages in one, which tshark must reassemble and
split for the count of messages to come out exact.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from diameter.message.avp import Avp

from kamailio_auth_diameter.wire import base, cx, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.framing import HEADER_LEN
from tests import tshark
from tests.harness import ReferenceServer, free_port
from tests.real.conftest import credentials, make_server

CLIENT = Identity("kamailio.example.com", "example.com")
SERVER = "aaa.example.com"
AVP_FRAMED_MTU = 12  # RFC 7155: in Wireshark's dictionary, not among the AVPs our server recognises
CMD_USER_AUTHORIZATION = 283  # RFC 4740 UAR: in Wireshark's dictionary, not served by ours


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("wire"))
    s.diameter_port = free_port()
    s.extra = ("--origin-host", SERVER, "--origin-realm", "example.com")
    s.start()
    yield s
    s.stop()


class Client:
    """Our encoders on a plain socket, counting the messages that cross it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one send, one segment
        self.sent = self.received = 0
        self._ids = itertools.count(1)

    def ids(self) -> tuple[int, int]:
        n = next(self._ids)
        return n, 0x1000 + n

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))
        self.sent += len(requests)

    def send_split(self, request: bytes, *cuts: int) -> None:
        """One message in several segments: the pauses keep the kernel from joining them."""
        for start, end in zip((0, *cuts), (*cuts, len(request)), strict=True):
            self.sock.sendall(request[start:end])
            time.sleep(0.01)
        self.sent += 1

    def read(self) -> bytes:
        data = b""
        want = HEADER_LEN
        while len(data) < want:
            chunk = self.sock.recv(want - len(data))
            assert chunk, f"connection closed after {len(data)} bytes of a message"
            data += chunk
            if len(data) == HEADER_LEN:
                want = int.from_bytes(data[1:4], "big")
        self.received += 1
        return data

    def answer(self, request: bytes) -> bytes:
        self.send(request)
        return self.read()

    def closed_by_server(self) -> bool:
        return self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


def _cer(client: Client) -> bytes:
    return base.encode_cer(Capabilities(CLIENT, ("127.0.0.1",), (sip_app.APP_SIP,)), *client.ids())


def _mar(client: Client, credentials: sip_app.DigestResponse | None = None, registrar: bool = True) -> bytes:
    req = sip_app.MultimediaAuthRequest(
        session_id=f"{CLIENT.origin_host};1;{client.sent}",
        origin_host=CLIENT.origin_host,
        origin_realm=CLIENT.origin_realm,
        destination_realm="example.com",
        sip_aor="sip:alice@example.com",
        sip_method="REGISTER",
        user_name="alice",
        server_uri=f"sip:{CLIENT.origin_host}" if registrar else None,
        credentials=credentials,
    )
    return sip_app.encode_mar(req, *client.ids())


def _with_avp(raw: bytes, extra: Avp) -> bytes:
    msg = base.decode(raw, sip_app.GROUPED)
    return base.encode(msg.header, [*msg.avps, extra])


def _uar(client: Client) -> bytes:
    header = base.request_header(CMD_USER_AUTHORIZATION, sip_app.APP_SIP, *client.ids(), proxiable=True)
    avps = [base.avp(base.AVP_SESSION_ID, f"{CLIENT.origin_host};1;{client.sent}"), *sip_app.session_avps()]
    avps += [*base.identity_avps(CLIENT), base.avp(base.AVP_DESTINATION_REALM, b"example.com")]
    avps += [base.avp(base.AVP_USER_NAME, "alice"), base.avp(sip_app.AVP_SIP_AOR, "sip:alice@example.com")]
    return base.encode(header, avps)


def _exchange(client: Client) -> None:
    """Every kind of message our server and client speak, in the order of a session."""
    client.send_split(_cer(client), 10, 50)  # cut inside the header, then inside an AVP
    client.read()
    client.send(base.encode_dwr(CLIENT, 7, *client.ids()), _mar(client))  # two in one segment
    client.read()
    _, maa = sip_app.decode_maa(client.read())
    assert maa.result_code == base.RESULT_MULTI_ROUND_AUTH and maa.challenge is not None
    for request, expected in (
        (_mar(client, credentials(maa.challenge, "secret")), base.RESULT_SUCCESS),
        (
            _mar(client, credentials(maa.challenge, "secret", 2), registrar=False),
            sip_app.RESULT_SUCCESS_SERVER_NAME_NOT_STORED,
        ),
        (_mar(client, credentials(maa.challenge, "wrong", 3)), base.RESULT_AUTHENTICATION_REJECTED),
    ):
        assert sip_app.decode_maa(client.answer(request))[1].result_code == expected
    sar = sip_app.ServerAssignmentRequest(
        session_id=f"{CLIENT.origin_host};1;{client.sent}",
        origin_host=CLIENT.origin_host,
        origin_realm=CLIENT.origin_realm,
        destination_realm="example.com",
        assignment_type=sip_app.ASSIGNMENT_NO_ASSIGNMENT,
        user_name="alice",
        supported_user_data_types=(sip_app.GROUPS_USER_DATA_TYPE,),
    )
    _, saa = sip_app.decode_saa(client.answer(sip_app.encode_sar(sar, *client.ids())))
    assert sip_app.groups_of(saa.user_data) == ["voicemail"]
    mtu = Avp(AVP_FRAMED_MTU, 0, (1500).to_bytes(4, "big"), base.AVP_FLAG_MANDATORY)
    assert sip_app.decode_maa(client.answer(_with_avp(_mar(client), mtu)))[1].result_code == base.RESULT_AVP_UNSUPPORTED
    uaa = base.decode(client.answer(_uar(client)))
    assert base.unsigned(uaa.avps, base.AVP_RESULT_CODE) == base.RESULT_COMMAND_UNSUPPORTED
    client.answer(base.encode_dpr(CLIENT, base.DISCONNECT_REBOOTING, *client.ids()))
    assert client.closed_by_server()


def test_wireshark_knows_every_avp_we_recognise() -> None:
    known = tshark.dictionary()
    assert sorted(sip_app.RECOGNISED - known.keys()) == []
    assert [known[c] for c in (103, 122, 368, 393)] == [
        "Digest-Response",
        "SIP-AOR",
        "SIP-Accounting-Information",
        "SIP-Method",
    ]


def test_exchange_decodes_cleanly(server: ReferenceServer, tmp_path: Path) -> None:
    assert server.diameter_port is not None
    pcap = tmp_path / "exchange.pcapng"
    with tshark.Capture(pcap, [server.diameter_port]), contextlib.closing(Client(server.diameter_port)) as client:
        _exchange(client)
    messages = tshark.decode(pcap, [server.diameter_port])
    assert tshark.problems(messages) == []
    assert tshark.undecoded(pcap, [server.diameter_port]) == []
    assert len(messages) == client.sent + client.received == 20

    requests = [m for m in messages if m.request]
    answers = {(m.hop_by_hop, m.end_to_end): m for m in messages if not m.request}
    assert len(requests) == len(answers) == 10
    for req in requests:
        ans = answers[req.hop_by_hop, req.end_to_end]
        assert (ans.command_code, ans.application_id, ans.proxiable) == (
            req.command_code,
            req.application_id,
            req.proxiable,
        )
        assert req.src_port != server.diameter_port == ans.src_port
        assert not req.retransmit and not ans.retransmit and not req.error
        assert req.proxiable == (req.application_id == sip_app.APP_SIP)
    assert [(r.command, answers[r.hop_by_hop, r.end_to_end].value(base.AVP_RESULT_CODE)) for r in requests] == [
        ("Capabilities-Exchange", "2001"),
        ("Device-Watchdog", "2001"),
        ("Multimedia-Auth", "1001"),
        ("Multimedia-Auth", "2001"),
        ("Multimedia-Auth", "2006"),
        ("Multimedia-Auth", "4001"),
        ("Server-Assignment", "2001"),
        ("Multimedia-Auth", "5001"),
        ("User-Authorization", "3001"),
        ("Disconnect-Peer", "2001"),
    ]
    assert [m.command for m in messages if m.error] == ["User-Authorization"]

    # Reassembly: the CER came in three segments, DWR and MAR in one.
    cer, dwr, mar = requests[:3]
    assert (cer.segments, dwr.segments, mar.segments) == (3, 1, 1)
    assert dwr.frame == mar.frame
    challenge = answers[mar.hop_by_hop, mar.end_to_end]

    # The nesting Wireshark sees is RFC 4740's.
    item, authenticate = sip_app.AVP_SIP_AUTH_DATA_ITEM, sip_app.AVP_SIP_AUTHENTICATE
    assert challenge.value(item, authenticate, sip_app.AVP_DIGEST_REALM) == "example.com"
    assert challenge.value(item, authenticate, sip_app.AVP_DIGEST_QOP) == "auth"
    assert challenge.value(item, sip_app.AVP_SIP_AUTHENTICATION_SCHEME) == str(sip_app.SCHEME_DIGEST)
    credentials = requests[3].find(item, sip_app.AVP_SIP_AUTHORIZATION, sip_app.AVP_DIGEST_RESPONSE)
    assert len(credentials) == 1 and len(credentials[0].value or "") == 32
    saa = answers[requests[6].hop_by_hop, requests[6].end_to_end]
    assert saa.value(sip_app.AVP_SIP_USER_DATA, sip_app.AVP_SIP_USER_DATA_TYPE) == "groups"
    contents = saa.value(sip_app.AVP_SIP_USER_DATA, sip_app.AVP_SIP_USER_DATA_CONTENTS) or ""
    assert bytes.fromhex(contents.replace(":", "")) == b"voicemail\n"
    failed = answers[requests[7].hop_by_hop, requests[7].end_to_end]
    assert failed.value(base.AVP_FAILED_AVP, AVP_FRAMED_MTU) == "1500"


def test_problems_are_reported(server: ReferenceServer, tmp_path: Path) -> None:
    """The judge itself: an AVP Wireshark does not know, an Unsigned32 two bytes long, and a
    request with the E bit, which Wireshark does not take for a Diameter message at all."""
    assert server.diameter_port is not None
    pcap = tmp_path / "bad.pcapng"
    with tshark.Capture(pcap, [server.diameter_port]), contextlib.closing(Client(server.diameter_port)) as client:
        client.answer(_cer(client))
        client.answer(_with_avp(_mar(client), Avp(9999, 0, b"abcd", 0)))  # no M bit: our server ignores it
        dwr = bytearray(base.encode_dwr(CLIENT, 7, *client.ids()))
        dwr[-12:] = Avp(base.AVP_ORIGIN_STATE_ID, 0, b"\0\7", base.AVP_FLAG_MANDATORY).as_bytes()
        dwr[1:4] = len(dwr).to_bytes(3, "big")
        client.answer(bytes(dwr))
        flagged = bytearray(_mar(client))
        flagged[4] |= base.FLAG_ERROR
        assert base.decode(client.answer(bytes(flagged))).header.command_flags & base.FLAG_ERROR  # 3008
    messages = tshark.decode(pcap, [server.diameter_port])
    assert len(messages) == client.sent + client.received - 1 == 7
    assert len(tshark.undecoded(pcap, [server.diameter_port])) == 1
    mar, dwr_seen = messages[2], messages[4]
    assert (mar.command, dwr_seen.command) == ("Multimedia-Auth", "Device-Watchdog")
    found = tshark.problems(messages)
    assert [p.partition(": ")[0] for p in found] == [mar.label, mar.label, dwr_seen.label, dwr_seen.label]
    assert "AVP 9999 (vendor 0) is not in Wireshark's dictionary" in found[0]
    assert "Warning/Undecoded: Unknown AVP 9999" in found[1]
    assert "Warning/Malformed: Bad Unsigned32 Length (2)" in found[2]
    assert found[3].endswith(": malformed")


# --- H(A1) delegation: 3GPP Cx and RFC 4740 Flow B ----------------------------------------


@pytest.fixture(scope="module")
def ha1_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    """Trusts our client with H(A1)s; carol is known by MD5 hashes only (no Alternate-Digest)."""
    s = make_server(tmp_path_factory.mktemp("wire-ha1"))
    s.add_user("carol", "example.com", "carolpw")
    with sqlite3.connect(s.db) as db:
        db.execute("UPDATE users SET ha1_sha256 = NULL, ha1b_sha256 = NULL WHERE username = 'carol'")
    s.diameter_port = free_port()
    s.extra = ("--origin-host", SERVER, "--origin-realm", "example.com", "--ha1-peer", CLIENT.origin_host)
    s.start()
    yield s
    s.stop()


def _cx_mar(client: Client, impi: str, impu: str, scheme: str = cx.SCHEME_SIP_DIGEST) -> bytes:
    req = cx.MultimediaAuthRequest(
        session_id=f"{CLIENT.origin_host};2;{client.sent}",
        origin_host=CLIENT.origin_host,
        origin_realm=CLIENT.origin_realm,
        destination_realm="example.com",
        user_name=impi,
        public_identity=impu,
        server_name=f"sip:{CLIENT.origin_host}",
        scheme=scheme,
    )
    return cx.encode_mar(req, *client.ids())


def _without(raw: bytes, code: int, vendor: int) -> bytes:
    msg = base.decode_lean(raw)
    kept = [(c, f, v, d) for c, f, v, d in msg.avps.items if (c, v) != (code, vendor)]
    body = b"".join(base.pack_avp(c, d, f & ~base.AVP_FLAG_VENDOR, v) for c, f, v, d in kept)
    return base.pack_message(msg.flags, msg.command, msg.application, msg.hop_by_hop, msg.end_to_end, body)


def _ha1_exchange(client: Client) -> None:
    caps = Capabilities(
        CLIENT, ("127.0.0.1",), (6,), supported_vendor_ids=(10415,), vendor_applications=(cx.APPLICATION,)
    )
    client.answer(base.encode_cer(caps, *client.ids()))
    for impi, impu, scheme, expected in (
        ("alice", "sip:alice@example.com", cx.SCHEME_SIP_DIGEST, (2001, None, 2)),
        ("carol", "sip:carol@example.com", cx.SCHEME_UNKNOWN, (2001, None, 1)),
        ("mallory", "sip:mallory@example.com", cx.SCHEME_SIP_DIGEST, (None, cx.USER_UNKNOWN, 0)),
        ("bob", "sip:alice@example.com", cx.SCHEME_SIP_DIGEST, (None, cx.IDENTITIES_DONT_MATCH, 0)),
        ("alice", "sip:alice@example.com", "Digest-AKAv1-MD5", (None, cx.AUTH_SCHEME_NOT_SUPPORTED, 0)),
    ):
        _, maa = cx.decode_maa(client.answer(_cx_mar(client, impi, impu, scheme)))
        assert (maa.result_code, maa.experimental_result, len(maa.ha1s)) == expected
    missing = base.decode(client.answer(_without(_cx_mar(client, "alice", "sip:alice@example.com"), 602, 10415)))
    assert base.unsigned(missing.avps, base.AVP_RESULT_CODE) == base.RESULT_MISSING_AVP
    flow_b = sip_app.decode_maa(client.answer(_mar(client, registrar=False)))[1]
    assert flow_b.result_code == 2008 and [h.algorithm for h in flow_b.ha1s] == ["SHA-256", "MD5"]
    client.answer(base.encode_dpr(CLIENT, base.DISCONNECT_REBOOTING, *client.ids()))
    assert client.closed_by_server()


def test_ha1_exchanges_decode_cleanly(ha1_server: ReferenceServer, tmp_path: Path) -> None:
    """Cx MAR/MAA (Experimental-Result, SIP-Digest-Authenticate, a Failed-AVP of 3GPP's) and
    Flow B as Wireshark reads them. Its dictionary may lack Alternate-Digest-Algorithm/-HA1
    (662/663, TS 29.229 Rel-15: Wireshark 4.0 of Debian 12 does): those two, and only
    those, may then be reported unknown; their bytes are still framed right (no malformed
    AVP, and the SIP-Digest-Authenticate around them decodes)."""
    assert ha1_server.diameter_port is not None
    port = ha1_server.diameter_port
    pcap = tmp_path / "ha1.pcapng"
    with tshark.Capture(pcap, [port]), contextlib.closing(Client(port)) as client:
        _ha1_exchange(client)
    messages = tshark.decode(pcap, [port])
    assert len(messages) == client.sent + client.received == 18
    assert tshark.undecoded(pcap, [port]) == []
    known = tshark.dictionary(cx.VENDOR_3GPP)
    assert {601, 602, 607, 608, 612, 613, 635} <= known.keys()
    gaps = [code for code in (cx.AVP_ALTERNATE_DIGEST_ALGORITHM, cx.AVP_ALTERNATE_DIGEST_HA1) if code not in known]
    sha_answer = messages[3]
    found = tshark.problems(messages)
    assert found[: len(gaps)] == [
        f"{sha_answer.label}: AVP 612/635/{code} (vendor 10415) is not in Wireshark's dictionary" for code in gaps
    ]
    assert [p.partition(",")[0] for p in found[len(gaps) :]] == [
        f"{sha_answer.label}: Warning/Undecoded: Unknown AVP {code} (vendor=3GPP)" for code in gaps
    ]

    cea = messages[1]
    assert cea.value(base.AVP_SUPPORTED_VENDOR_ID) == "10415"
    assert cea.value(base.AVP_VENDOR_SPECIFIC_APPLICATION_ID, base.AVP_AUTH_APPLICATION_ID) == "16777216"
    mar = messages[2]
    assert (mar.command, mar.application_id, mar.proxiable) == ("Multimedia-Auth", 16777216, True)
    assert mar.value(cx.AVP_SIP_AUTH_DATA_ITEM, cx.AVP_SIP_AUTHENTICATION_SCHEME) == "SIP Digest"
    assert mar.value(cx.AVP_PUBLIC_IDENTITY) == "sip:alice@example.com"
    digest_path = (cx.AVP_SIP_AUTH_DATA_ITEM, cx.AVP_SIP_DIGEST_AUTHENTICATE)
    assert sha_answer.value(base.AVP_RESULT_CODE) == "2001"
    assert sha_answer.value(*digest_path, sip_app.AVP_DIGEST_ALGORITHM) == "MD5"
    assert sha_answer.value(*digest_path, sip_app.AVP_DIGEST_QOP) == "auth"
    assert len(sha_answer.value(*digest_path, sip_app.AVP_DIGEST_HA1) or "") == 32
    assert [a.code for a in sha_answer.avps if a.parents == digest_path] == [104, 111, 110, 121, 662, 663]
    md5_answer = messages[5]
    assert [a.code for a in md5_answer.avps if a.parents == digest_path] == [104, 111, 110, 121]
    unknown = messages[7]
    assert unknown.value(base.AVP_EXPERIMENTAL_RESULT, base.AVP_EXPERIMENTAL_RESULT_CODE) == "5001"
    assert unknown.value(base.AVP_RESULT_CODE) is None
    failed = messages[13]
    assert failed.value(base.AVP_FAILED_AVP, cx.AVP_SERVER_NAME) is not None
    flow_b = messages[15]
    item, authenticate = sip_app.AVP_SIP_AUTH_DATA_ITEM, sip_app.AVP_SIP_AUTHENTICATE
    assert [a.value for a in flow_b.find(item, sip_app.AVP_SIP_ITEM_NUMBER)] == ["1", "2"]
    assert [a.value for a in flow_b.find(item, authenticate, sip_app.AVP_DIGEST_ALGORITHM)] == ["SHA-256", "MD5"]
    assert [len(a.value or "") for a in flow_b.find(item, authenticate, sip_app.AVP_DIGEST_HA1)] == [64, 32]
