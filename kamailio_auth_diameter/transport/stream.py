"""A blocking, per-process TCP connection with deadlines, for Kamailio workers.

Kamailio 5.6 never lets Python threads run while a worker waits for SIP, so
there is no background reader: everything happens inside a request, bounded by
its deadline. Fixes relative to the C module: a lazy connect with a timeout
(Kamailio starts while the server is down, B10), the name lookup and every address
tried within the deadline (:mod:`.resolve`); reads until a whole message or the
deadline (B8); any transport error closes the socket (B9); after a failed connect,
requests fail at once for ``reconnect_interval`` instead of each waiting out its own
timeout. An unanswered request does not: the server is up, one answer was late, and
the next request reconnects and is sent, as the C module would have sent it.

The common exchange costs two system calls, a non-blocking send and one blocking
receive bounded by SO_RCVTIMEO (the C module needs about six). Python's own socket
timeouts would add a poll before every call and an ioctl per change, so the socket
stays in blocking mode and the kernel enforces the deadline.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import TypeVar

from .. import metrics
from ..metrics import Events, no_events
from ..wire.framing import MAX_MESSAGE, Framer, FramingError
from .resolve import DEFAULT_RESOLVER, Resolver, connect

T = TypeVar("T")

# When the exchange starts later than this after the request began (a connect, a
# retry), the receive timeout is set to exactly what is left of the deadline.
_SLACK = 0.001
_GONE = (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED)


def set_receive_timeout(sock: socket.socket, seconds: float) -> None:
    """SO_RCVTIMEO on a blocking socket: the kernel ends a receive that waits longer."""
    sec = int(seconds)
    usec = max(int((seconds - sec) * 1e6), 1 if sec == 0 else 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", sec, usec))


def send_by(sock: socket.socket, data: bytes, deadline: float, clock: Callable[[], float]) -> bool:
    """Send all of ``data`` without blocking: one send in the usual case, and for the rare
    partial send a wait for room that never passes the deadline. False if it did pass;
    OSError as the socket raised it."""
    try:
        done = sock.send(data, socket.MSG_DONTWAIT)
    except BlockingIOError:
        done = 0
    view = memoryview(data)[done:]
    while view:
        remaining = deadline - clock()
        if remaining <= 0 or not select.select([], [sock], [], remaining)[1]:
            return False
        try:
            view = view[sock.send(view, socket.MSG_DONTWAIT) :]
        except BlockingIOError:
            continue
    return True


class TransportError(Exception):
    """The exchange failed; the message says why, for the log."""


class RequestTooLarge(TransportError):
    """Our own request is longer than a Diameter frame may be (MAX_MESSAGE): it is never
    sent, and no connection or peer is blamed for it. The SIP request that produced it
    is the client's fault (a huge header), so the plugin answers 400."""


class _PeerGone(Exception):
    """The peer closed or reset the connection before any answer arrived."""


class StreamTransport:
    """``events`` hears of connects, failed connects, the server going down and coming
    back, timeouts and each answer's round-trip time (metrics.py's events)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, events: Events = no_events) -> None:
        self._clock = clock
        self._events = events
        self._opened = 0  # connections opened to this address: any after the first is a reconnect
        self._up: bool | None = None  # whether the server was reachable at the last connect (None: not tried)
        self._sock: socket.socket | None = None
        self._framer = Framer()
        self._address: tuple[str, int] | None = None
        self._failed_at: float | None = None  # when a connect last failed
        self._rcvtimeo = 0.0  # the SO_RCVTIMEO currently set on the socket
        self.connect_timeout = 0.5
        self.reconnect_interval = 1.0
        self.resolver: Resolver = DEFAULT_RESOLVER

    def configure(self, host: str, port: int, connect_timeout_ms: int, reconnect_interval_ms: int) -> None:
        """Apply (possibly changed) settings; a new address drops the old connection."""
        if (host, port) != self._address:
            self.close()
            self._address = (host, port)
            self._failed_at = None
            self._opened, self._up = 0, None
        self.connect_timeout = connect_timeout_ms / 1000.0
        self.reconnect_interval = reconnect_interval_ms / 1000.0

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._framer.clear()

    def _fail(self, why: str) -> TransportError:
        self.close()
        return TransportError(why)

    def _connect(self, deadline: float) -> socket.socket:
        if self._address is None:
            raise TransportError("transport not configured")
        now = self._clock()
        if self._failed_at is not None and now - self._failed_at < self.reconnect_interval:
            raise TransportError(
                f"server {self._address[0]}:{self._address[1]} is marked down after a failure; "
                "failing at once until reconnect_interval has passed"
            )
        if deadline <= now:
            raise TransportError("deadline passed before connecting")
        host, port = self._address
        try:
            sock = connect(self.resolver, host, port, deadline, self.connect_timeout, self._clock)
        except OSError as exc:
            self._failed_at = self._clock()
            self._events(metrics.CONNECT_FAILED)
            if self._up is not False:
                self._up = False
                self._events(metrics.PEER_DOWN)
            raise TransportError(f"connect to {host}:{port} failed: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)  # blocking; the kernel's SO_RCVTIMEO bounds every receive
        except OSError as exc:
            sock.close()
            self._events(metrics.CONNECT_FAILED)
            raise TransportError(f"connect to {host}:{port} failed: {exc}") from None
        self._sock = sock
        self._rcvtimeo = 0.0
        self._failed_at = None
        self._events(metrics.RECONNECT if self._opened else metrics.CONNECT)
        self._opened += 1
        if self._up is not True:
            self._up = True
            self._events(metrics.PEER_UP)
        return sock

    def _set_rcvtimeo(self, sock: socket.socket, seconds: float) -> None:
        if seconds != self._rcvtimeo:
            set_receive_timeout(sock, seconds)
            self._rcvtimeo = seconds

    def exchange(self, request: bytes, start: float, timeout: float, accept: Callable[[bytes], T | None]) -> T:
        """Send ``request`` and return ``accept(frame)`` for the first frame it does not reject.

        The deadline is ``start + timeout``. ``accept`` returns None for a stale frame
        (another request's answer) and may raise ValueError for a malformed one; that and
        any transport failure close the socket. A connection the server closed while it
        sat idle (a restart) is replaced and the request sent once more. RequestTooLarge,
        before anything is sent, for a request no Diameter frame can hold.
        """
        if len(request) > MAX_MESSAGE:
            raise RequestTooLarge(f"the request has {len(request)} bytes, more than the {MAX_MESSAGE} a frame may")
        deadline = start + timeout
        sock = self._sock
        if sock is not None:
            try:
                return self._send_and_wait(sock, request, start, timeout, deadline, accept)
            except _PeerGone:
                self.close()  # the server went away while we were idle: one fresh try
        sock = self._connect(deadline)
        try:
            return self._send_and_wait(sock, request, start, timeout, deadline, accept)
        except _PeerGone:
            raise self._fail("server closed the connection") from None

    def _send_and_wait(
        self,
        sock: socket.socket,
        request: bytes,
        start: float,
        timeout: float,
        deadline: float,
        accept: Callable[[bytes], T | None],
    ) -> T:
        sent_at = self._clock()
        try:
            if not send_by(sock, request, deadline, self._clock):
                self._events(metrics.TIMEOUT)
                raise self._fail("could not send the request before the deadline")
        except OSError as exc:
            if exc.errno in _GONE:
                raise _PeerGone from None
            raise self._fail(f"send failed: {exc}") from None
        framer = self._framer
        received = False
        while True:
            try:
                frame = framer.next_message()
            except FramingError as exc:
                raise self._fail(f"bad answer framing: {exc}") from None
            if frame is not None:
                try:
                    result = accept(frame)
                except ValueError as exc:
                    raise self._fail(f"bad answer: {exc}") from None
                except Exception as exc:  # noqa: BLE001 - hostile bytes end as a TransportError, whatever broke
                    raise self._fail(f"unreadable answer ({type(exc).__name__}: {exc})") from None
                if result is not None:
                    self._events(metrics.ANSWER, self._clock() - sent_at)
                    return result
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._events(metrics.TIMEOUT)
                raise self._fail("no answer before the deadline")
            try:
                # the usual case: the whole answer timeout, set once and left on the socket
                self._set_rcvtimeo(sock, timeout if deadline - remaining - start < _SLACK else remaining)
                data = sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                self._events(metrics.TIMEOUT)
                raise self._fail("no answer before the deadline") from None
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in _GONE and not received:
                    raise _PeerGone from None
                raise self._fail(f"receive failed: {exc}") from None
            if not data:
                if not received:
                    raise _PeerGone
                raise self._fail("server closed the connection")
            received = True
            framer.feed(data)
