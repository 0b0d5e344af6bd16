"""A blocking, per-process TCP connection with deadlines, for Kamailio workers.

Kamailio 5.6 never lets Python threads run while a worker waits for SIP, so
there is no background reader: everything happens inside a request, bounded by
its deadline. Fixes relative to the C module: a lazy connect with a timeout
(Kamailio starts while the server is down, B10); reads until a whole message or
the deadline (B8); any transport error closes the socket (B9); after a failed
connect or an unanswered request, requests fail at once for ``reconnect_interval``
instead of each waiting out its own timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

from ..wire.framing import Framer, FramingError

T = TypeVar("T")


class TransportError(Exception):
    """The exchange failed; the message says why, for the log."""


class StreamTransport:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sock: socket.socket | None = None
        self._framer = Framer()
        self._address: tuple[str, int] | None = None
        self._failed_at: float | None = None  # when a connect or an answer last failed
        self.connect_timeout = 0.5
        self.reconnect_interval = 1.0

    def configure(self, host: str, port: int, connect_timeout_ms: int, reconnect_interval_ms: int) -> None:
        """Apply (possibly changed) settings; a new address drops the old connection."""
        if (host, port) != self._address:
            self.close()
            self._address = (host, port)
            self._failed_at = None
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

    def _fail(self, why: str, mark_down: bool) -> TransportError:
        self.close()
        if mark_down:
            self._failed_at = self._clock()
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
        timeout = min(self.connect_timeout, deadline - now)
        if timeout <= 0:
            raise TransportError("deadline passed before connecting")
        try:
            sock = socket.create_connection(self._address, timeout=timeout)
        except OSError as exc:
            raise self._fail(f"connect to {self._address[0]}:{self._address[1]} failed: {exc}", True) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._failed_at = None
        return sock

    def _reuse(self) -> socket.socket | None:
        """The open socket if the peer has not closed it meanwhile (e.g. a server restart)."""
        sock = self._sock
        if sock is None:
            return None
        sock.settimeout(0.0)  # with a timeout set, Python would wait for readability first
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return sock
            except OSError:
                self.close()
                return None
            if not data:
                self.close()
                return None
            self._framer.feed(data)  # late answers: skipped below by the caller's filter

    def exchange(self, request: bytes, deadline: float, accept: Callable[[bytes], T | None]) -> T:
        """Send ``request`` and return ``accept(frame)`` for the first frame it does not reject.

        ``accept`` returns None for a stale frame (another request's answer) and may raise
        ValueError for a malformed one; both that and any transport failure close the socket.
        """
        sock = self._reuse() or self._connect(deadline)
        try:
            sock.settimeout(max(deadline - self._clock(), 0.001))
            sock.sendall(request)
        except OSError as exc:
            raise self._fail(f"send failed: {exc}", False) from None
        while True:
            try:
                frame = self._framer.next_message()
            except FramingError as exc:
                raise self._fail(f"bad answer framing: {exc}", False) from None
            if frame is not None:
                try:
                    result = accept(frame)
                except ValueError as exc:
                    raise self._fail(f"bad answer: {exc}", False) from None
                if result is not None:
                    return result
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._fail("no answer before the deadline", True)
            try:
                sock.settimeout(remaining)
                data = sock.recv(65536)
            except TimeoutError:
                raise self._fail("no answer before the deadline", True) from None
            except OSError as exc:
                raise self._fail(f"receive failed: {exc}", False) from None
            if not data:
                raise self._fail("server closed the connection", False)
            self._framer.feed(data)
