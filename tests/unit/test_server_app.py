"""server/app: LegacyServer answers in DISC shape; LegacyProtocol over a real asyncio server on port 0;
``--allow`` (listener.address_allowed)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import authorize
from kamailio_auth_diameter.backend import legacy as legacy_backend
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.app import LegacyServer, serve
from kamailio_auth_diameter.server.auth import LegacyAuthority
from kamailio_auth_diameter.server.limits import Limits
from kamailio_auth_diameter.server.listener import LOOPBACK, Guard, address_allowed, bind
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy
from kamailio_auth_diameter.wire.base import Identity


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "auth.sqlite"))
    s.add_user("alice", "example.com", "pw")
    s.add_group("alice", "voicemail")
    yield s
    s.close()


def make_server(store: SqliteStore) -> LegacyServer:
    authority = LegacyAuthority(store, NonceFactory(store.nonce_secret()))
    return LegacyServer(authority, Identity("aaa.test", "test"))


def group_request(msgid: int, user: bytes = b"alice") -> bytes:
    return legacy.encode_group_request("example.com", msgid, "voicemail", user)


def auth_request(msgid: int) -> bytes:
    return legacy.encode_auth_request(
        parse_uri("sip:example.com"), parse_uri("sip:alice@example.com"), msgid, None, "REGISTER"
    )


def test_answer_echoes_service_and_msgid_first(store: SqliteStore) -> None:
    server = make_server(store)
    raw = server.answer(auth_request(0x0A0B0C0D))
    msg = legacy.decode_message(raw)
    assert not msg.is_request
    assert msg.command == 265
    codes = [a[0] for a in msg.avps]
    assert codes[:2] == [404, 406]
    assert codes == [404, 406, 263, 268, 264, 296, 402]
    assert msg.avps[0] == (404, 0, b"6")
    assert msg.avps[1] == (406, 0, b"\x0d\x0c\x0b\x0a")
    assert raw[20 + 12 + 4] == 0x00  # SIP-MSGID flags
    assert msg.first(264) == b"aaa.test"
    assert msg.first(296) == b"test"
    answer = legacy.decode_answer(raw)
    assert answer.msgid == 0x0A0B0C0D
    assert legacy_backend.verdict(answer) is authorize.Result.CHALLENGE


def test_group_answer(store: SqliteStore) -> None:
    server = make_server(store)
    answer = legacy.decode_answer(server.answer(group_request(9)))
    assert (answer.msgid, answer.service, answer.result_code, answer.challenge) == (9, b"8", 2001, None)
    answer = legacy.decode_answer(server.answer(group_request(10, b"bob")))
    assert answer.result_code == 4001


def test_answer_echoes_identifiers(store: SqliteStore) -> None:
    req = bytearray(group_request(1))
    req[12:20] = bytes.fromhex("1122334455667788")
    msg = legacy.decode_message(make_server(store).answer(bytes(req)))
    assert (msg.hop_by_hop, msg.end_to_end) == (0x11223344, 0x55667788)


def test_session_ids_are_unique(store: SqliteStore) -> None:
    server = make_server(store)
    ids = {legacy.decode_message(server.answer(group_request(i))).first(263) for i in range(5)}
    assert len(ids) == 5


def test_stats(store: SqliteStore) -> None:
    server = make_server(store)
    server.answer(group_request(1))
    server.answer(group_request(2, b"bob"))
    server.answer(auth_request(3))
    assert server.stats.requests == 3
    assert server.stats.by_result == {2001: 1, 4001: 2}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            legacy.encode_message([legacy._avp(404, b"8"), legacy._avp(1, b"alice")], request=True), id="no msgid"
        ),
        pytest.param(legacy.encode_message([legacy._avp(406, b"\1\0\0\0", 0)], request=True), id="no service"),
        pytest.param(
            legacy.encode_answer(
                service=b"8", msgid=b"\1\0\0\0", result_code=2001, session_id=b"s", origin_host=b"h", origin_realm=b"r"
            ),
            id="an answer, not a request",
        ),
        pytest.param(b"\x01\x00\x00\x18" + b"\0" * 20, id="undecodable"),
    ],
)
def test_unanswerable_requests_raise(store: SqliteStore, raw: bytes) -> None:
    with pytest.raises(legacy.LegacyError):
        make_server(store).answer(raw)


def test_allowed_loopback() -> None:
    allow = list(LOOPBACK)
    assert address_allowed("127.0.0.1", allow)
    assert address_allowed("127.9.9.9", allow)
    assert address_allowed("::1", allow)
    assert address_allowed("::ffff:127.0.0.1", allow)
    assert not address_allowed("10.0.0.1", allow)
    assert not address_allowed("::ffff:10.0.0.1", allow)
    assert not address_allowed("2001:db8::1", allow)
    assert not address_allowed("", allow)
    assert not address_allowed("not-an-ip", allow)


def test_allowed_with_scope_and_networks() -> None:
    allow = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fe80::/10")]
    assert address_allowed("10.1.2.3", allow)
    assert address_allowed("::ffff:10.1.2.3", allow)
    assert address_allowed("fe80::1%eth0", allow)
    assert not address_allowed("127.0.0.1", allow)
    assert not address_allowed("11.0.0.1", allow)


def test_ipv4_mapped_clients_are_in_ipv6_networks_that_hold_them() -> None:
    """A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: ``--allow ::/0`` means them too."""
    assert address_allowed("::ffff:10.1.2.3", [ipaddress.ip_network("::/0")])
    assert address_allowed("::ffff:10.1.2.3", [ipaddress.ip_network("::ffff:0:0/96")])
    assert not address_allowed("::ffff:10.1.2.3", [ipaddress.ip_network("2001:db8::/32")])
    assert not address_allowed("10.1.2.3", [ipaddress.ip_network("::/0")])
    assert address_allowed("2001:db8::1", [ipaddress.ip_network("::/0")])


def test_empty_allow_list_allows_all() -> None:
    assert address_allowed("203.0.113.7", [])
    assert address_allowed("", [])


# --- LegacyProtocol over a real asyncio server ------------------------------------------


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(4)
    return head + await reader.readexactly(int.from_bytes(head[1:4], "big") - 4)


async def with_server(server: LegacyServer, body: Callable[[int], Awaitable[None]], guard: Guard | None = None) -> None:
    sock = bind("127.0.0.1", 0, False)
    port = sock.getsockname()[1]
    stop = asyncio.Event()
    task = asyncio.create_task(serve(server, sock, stop, guard))
    try:
        await body(port)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\x02\x00\x00\x14" + b"\0" * 16, id="bad version"),
        pytest.param(b"\x01\x00\x00\x04", id="length below header"),
        pytest.param(b"\x01\x01\x00\x01", id="length above 65536"),
        pytest.param(legacy.encode_message([legacy._avp(404, b"8")], request=True), id="no SIP-MSGID"),
        pytest.param(b"\x01\x00\x00\x1c" + b"\0" * 16 + b"\0\0\0\x01\x40\0\0\x02", id="bad AVP length"),
    ],
)
def test_garbage_closes_only_that_connection(store: SqliteStore, garbage: bytes) -> None:
    server = make_server(store)

    async def body(port: int) -> None:
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(group_request(1))
        assert legacy.decode_answer(await asyncio.wait_for(read_frame(r2), 5)).msgid == 1

        w1.write(garbage)
        assert await asyncio.wait_for(r1.read(), 5) == b""  # closed by the server

        w2.write(group_request(2))
        answer = legacy.decode_answer(await asyncio.wait_for(read_frame(r2), 5))
        assert (answer.msgid, answer.result_code) == (2, 2001)
        for w in (w1, w2):
            w.close()

    asyncio.run(with_server(server, body))


def test_pipelined_requests_then_garbage(store: SqliteStore) -> None:
    server = make_server(store)

    async def body(port: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(group_request(1) + group_request(2, b"bob") + b"\x07garbage")
        data = await asyncio.wait_for(r.read(), 5)  # the answers, then EOF
        first = legacy.decode_answer(data[: int.from_bytes(data[1:4], "big")])
        second = legacy.decode_answer(data[int.from_bytes(data[1:4], "big") :])
        assert (first.msgid, first.result_code) == (1, 2001)
        assert (second.msgid, second.result_code) == (2, 4001)
        w.close()

    asyncio.run(with_server(server, body))


def test_request_split_into_bytes(store: SqliteStore) -> None:
    server = make_server(store)

    async def body(port: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for b in group_request(5):
            w.write(bytes([b]))
            await w.drain()
        answer = legacy.decode_answer(await asyncio.wait_for(read_frame(r), 5))
        assert answer.msgid == 5
        w.close()

    asyncio.run(with_server(server, body))


def test_refused_by_allow_list(store: SqliteStore) -> None:
    server = make_server(store)

    async def body(port: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(group_request(1))
        try:
            data = await asyncio.wait_for(r.read(), 5)
        except ConnectionResetError:
            data = b""
        assert data == b""
        assert server.stats.refused == 1
        assert server.stats.connections == 0
        assert server.stats.requests == 0
        w.close()

    asyncio.run(with_server(server, body, Guard(Limits(), [ipaddress.ip_network("192.0.2.0/24")])))
