"""A blocking connection to one Diameter peer, driven from inside SIP requests.

The I/O shell around :class:`~..peer_state.PeerProtocol`. Kamailio 5.6 runs no
Python while a worker waits for SIP, so whatever the peer sent while we were idle
(DWRs, a DPR, its FIN after it gave up on us) is read at the start of the next
exchange, before the request goes out. A connection the peer closed, or sent DWRs
on, is replaced by a new one (connect, TLS, CER/CEA, the DWRs of a peer that
reopens us) within the request's own deadline: nothing that happens to an idle
worker can make a request fail.

Every wait is bounded by the deadline the caller passes: the name lookup and each
address's connect (:mod:`.resolve`), the TLS handshake and CER/CEA, what the peer
sent while we were idle (however much it keeps sending), and the DPA and FIN waits
when a connection ends. A connection is used only once its CEA was accepted;
anything that goes wrong while opening it, whatever it raises, closes it and is
reported as :class:`ConnectFailed`. Nagle stays on (RFC 3539
§3.2), which costs nothing here because a request, and a DWR that rides with it,
go out in one write. A clear TCP socket stays in blocking mode and the kernel bounds
each receive (SO_RCVTIMEO), so an exchange costs two system calls under load, the
send and the receive, and one more after a quiet spell, the look for what arrived
meanwhile; Python's own timeouts would add a poll and an ioctl to each. A TLS socket
uses Python's timeouts, since the TLS layer may need to read while it writes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable

from .. import metrics
from ..metrics import Events, no_events
from ..peer_state import Disconnected, PeerError, PeerProtocol, State, hop_by_hop_of
from ..settings import PeerAddress
from ..wire.framing import MAX_MESSAGE, Framer, FramingError
from .resolve import DEFAULT_RESOLVER, Resolver, connect
from .stream import RequestTooLarge, TransportError, send_by, set_receive_timeout

PART_WAIT = 0.1  # seconds we wait for a DPA and the peer's FIN when we end a connection (or less: the deadline)
RCVTIMEO_SLACK = 0.005  # how far the kernel's receive timeout may be off the deadline before we reset it
# After a CEA, how long the first request waits for DWRs from a peer that treats the
# connection as a reopened one (see PeerLink._settle).
REOPEN_WAIT = 0.003  # the DWRs follow the CEA at once: the gap is the peer's processing, not the network
# Under load the idle check is skipped: a peer that answered us this recently cannot
# have sent a DWR since (Tw is at least 6 s), and a DPR or a close is seen while the
# answer is awaited all the same. Saves a system call per request.
QUIET_BEFORE_DRAIN = 0.5
REOPEN_WATCHDOGS = 3  # RFC 3539 §3.4.1: three DWR/DWA exchanges take a connection back into service


class PeerDown(TransportError):
    """The connection failed or was refused; ``sent`` says whether the request went out."""

    def __init__(self, message: str, sent: bool, retry_soon: bool = True) -> None:
        super().__init__(message)
        self.sent = sent
        self.retry_soon = retry_soon


class ConnectFailed(PeerDown):
    """No usable connection could be opened: lookup, connect, TLS handshake, CER refused or
    unanswered. The only failure that keeps requests away from the peer for a while."""

    def __init__(self, message: str, retry_soon: bool = True) -> None:
        super().__init__(message, sent=False, retry_soon=retry_soon)


class PeerTimeout(TransportError):
    """The request went out and no answer came before the deadline."""


class PeerLink:
    """``make_protocol(local_address)`` builds the state machine of each new connection
    (the CER names the address the connection really uses). ``events`` hears of connects,
    failed connects, the peer going down and coming back, and each answer's round-trip
    time (metrics.py's events)."""

    def __init__(
        self,
        address: PeerAddress,
        make_protocol: Callable[[str], PeerProtocol],
        clock: Callable[[], float] = time.monotonic,
        events: Events = no_events,
    ) -> None:
        self.address = address
        self._make_protocol = make_protocol
        self._clock = clock
        self._events = events
        self._opened = 0  # connections opened (CEA accepted): any after the first is a reconnect
        self._up: bool | None = None  # whether the last attempt to open one succeeded (None: none yet)
        self._sock: socket.socket | None = None
        self._tls_sock = False
        self._rcvtimeo = 0.0  # the SO_RCVTIMEO set on a clear socket (0: none)
        self._parted = False  # the last connection ended with DPR, DPA and both FINs: nothing to reopen
        self._push_next = False  # send the next request past Nagle (see _settle)
        self._framer = Framer()
        self.protocol: PeerProtocol | None = None
        self.connect_timeout = 0.5
        self.tls: ssl.SSLContext | None = None
        self.resolver: Resolver = DEFAULT_RESOLVER
        self.connections = 0  # opened so far, for the tests and the log

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self, disconnect: bool = True, deadline: float | None = None) -> None:
        """Close, after a DPR and a short wait for its DPA and FIN when the connection is
        open: PART_WAIT at most, and never past ``deadline``."""
        sock, proto = self._sock, self.protocol
        if sock is None:
            return
        self._forget()
        try:
            if disconnect and proto is not None and proto.state is State.OPEN:
                end = self._part_end(deadline)
                dpr = proto.disconnect()
                if self._wait(sock, end):
                    sock.sendall(dpr)
                if self._wait(sock, end):
                    sock.recv(65536)  # the DPA, or nothing: we close either way
                    self._parted = self._await_fin(sock, end)
        except OSError:
            pass
        finally:
            sock.close()

    def _part_end(self, deadline: float | None) -> float:
        end = self._clock() + PART_WAIT
        return end if deadline is None else min(end, deadline)

    def _wait(self, sock: socket.socket, end: float) -> bool:
        """Set the socket's timeout to what is left before ``end``; False if nothing is."""
        left = end - self._clock()
        if left <= 0:
            return False
        sock.settimeout(left)
        return True

    def _renew(self, replies: bytes, deadline: float) -> None:
        """Send ``replies`` (DWAs), then end the connection with our FIN and wait for the peer's.

        No DPR on purpose: freeDiameter keeps a peer's unanswered-DWR flag across a
        clean DPR/DPA, and the new connection would go SUSPECT at its first Tw. After a
        plain close it reopens the peer instead (three DWR/DWA exchanges, which
        :meth:`_settle` answers), and that clears the flag.
        """
        sock = self._sock
        assert sock is not None
        self._forget()
        end = self._part_end(deadline)
        try:
            if self._wait(sock, end):
                sock.sendall(replies)
                self._await_fin(sock, end)
        except OSError:
            pass
        finally:
            sock.close()

    def _await_fin(self, sock: socket.socket, end: float) -> bool:
        """Our FIN, then the peer's, before ``end``: a peer may ignore a CER from the same
        Origin-Host until it has cleaned up the old connection (freeDiameter answers it with
        nothing at all), and its FIN says it has. True if it came."""
        sock.shutdown(socket.SHUT_WR)
        while self._wait(sock, end):
            if not sock.recv(65536):
                return True
        return False

    def _forget(self) -> None:
        self._push_next = False
        self._sock = None
        self.protocol = None
        self._framer.clear()
        self._parted = False

    def _down(self, message: str, sent: bool, retry_soon: bool = True) -> PeerDown:
        self.close(disconnect=False)
        return PeerDown(f"{self.address}: {message}", sent, retry_soon)

    # --- opening ------------------------------------------------------------------

    def _open_counted(self, deadline: float) -> None:
        """:meth:`_open`, reported: a connect or reconnect, or a failure, and the peer's
        change between up and down."""
        try:
            self._open(deadline)
        except ConnectFailed:
            self._events(metrics.CONNECT_FAILED)
            if self._up is not False:
                self._up = False
                self._events(metrics.PEER_DOWN)
            raise
        self._events(metrics.RECONNECT if self._opened else metrics.CONNECT)
        self._opened += 1
        if self._up is not True:
            self._up = True
            self._events(metrics.PEER_UP)

    def _open(self, deadline: float) -> None:
        """Connect, TLS, CER/CEA and a reopening peer's DWRs, within ``deadline``.

        ConnectFailed, with nothing left open, if any of it fails, whatever was raised:
        a link whose CEA was not accepted must never carry a request.
        """
        if deadline <= self._clock():
            raise ConnectFailed(f"{self.address}: no time left to connect")
        host, port = self.address.host, self.address.port
        try:
            sock = connect(self.resolver, host, port, deadline, self.connect_timeout, self._clock)
        except OSError as exc:
            raise ConnectFailed(f"{self.address}: connect failed: {exc}") from None
        try:
            if self.tls is not None:
                sock.settimeout(max(deadline - self._clock(), 0.001))
                sock = self.tls.wrap_socket(sock, server_hostname=host)
            else:
                sock.settimeout(None)
        except Exception as exc:  # noqa: BLE001 - ssl.SSLError or anything else: the socket must not leak
            sock.close()
            raise ConnectFailed(f"{self.address}: TLS handshake failed: {exc}") from None
        self._sock = sock
        self._tls_sock = self.tls is not None
        self._rcvtimeo = 0.0
        self.connections += 1
        opened = False
        try:
            proto = self._make_protocol(sock.getsockname()[0])
            self.protocol = proto
            self._send(proto.start(), deadline, sent=False)
            while proto.state is State.WAIT_CEA:
                self._read(deadline, sent=False)
                self._process(deadline, sent=False, hop=None)
            if not self._parted:  # a clean parting leaves nothing for the peer to reopen
                self._settle(deadline)
            opened = True
        except PeerTimeout:
            raise ConnectFailed(f"{self.address}: no CEA before the deadline") from None
        except PeerDown as exc:
            raise ConnectFailed(str(exc), exc.retry_soon) from None
        except Exception as exc:  # noqa: BLE001 - whatever the peer made us raise, the link is closed
            raise ConnectFailed(f"{self.address}: opening the connection failed: {_described(exc)}") from None
        finally:
            if not opened:
                self.close(disconnect=False)

    def _settle(self, deadline: float) -> None:
        """Answer the DWRs a peer sends right after its CEA before the first request goes.

        RFC 3539 §3.4.1 takes a connection back into service only after three DWR/DWA
        exchanges, and freeDiameter drops the answers to what it relays for a peer
        until then. It does so when a client comes back under the same Origin-Host
        within about a minute of a connection lost without DPR (a Kamailio restart, a
        renewed idle connection): three DWRs, each after our DWA to the one before. So
        the first request waits until three have been answered, or until the peer has
        sent nothing for REOPEN_WAIT: at most REOPEN_WAIT once per new connection.
        """
        sock = self._sock
        assert sock is not None
        answered = 0
        while answered < REOPEN_WATCHDOGS:
            wait = min(REOPEN_WAIT, deadline - self._clock())
            if wait <= 0:
                return
            pending = self._tls_sock and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending and not select.select([sock], [], [], wait)[0]:
                return
            self._read(deadline, sent=False)
            replies: list[bytes] = []
            self._process(deadline, sent=False, hop=None, replies=replies)
            if replies:
                # Sent at once (the peer sends its next DWR only after our DWA), and the
                # request after the last of them must not wait behind Nagle for the
                # peer's delayed ACK (40 ms on Linux): the next write is pushed.
                self._send(b"".join(replies), deadline, sent=False)
                self._push_next = True
                answered += len(replies)

    # --- the exchange -------------------------------------------------------------

    def exchange(self, build: Callable[[int], bytes], deadline: float) -> bytes:
        """Send ``build(hop_by_hop)`` and return the frame that answers it.

        ConnectFailed: the connection could not be opened. PeerDown: it failed (``sent``
        tells whether the request may have reached the peer). PeerTimeout: no answer in
        time; the connection is closed, since a late answer would only be thrown away.
        RequestTooLarge: ``build`` made more than a frame may hold; nothing was sent.
        """
        proto = self.protocol
        if self._sock is not None and proto is not None and self._clock() - proto.last_received >= QUIET_BEFORE_DRAIN:
            try:
                replies = self._drain(deadline)
            except PeerDown:
                pass  # closed while we were idle: a new connection below
            else:
                if replies:
                    self._renew(replies, deadline)
        if self._sock is None:
            self._open_counted(deadline)
        proto = self.protocol
        assert proto is not None
        hop = proto.hop_by_hop()
        data = build(hop)
        if len(data) > MAX_MESSAGE:  # nothing sent, and the connection stays as it was
            raise RequestTooLarge(f"the request has {len(data)} bytes, more than the {MAX_MESSAGE} a frame may")
        watchdog = proto.watchdog()
        sent_at = self._clock()
        if self._push_next:
            self._push_next = False
            sock = self._sock
            assert sock is not None
            _nagle(sock, on=False)
            self._send(data if watchdog is None else watchdog + data, deadline, sent=False)
            if self._sock is not None:
                _nagle(sock, on=True)
        else:
            self._send(data if watchdog is None else watchdog + data, deadline, sent=False)
        try:
            while True:
                answer = self._process(deadline, sent=True, hop=hop)
                if answer is not None:
                    self._events(metrics.ANSWER, self._clock() - sent_at)
                    return answer
                self._read(deadline, sent=True)
        except PeerTimeout:
            self.close(disconnect=False)
            raise PeerTimeout(f"{self.address}: no answer before the deadline") from None

    def _drain(self, deadline: float) -> bytes:
        """Whatever the peer sent while we were idle, without waiting for more.

        Returns the answers to the peer's requests (DWAs), unsent: a peer that sent
        DWRs to an idle worker may have stopped delivering answers to it. freeDiameter
        does, once the worker has been silent for 2 Tw (SUSPECT), and no message brings
        that connection back, so the caller renews the connection (:meth:`_renew`). A
        DPR is answered at once and the connection closed (PeerDown), and so is a
        connection the peer is still sending on when the deadline comes.
        """
        sock = self._sock
        assert sock is not None
        replies: list[bytes] = []
        while True:
            if self._clock() >= deadline:
                raise self._down("the peer kept sending while we were idle, up to the deadline", sent=False)
            try:
                if self._tls_sock:
                    sock.settimeout(0.0)
                    data = sock.recv(65536)
                else:
                    data = sock.recv(65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, ssl.SSLWantReadError):
                return b"".join(replies)
            except OSError as exc:
                raise self._down(f"connection failed while idle: {exc}", sent=False) from None
            if not data:
                raise self._down("peer closed the connection while we were idle", sent=False)
            self._framer.feed(data)
            self._process(deadline, sent=False, hop=None, replies=replies)

    def _process(
        self, deadline: float, sent: bool, hop: int | None, replies: list[bytes] | None = None
    ) -> bytes | None:
        """Hand every complete frame to the protocol; the answer to ``hop`` if it came.
        Answers to the peer's requests are sent at once, or kept in ``replies``."""
        proto = self.protocol
        assert proto is not None
        while True:
            try:
                frame = self._framer.next_message()
            except FramingError as exc:
                raise self._down(f"bad framing: {exc}", sent) from None
            if frame is None:
                return None
            try:
                received = proto.receive(frame)
            except Disconnected as exc:
                try:
                    self._send(exc.dpa, deadline, sent)
                except TransportError:
                    pass
                raise self._down(str(exc), sent, exc.retry_soon) from None
            except PeerError as exc:
                raise self._down(str(exc), sent, exc.retry_soon) from None
            except Exception as exc:  # noqa: BLE001 - hostile bytes end as PeerDown, whatever broke
                raise self._down(f"unreadable message: {_described(exc)}", sent) from None
            if received.reply is not None:
                if replies is None:
                    self._send(received.reply, deadline, sent)
                else:
                    replies.append(received.reply)
            if received.answer is not None and hop is not None and hop_by_hop_of(received.answer) == hop:
                return received.answer
            # any other answer is a late one to a request that already timed out: dropped

    def _read(self, deadline: float, sent: bool) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise PeerTimeout(str(self.address))
            try:
                if self._tls_sock:
                    sock.settimeout(remaining)
                else:
                    self._set_rcvtimeo(sock, remaining)
                data = sock.recv(65536)
            except (BlockingIOError, TimeoutError, ssl.SSLWantReadError):
                continue  # the kernel's timeout ran out: the loop decides against the deadline
            except InterruptedError:
                continue
            except OSError as exc:
                raise self._down(f"receive failed: {exc}", sent) from None
            if not data:
                raise self._down("peer closed the connection", sent)
            self._framer.feed(data)
            return

    def _set_rcvtimeo(self, sock: socket.socket, seconds: float) -> None:
        if abs(seconds - self._rcvtimeo) > RCVTIMEO_SLACK:
            set_receive_timeout(sock, seconds)
            self._rcvtimeo = seconds

    def _send(self, data: bytes, deadline: float, sent: bool) -> None:
        sock = self._sock
        assert sock is not None
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise PeerTimeout(str(self.address))
        try:
            if self._tls_sock:
                # not sendall: SSLSocket.sendall gives each of its writes the whole timeout
                view = memoryview(data)
                while view:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise TimeoutError
                    sock.settimeout(remaining)
                    view = view[sock.send(view) :]
                return
            if not send_by(sock, data, deadline, self._clock):
                raise TimeoutError
        except TimeoutError:
            raise self._down("send timed out", sent=True) from None
        except OSError as exc:
            raise self._down(f"send failed: {exc}", sent) from None


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _nagle(sock: socket.socket, on: bool) -> None:
    """Nagle on or off; a socket that refuses is broken, and the send or receive next to
    this says so as a PeerDown, so the error is not raised here."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if on else 1)
