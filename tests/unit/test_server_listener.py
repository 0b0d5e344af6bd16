"""server/listener over real sockets on 127.0.0.1: back-pressure, timeouts, caps and eviction,
``--allow`` before any TLS handshake, running out of file descriptors; both listeners on one guard."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server import listener
from kamailio_auth_diameter.server.app import LegacyServer, serve
from kamailio_auth_diameter.server.auth import LegacyAuthority, SipAuthority
from kamailio_auth_diameter.server.diameter import DiameterResponder, serve_diameter, server_tls_context
from kamailio_auth_diameter.server.limits import Limits
from kamailio_auth_diameter.server.listener import Guard, bind
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.wire import base, legacy, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.framing import MAX_MESSAGE, Framer
from tests.tlsca import make_pki

ME = Identity("aaa.test", "test")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "auth.sqlite"))
    s.add_group("alice", "voicemail")
    yield s
    s.close()


def group_request(msgid: int) -> bytes:
    return legacy.encode_group_request("example.com", msgid, "voicemail", b"alice")


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, msgid: int) -> int:
    """One request and its answer's SIP-MSGID, as a Kamailio worker does it."""
    writer.write(group_request(msgid))
    head = await asyncio.wait_for(reader.readexactly(4), 5)
    raw = head + await asyncio.wait_for(reader.readexactly(int.from_bytes(head[1:4], "big") - 4), 5)
    return legacy.decode_answer(raw).msgid


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def run_legacy(
    store: SqliteStore, guard: Guard, body: Callable[[LegacyServer, int], Awaitable[None]]
) -> LegacyServer:
    server = LegacyServer(LegacyAuthority(store, NonceFactory(store.nonce_secret())), ME)
    sock = bind("127.0.0.1", 0, False)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(server, sock, stop, guard))
    try:
        await body(server, sock.getsockname()[1])
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        guard.stop()
    return server


async def small_window_connection(port: int) -> socket.socket:
    """A client socket whose kernel takes few answers before the server has to wait for it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


def test_a_client_that_never_reads_is_not_answered_past_the_high_water_mark(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """It makes the server hold at most the high-water mark of answers (plus what the
    kernel buffers), and is closed when it leaves them unread for the message timeout."""
    sent = []
    answered = []

    async def body(server: LegacyServer, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = await small_window_connection(port)
        batch = b"".join(group_request(i) for i in range(1000))
        deadline = loop.time() + 10
        with pytest.raises(OSError):  # the server gave up on it: reset
            while loop.time() < deadline:
                await asyncio.wait_for(loop.sock_sendall(sock, batch), 10)
                sent.append(1000)
                answered.append(server.stats.requests)
        sock.close()

    server = asyncio.run(run_legacy(store, Guard(Limits(message_timeout=1.0), []), body))
    assert server.stats.timed_out == 1
    assert "our answers not read for 1 s (--message-timeout)" in caplog.text
    assert sum(sent) > 20_000  # 3 MB of answers, had they all been made
    assert server.stats.requests < 4_000, (sum(sent), answered[-5:])


def test_held_messages_are_answered_once_the_client_reads_again(store: SqliteStore) -> None:
    """Reading stops and so does answering what was already read; both resume at the low-water mark."""
    requests = 10_000

    async def body(server: LegacyServer, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = await small_window_connection(port)
        await loop.sock_sendall(sock, b"".join(group_request(i) for i in range(requests)))
        await asyncio.sleep(0.3)
        assert server.stats.requests < requests
        framer, answers = Framer(), 0
        while answers < requests:
            framer.feed(await asyncio.wait_for(loop.sock_recv(sock, 65536), 5))
            while (raw := framer.next_message()) is not None:
                assert legacy.decode_answer(raw).msgid == answers
                answers += 1
        assert server.stats.requests == requests
        sock.close()

    asyncio.run(run_legacy(store, Guard(Limits(message_timeout=5.0), []), body))


def test_a_connection_closed_with_answers_unread_is_cut_off_after_the_message_timeout(store: SqliteStore) -> None:
    """Requests, then garbage: the server answers, then closes; a client that never reads
    those answers would keep the closing connection (and its buffer) for ever."""

    async def body(server: LegacyServer, port: int) -> None:
        loop = asyncio.get_running_loop()
        sock = await small_window_connection(port)
        await loop.sock_sendall(sock, b"".join(group_request(i) for i in range(1000)) + b"\x07garbage")
        await asyncio.sleep(2.0)
        assert server.stats.requests == 1000  # all answered: it never had to pause
        assert server.stats.timed_out == 1
        sock.close()

    asyncio.run(run_legacy(store, Guard(Limits(message_timeout=1.0), []), body))


def test_a_message_begun_and_not_finished_is_closed_after_the_message_timeout(store: SqliteStore) -> None:
    async def body(server: LegacyServer, port: int) -> None:
        half = asyncio.open_connection("127.0.0.1", port)
        r1, w1 = await half
        w1.write(b"\x01" + MAX_MESSAGE.to_bytes(4, "big")[1:] + b"\x80" + b"\0" * 30_000)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)  # idle, but nothing begun: stays
        assert await closed_by_server(r1, 2.0)
        assert await ask(r2, w2, 7) == 7
        assert server.stats.timed_out == 1
        w1.close()
        w2.close()

    asyncio.run(run_legacy(store, Guard(Limits(message_timeout=0.5), []), body))


def test_idle_timeout_closes_only_the_silent(store: SqliteStore) -> None:
    async def body(server: LegacyServer, port: int) -> None:
        rq, wq = await asyncio.open_connection("127.0.0.1", port)
        rb, wb = await asyncio.open_connection("127.0.0.1", port)
        for i in range(8):
            await asyncio.sleep(0.2)
            assert await ask(rb, wb, i) == i
        assert await closed_by_server(rq, 0.1)
        assert await ask(rb, wb, 9) == 9
        assert server.stats.timed_out == 1
        wq.close()
        wb.close()

    asyncio.run(run_legacy(store, Guard(Limits(idle_timeout=1.0, message_timeout=0.5), []), body))


def test_past_the_cap_the_quietest_connection_makes_room_and_workers_stay(store: SqliteStore) -> None:
    async def body(server: LegacyServer, port: int) -> None:
        workers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for n, (r, w) in enumerate(workers):
            assert await ask(r, w, n) == n
        attacker = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        for n, (r, w) in enumerate(workers):  # never evicted: the silent make room for each other
            assert await ask(r, w, 10 + n) == 10 + n
            attacker.append(await asyncio.open_connection("127.0.0.1", port))
        assert all([await closed_by_server(r, 2) for r, _ in idle])
        closed = [await closed_by_server(r, 0.5) for r, _ in attacker]
        assert closed.count(False) == 3  # 5 held: the 2 workers and the 3 newest
        assert server.stats.evicted == 12
        for _, w in workers + idle + attacker:
            w.close()

    asyncio.run(run_legacy(store, Guard(Limits(max_connections=5, max_per_address=5), []), body))


def test_both_listeners_share_one_cap(store: SqliteStore) -> None:
    """A Diameter connection and a legacy one count against the same per-address cap."""
    responder = DiameterResponder(SipAuthority(store, NonceFactory(store.nonce_secret())), ME, None, 1)

    async def scenario() -> None:
        guard = Guard(Limits(max_connections=10, max_per_address=2), [])
        server = LegacyServer(LegacyAuthority(store, NonceFactory(store.nonce_secret())), ME)
        stop = asyncio.Event()
        lsock, dsock = bind("127.0.0.1", 0, False), bind("127.0.0.1", 0, False)
        tasks = [
            asyncio.create_task(serve(server, lsock, stop, guard)),
            asyncio.create_task(serve_diameter(responder, dsock, stop, guard=guard)),
        ]
        dr, dw = await asyncio.open_connection(*dsock.getsockname())
        await asyncio.sleep(0.05)
        lr, lw = await asyncio.open_connection(*lsock.getsockname())
        assert await ask(lr, lw, 1) == 1
        r3, w3 = await asyncio.open_connection(*lsock.getsockname())  # evicts the silent Diameter one
        assert await closed_by_server(dr, 2)
        assert responder.stats.evicted == 1 and server.stats.evicted == 0
        assert await ask(r3, w3, 2) == 2
        for w in (dw, lw, w3):
            w.close()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        guard.stop()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    return server_tls_context(str(pki.server_cert), str(pki.server_key))


def _diameter_tls(store: SqliteStore, tls: ssl.SSLContext, guard: Guard, body: Callable[[int], Awaitable[None]]):
    responder = DiameterResponder(SipAuthority(store, NonceFactory(store.nonce_secret())), ME, None, 1)

    async def scenario() -> None:
        sock = bind("127.0.0.1", 0, False)
        stop = asyncio.Event()
        task = asyncio.create_task(serve_diameter(responder, sock, stop, tls, guard))
        try:
            await body(sock.getsockname()[1])
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            guard.stop()

    asyncio.run(scenario())
    return responder


def test_allow_is_checked_before_the_tls_handshake(store: SqliteStore, tls: ssl.SSLContext) -> None:
    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # says nothing, not even ClientHello
        assert await closed_by_server(reader, 1.0)
        writer.close()

    responder = _diameter_tls(store, tls, Guard(Limits(), [ipaddress.ip_network("10.0.0.0/8")]), body)
    assert responder.stats.refused == 1


def test_a_tls_handshake_not_finished_in_time_is_closed(store: SqliteStore, tls: ssl.SSLContext) -> None:
    async def body(port: int) -> None:
        stuck_r, stuck_w = await asyncio.open_connection("127.0.0.1", port)
        client = ssl.create_default_context()
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        caps = Capabilities(Identity("kamailio.test", "test"), ("127.0.0.1",), (6,))
        w.write(base.encode_cer(caps, 1, 1))
        head = await asyncio.wait_for(r.readexactly(20), 5)
        assert head[5:8] == (257).to_bytes(3, "big")
        assert await closed_by_server(stuck_r, 2.0)
        stuck_w.close()
        w.close()

    responder = _diameter_tls(store, tls, Guard(Limits(message_timeout=0.5), []), body)
    assert responder.stats.timed_out == 1


def test_a_tls_client_that_never_reads_is_held_to_the_high_water_mark_too(
    store: SqliteStore, tls: ssl.SSLContext
) -> None:
    """asyncio's TLS transport has flow control of its own; the same bounds hold through it."""
    mar = sip_app.MultimediaAuthRequest(
        session_id="k;1;1", origin_host="kamailio.test", origin_realm="test", destination_realm="test",
        sip_aor="sip:alice@example.com", sip_method="REGISTER", user_name=None, server_uri="sip:k.test",
        credentials=None,
    )  # fmt: skip
    batch = b"".join(sip_app.encode_mar(mar, i, i) for i in range(500))
    sent = []

    def client(port: int) -> None:
        """A blocking client, in a thread: the server runs in this test's event loop."""
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", port))
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(raw) as sock:
            caps = Capabilities(Identity("kamailio.test", "test"), ("127.0.0.1",), (6,))
            sock.sendall(base.encode_cer(caps, 1, 1))
            sock.settimeout(2.0)
            try:
                while len(sent) < 200:
                    sock.sendall(batch)
                    sent.append(500)
            except OSError:  # the server gave up on it, or a send could not progress for 2 s
                pass
            time.sleep(1.5)

    async def body(port: int) -> None:
        await asyncio.get_running_loop().run_in_executor(None, client, port)

    responder = _diameter_tls(store, tls, Guard(Limits(message_timeout=1.0), []), body)
    assert responder.stats.timed_out == 1
    assert sum(sent) >= 5_000
    assert responder.stats.requests < sum(sent) / 2, (responder.stats.requests, sum(sent))


def test_out_of_descriptors_at_accept_evicts_the_quietest_and_backs_off(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    async def body(server: LegacyServer, port: int) -> None:
        loop = asyncio.get_running_loop()
        ri, wi = await asyncio.open_connection("127.0.0.1", port)
        rw, ww = await asyncio.open_connection("127.0.0.1", port)
        assert await ask(rw, ww, 1) == 1
        real_accept = loop.sock_accept
        failures = iter([True])

        async def sock_accept(sock: socket.socket) -> tuple[socket.socket, object]:
            calls.append(loop.time())
            if next(failures, False):
                raise OSError(errno.EMFILE, "Too many open files")
            return await real_accept(sock)

        monkeypatch.setattr(loop, "sock_accept", sock_accept)
        _, w0 = await asyncio.open_connection("127.0.0.1", port)  # accepted by the accept already waiting
        assert await closed_by_server(ri, 2)  # the next accept failed: the quietest went
        r3, w3 = await asyncio.open_connection("127.0.0.1", port)
        assert await ask(r3, w3, 3) == 3
        assert await ask(rw, ww, 2) == 2
        for w in (wi, ww, w0, w3):
            w.close()

    monkeypatch.setattr(listener, "FD_BACKOFF", 0.2)
    server = asyncio.run(run_legacy(store, Guard(Limits(), []), body))
    assert server.stats.evicted == 1
    assert calls[1] - calls[0] >= 0.2  # it waited before trying again instead of spinning
