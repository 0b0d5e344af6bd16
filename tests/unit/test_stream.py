"""transport/stream: the blocking per-process connection, against tiny threaded TCP servers on 127.0.0.1."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fake_ksr import read_frame

from kamailio_auth_diameter.transport.stream import RequestTooLarge, StreamTransport, TransportError
from kamailio_auth_diameter.wire.framing import MAX_MESSAGE
from tests.fake_network import BlackHoleSocket, names

Handler = Callable[[socket.socket], None]


class TinyServer:
    """Accepts on 127.0.0.1:<OS port>; each connection runs ``handler(conn)`` in its own thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.closed = threading.Event()  # set when a handler returned and its connection was closed
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()
            self.closed.set()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def frame(tag: int, size: int = 24) -> bytes:
    """A framed message whose 5th byte identifies it."""
    return bytes([1]) + size.to_bytes(3, "big") + bytes([tag]) + b"\0" * (size - 5)


def accept_tag(tag: int) -> Callable[[bytes], bytes | None]:
    return lambda f: f if f[4] == tag else None


def echo(conn: socket.socket) -> None:
    while (req := read_frame(conn)) is not None:
        conn.sendall(req)


@pytest.fixture
def servers() -> Iterator[list[TinyServer]]:
    made: list[TinyServer] = []
    yield made
    for s in made:
        s.close()


def start(servers: list[TinyServer], handler: Handler) -> TinyServer:
    s = TinyServer(handler)
    servers.append(s)
    return s


def transport_for(port: int, connect_ms: int = 500, reconnect_ms: int = 1000) -> StreamTransport:
    t = StreamTransport()
    t.configure("127.0.0.1", port, connect_ms, reconnect_ms)
    return t


def free_port() -> int:
    """A port nobody listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_normal_exchange(servers: list[TinyServer]) -> None:
    srv = start(servers, echo)
    t = transport_for(srv.port)
    assert t.exchange(frame(7), time.monotonic(), 2, accept_tag(7)) == frame(7)
    assert t.connected
    assert t.exchange(frame(8), time.monotonic(), 2, accept_tag(8)) == frame(8)
    assert srv.accepted == 1  # the connection is reused


def test_answer_in_two_pieces_300ms_apart(servers: list[TinyServer]) -> None:  # C bug B8
    def handler(conn: socket.socket) -> None:
        req = read_frame(conn)
        assert req is not None
        conn.sendall(req[:10])
        time.sleep(0.3)
        conn.sendall(req[10:])
        read_frame(conn)

    t = transport_for(start(servers, handler).port)
    assert t.exchange(frame(3), time.monotonic(), 2, accept_tag(3)) == frame(3)


def test_stale_answer_then_the_right_one(servers: list[TinyServer]) -> None:
    def handler(conn: socket.socket) -> None:
        req = read_frame(conn)
        assert req is not None
        conn.sendall(frame(99) + frame(98, 40))
        time.sleep(0.05)
        conn.sendall(req)
        read_frame(conn)

    seen: list[int] = []

    def accept(f: bytes) -> bytes | None:
        seen.append(f[4])
        return f if f[4] == 5 else None

    t = transport_for(start(servers, handler).port)
    assert t.exchange(frame(5), time.monotonic(), 2, accept) == frame(5)
    assert seen == [99, 98, 5]


def test_timeout_ends_at_the_deadline_and_closes_the_connection(servers: list[TinyServer]) -> None:
    def silent(conn: socket.socket) -> None:
        while read_frame(conn) is not None:
            pass

    srv = start(servers, silent)
    t = transport_for(srv.port, reconnect_ms=10_000)
    started = time.monotonic()
    with pytest.raises(TransportError, match="deadline"):
        t.exchange(frame(1), started, 0.3, accept_tag(1))
    elapsed = time.monotonic() - started
    assert 0.29 <= elapsed < 0.3 + 0.5
    assert not t.connected  # a late answer must not be taken for the next request's


def test_after_reconnect_interval_it_connects_again(servers: list[TinyServer]) -> None:
    now = [1000.0]
    srv = start(servers, echo)
    t = StreamTransport(clock=lambda: now[0])
    t.configure("127.0.0.1", free_port(), 500, 1000)
    with pytest.raises(TransportError):
        t.exchange(frame(1), now[0], 2, accept_tag(1))
    t.configure("127.0.0.1", srv.port, 500, 1000)  # a new address clears the down mark
    assert t.exchange(frame(1), now[0], 2, accept_tag(1)) == frame(1)

    t2 = StreamTransport(clock=lambda: now[0])
    port = free_port()
    t2.configure("127.0.0.1", port, 500, 1000)
    with pytest.raises(TransportError, match="connect"):
        t2.exchange(frame(1), now[0], 2, accept_tag(1))
    now[0] += 0.5
    with pytest.raises(TransportError, match="marked down"):
        t2.exchange(frame(1), now[0], 2, accept_tag(1))
    now[0] += 0.6
    with pytest.raises(TransportError, match="connect to"):  # a real attempt again
        t2.exchange(frame(1), now[0], 2, accept_tag(1))


def test_connection_refused_is_fast() -> None:
    t = transport_for(free_port(), connect_ms=5000)
    started = time.monotonic()
    with pytest.raises(TransportError, match="connect"):
        t.exchange(frame(1), started, 5, accept_tag(1))
    assert time.monotonic() - started < 2.5  # refused at once, not after the 5 s connect timeout
    assert not t.connected


def test_unconfigured_transport_fails() -> None:
    with pytest.raises(TransportError):
        StreamTransport().exchange(frame(1), time.monotonic(), 1, accept_tag(1))


def test_server_closes_between_requests_then_reconnects(servers: list[TinyServer]) -> None:
    def one_shot(conn: socket.socket) -> None:
        req = read_frame(conn)
        if req is not None:
            conn.sendall(req)

    srv = start(servers, one_shot)
    t = transport_for(srv.port)
    assert t.exchange(frame(1), time.monotonic(), 2, accept_tag(1)) == frame(1)
    assert srv.closed.wait(2)
    sock = t._sock  # wait until the FIN has reached us, so the test is deterministic
    assert sock is not None
    assert select.select([sock], [], [], 2)[0]
    assert t.exchange(frame(2), time.monotonic(), 2, accept_tag(2)) == frame(2)
    assert srv.accepted == 2


def test_server_closes_without_answering(servers: list[TinyServer]) -> None:
    def rude(conn: socket.socket) -> None:
        read_frame(conn)

    t = transport_for(start(servers, rude).port)
    with pytest.raises(TransportError, match="closed"):
        t.exchange(frame(1), time.monotonic(), 2, accept_tag(1))
    assert not t.connected


@pytest.mark.parametrize(
    "garbage",
    [b"\x02\x00\x00\x18" + b"\0" * 20, b"\x01\x00\x00\x05xxxx", b"\x01\xff\xff\xff" + b"\0" * 16],
)
def test_garbage_frame_closes_the_socket(servers: list[TinyServer], garbage: bytes) -> None:
    def handler(conn: socket.socket) -> None:
        if read_frame(conn) is not None:
            conn.sendall(garbage)
            read_frame(conn)

    srv = start(servers, handler)
    t = transport_for(srv.port)
    with pytest.raises(TransportError, match="framing"):
        t.exchange(frame(1), time.monotonic(), 2, accept_tag(1))
    assert not t.connected


def test_accept_raising_value_error_closes_the_socket(servers: list[TinyServer]) -> None:
    def bad(_: bytes) -> bytes | None:
        raise ValueError("undecodable")

    t = transport_for(start(servers, echo).port)
    with pytest.raises(TransportError, match="undecodable"):
        t.exchange(frame(1), time.monotonic(), 2, bad)
    assert not t.connected


def test_configure_new_port_drops_old_connection(servers: list[TinyServer]) -> None:
    a = start(servers, echo)
    b = start(servers, echo)
    t = transport_for(a.port)
    t.exchange(frame(1), time.monotonic(), 2, accept_tag(1))
    assert t.connected
    t.configure("127.0.0.1", a.port, 500, 1000)  # unchanged address: connection kept
    assert t.connected
    t.configure("127.0.0.1", b.port, 500, 1000)
    assert not t.connected
    t.exchange(frame(2), time.monotonic(), 2, accept_tag(2))
    assert (a.accepted, b.accepted) == (1, 1)


def test_configure_converts_milliseconds() -> None:
    t = StreamTransport()
    t.configure("127.0.0.1", 1, 250, 1500)
    assert t.connect_timeout == 0.25
    assert t.reconnect_interval == 1.5


def test_deadline_already_passed_fails_without_connecting(servers: list[TinyServer]) -> None:
    srv = start(servers, echo)
    t = transport_for(srv.port)
    with pytest.raises(TransportError):
        t.exchange(frame(1), time.monotonic() - 1, 0.5, accept_tag(1))
    time.sleep(0.05)
    assert srv.accepted == 0


def test_stray_frame_between_requests_is_skipped(servers: list[TinyServer]) -> None:
    def handler(conn: socket.socket) -> None:
        while (req := read_frame(conn)) is not None:
            conn.sendall(req + frame(77))  # an extra, unsolicited frame after each answer

    seen: list[int] = []

    def accept(want: int) -> Callable[[bytes], bytes | None]:
        def inner(f: bytes) -> bytes | None:
            seen.append(f[4])
            return f if f[4] == want else None

        return inner

    srv = start(servers, handler)
    t = transport_for(srv.port)
    assert t.exchange(frame(1), time.monotonic(), 2, accept(1)) == frame(1)
    time.sleep(0.05)
    assert t.exchange(frame(2), time.monotonic(), 2, accept(2)) == frame(2)
    assert seen[:2] == [1, 77]
    assert seen[-1] == 2
    assert srv.accepted == 1


# --- deadlines whatever the network does -------------------------------------------


def test_two_black_hole_addresses_share_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """socket.create_connection gave each address the whole timeout: 2 s for a 1 s deadline."""
    names(monkeypatch, {"two-holes.stream.test": ["198.51.100.1", "198.51.100.2"]})
    BlackHoleSocket.waits = []
    monkeypatch.setattr(socket, "socket", BlackHoleSocket)
    t = StreamTransport()
    t.configure("two-holes.stream.test", 3000, 400, 1000)
    started = time.monotonic()
    with pytest.raises(TransportError, match="connect"):
        t.exchange(frame(1), started, 0.5, accept_tag(1))
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 0.6, elapsed
    assert len(BlackHoleSocket.waits) == 2
    assert BlackHoleSocket.waits[0] == pytest.approx(0.4)  # connect_timeout, then what is left
    assert BlackHoleSocket.waits[1] == pytest.approx(0.1, abs=0.03)


def test_a_resolver_that_does_not_answer_costs_no_more_than_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    names(monkeypatch, {}, slow={"dead-dns.stream.test": 2.0})
    t = StreamTransport()
    t.configure("dead-dns.stream.test", 3000, 500, 1000)
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"dead-dns\.stream\.test"):
        t.exchange(frame(1), started, 0.3, accept_tag(1))
    assert time.monotonic() - started < 0.45


def test_an_unanswered_request_does_not_fail_the_next_one(servers: list[TinyServer]) -> None:
    """Only a failed connect makes requests fail at once: after a timeout the next request
    reconnects and is sent, as the C module would have sent it."""
    stalled = threading.Event()

    def stall_once(conn: socket.socket) -> None:
        while (req := read_frame(conn)) is not None:
            if not stalled.is_set():
                stalled.set()
                continue  # the first request gets no answer
            conn.sendall(req)

    srv = start(servers, stall_once)
    t = transport_for(srv.port, reconnect_ms=10_000)
    with pytest.raises(TransportError, match="deadline"):
        t.exchange(frame(1), time.monotonic(), 0.2, accept_tag(1))
    assert t.exchange(frame(2), time.monotonic(), 2, accept_tag(2)) == frame(2)
    assert srv.accepted == 2


def test_a_request_over_the_frame_limit_is_refused_before_anything_is_sent(servers: list[TinyServer]) -> None:
    srv = start(servers, echo)
    t = transport_for(srv.port)
    assert t.exchange(frame(1), time.monotonic(), 2, accept_tag(1)) == frame(1)
    with pytest.raises(RequestTooLarge):
        t.exchange(frame(2, MAX_MESSAGE + 4), time.monotonic(), 2, accept_tag(2))
    assert t.connected  # the good connection stays
    assert t.exchange(frame(3), time.monotonic(), 2, accept_tag(3)) == frame(3)
    assert srv.accepted == 1


def test_an_answer_that_makes_the_decoder_raise_anything_is_a_transport_error(servers: list[TinyServer]) -> None:
    def recursing(_: bytes) -> bytes | None:
        raise RecursionError("maximum recursion depth exceeded")

    t = transport_for(start(servers, echo).port)
    with pytest.raises(TransportError, match="RecursionError"):
        t.exchange(frame(1), time.monotonic(), 2, recursing)
    assert not t.connected
