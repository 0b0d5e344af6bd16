"""The asyncio shell both listeners share: accepting, ``--allow``, framing, back-pressure, limits.

:class:`Guard` is one per server process. Its accept loop checks ``--allow`` on the
address the kernel hands over, before a byte is read or a TLS handshake begun, and
enters each connection in the process's :class:`~.limits.ConnectionTable`, closing
whatever the table names: a connection to make room when a cap is reached (the
table says which), and (from a timer) connections past a timeout. Running out of
file descriptors at accept time closes one the same way, then waits a moment, so
it neither spins nor starves the workers.

:class:`Connection` is the per-connection shell a listener's protocol builds on: it
frames the stream and hands each whole message to the subclass. Writing has a
high-water mark: above it (a client that does not read its answers) the connection
stops reading *and* stops answering the messages it already holds until the client
has read down to the low-water mark, so what a connection can make the server hold
is bounded by the high-water mark plus one read (and the kernel's, by the socket
buffer sizes :func:`bind` sets).

Both count into the process's :class:`~.metrics.Metrics`: connections open, refused
and closed by the limits, and each answer's latency, from the read that brought its
request to the write of the answer (answers to one read go out in one write).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..wire.framing import Framer, FramingError
from .limits import ConnectionTable, Limits, LogQuota, Reason
from .metrics import Metrics

log = logging.getLogger("kamailio_auth_diameter.server")

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
HIGH_WATER = 64 * 1024  # bytes of answers a connection may have waiting to be sent
LOW_WATER = 16 * 1024
# Each connection's kernel buffers (Linux doubles the figure for its bookkeeping): room for
# a whole message of the largest size each way, but not the megabytes autotuning would
# grant a client that sends without reading.
SOCKET_BUFFER = 64 * 1024
FD_BACKOFF = 0.1  # seconds the accept loop waits after running out of file descriptors
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LISTENER_GONE = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})


def address_allowed(address: str, allow: list) -> bool:
    """Whether a client address is in ``--allow`` (an empty list allows everyone).

    An IPv4-mapped IPv6 address (an IPv4 client of a dual-stack listener) is in an
    IPv6 network that contains it (``::/0``, ``::ffff:0:0/96``) and in an IPv4 network
    that contains its IPv4 address."""
    if not allow:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates = [ip]
    if ip.version == 6 and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    return any(c in net for net in allow for c in candidates if c.version == net.version)


@dataclass
class ServerStats:
    connections: int = 0
    refused: int = 0  # not in --allow
    evicted: int = 0  # closed to make room: a connection cap, or out of file descriptors
    timed_out: int = 0  # idle, a message or TLS handshake not completed, answers not read
    requests: int = 0
    by_result: dict[int, int] = field(default_factory=dict)


class BindError(OSError):
    """A listening address cannot be had; the message names the option and the address."""


def bind(host: str, port: int, reuse_port: bool, option: str = "listen") -> socket.socket:
    """A listening socket; with reuse_port, each server process has its own and the
    kernel spreads connections (Kamailio workers) across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)  # accepted sockets inherit them
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise BindError(f"{option} {where}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (systemd's default soft limit is
    1024, its hard one far higher); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        except (OSError, ValueError):
            return soft
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return soft
    return hard


class Connection(asyncio.Protocol):
    """One accepted connection: framing, back-pressure and its row in the guard's table.

    A subclass answers each whole message in :meth:`message`, and may act when the
    connection is made (:meth:`opened`) and lost (:meth:`closed`).
    """

    kind = "client"  # for the log: "legacy", "Diameter"
    listener = "client"  # for the metrics: "legacy", "diameter", "diameter_tls"

    def __init__(self, guard: Guard, stats: ServerStats) -> None:
        self.guard = guard
        self.stats = stats
        self.metrics = guard.metrics
        self.remote = "?"
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None  # accepted, until asyncio takes it over
        self.handshake: asyncio.Task | None = None  # until the transport is made (TLS: the handshake done)
        self._framer = Framer()
        self._paused = False  # the client does not read: answers wait, and so do its messages
        self._arrived = 0.0  # time.perf_counter() of the last read

    # --- what a subclass provides ---

    def message(self, raw: bytes) -> tuple[bytes, bool]:
        """The bytes to send for one whole message, and whether to close afterwards."""
        raise NotImplementedError

    def opened(self) -> None:
        """The connection is usable (after the TLS handshake, if any)."""

    def closed(self) -> None:
        """The connection is gone, whoever closed it."""

    # --- asyncio ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.guard.made(self)
        self.metrics.opened(self.listener)
        self.opened()

    def data_received(self, data: bytes) -> None:
        self._arrived = time.perf_counter()
        self._framer.feed(data)
        if not self._paused:
            self._work()

    def pause_writing(self) -> None:
        self._paused = True
        self.guard.table.stalled(self, True)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is None or self.transport.is_closing():
            return  # closing: the message timeout runs on until all has been sent
        self.guard.table.stalled(self, False)
        self.transport.resume_reading()
        self._work()

    def connection_lost(self, exc: Exception | None) -> None:
        log.debug("%s connection from %s closed", self.kind, self.remote)
        self.transport = None
        self.guard.table.remove(self)
        self.metrics.closed(self.listener)
        self.closed()

    # --- the work ---

    def _work(self) -> None:
        """Answer the whole messages held, until there are none or writing is paused."""
        transport = self.transport
        out: list[bytes] = []
        size = 0
        completed = False
        close = False
        try:
            while not self._paused and not close and (raw := self._framer.next_message()) is not None:
                completed = True
                data, close = self.message(raw)
                if data:
                    out.append(data)
                    size += len(data)
                if size >= HIGH_WATER and transport is not None:
                    self._write(transport, out)  # may pause writing, which ends the loop
                    out, size = [], 0
        except FramingError as exc:
            self.guard.warn("bad", "closing %s connection from %s: %s", self.kind, self.remote, exc)
            close = True
        if transport is None or transport.is_closing():
            return
        if out:
            self._write(transport, out)
        if close:
            self.close()
        else:
            # while paused the bytes held wait for the client to read, not to finish a message
            self.guard.table.received(self, completed, self._framer.pending > 0 and not self._paused)

    def _write(self, transport: asyncio.Transport, answers: list[bytes]) -> None:
        transport.write(b"".join(answers))
        seconds = time.perf_counter() - self._arrived
        for _ in answers:
            self.metrics.answered(self.listener, seconds)

    def close(self) -> None:
        """Close after what is waiting has been sent; a client that does not read it is
        cut off by the message timeout like any other (a transport closing with unsent
        bytes would otherwise wait for it for ever)."""
        if self.transport is not None:
            self.transport.close()
            self.guard.table.stalled(self, True)

    def shut(self, reason: Reason) -> None:
        """Close for the table's ``reason``: at once, whatever is waiting to be sent."""
        if reason.evicted:
            self.stats.evicted += 1
        else:
            self.stats.timed_out += 1
        self.metrics.cut(reason)
        why = reason.describe(self.guard.limits)
        self.guard.warn(reason.value, "closing %s connection from %s: %s", self.kind, self.remote, why)
        if self.sock is not None:  # accepted, not yet handed to asyncio
            self.sock.close()
            self.sock = None
        if self.handshake is not None and not self.handshake.done():
            self.handshake.cancel()
        elif self.transport is not None:
            self.transport.abort()


class Guard:
    """One server process's connections on all its listeners: ``--allow``, caps, timeouts."""

    def __init__(
        self,
        limits: Limits,
        allow: list,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.limits = limits
        self.allow = allow
        self.metrics = metrics or Metrics()
        self.table: ConnectionTable[Connection] = ConnectionTable(limits, clock)
        self._clock = clock
        self._quotas: dict[str, LogQuota] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        # how often timeouts are looked for: a timeout fires at most this late
        self._tick = min(1.0, limits.message_timeout / 4)

    async def serve(
        self,
        sock: socket.socket,
        factory: Callable[[], Connection],
        stats: ServerStats,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """Accept on ``sock`` until cancelled; each connection gets ``factory()`` as its protocol."""
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._tick, self._sweep)
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in _LISTENER_GONE:
                    raise
                if exc.errno in _OUT_OF_RESOURCES:
                    self._out_of_fds(exc)
                    await asyncio.sleep(FD_BACKOFF)
                continue
            self._accepted(conn, peer, factory, stats, tls)
            # sock_accept does not yield while connections are queued: without this, a
            # flood of connects would starve the connections already made, and evict a
            # worker's new one before its first request could even be read
            await asyncio.sleep(0)

    def _accepted(
        self,
        conn: socket.socket,
        peer: tuple,
        factory: Callable[[], Connection],
        stats: ServerStats,
        tls: ssl.SSLContext | None,
    ) -> None:
        address = peer[0] if peer else ""
        remote = f"[{address}]:{peer[1]}" if ":" in address else f"{address}:{peer[1]}"
        if not address_allowed(address, self.allow):
            stats.refused += 1
            self.metrics.refused()
            self.warn("refused", "refused connection from %s (not in --allow)", remote)
            conn.close()
            return
        protocol = factory()
        protocol.remote = remote
        protocol.sock = conn
        victim = self.table.admit(protocol, address, handshake=tls is not None)
        if victim is not None:
            victim[0].shut(victim[1])
        log.debug("%s connection from %s", protocol.kind, remote)
        protocol.handshake = asyncio.create_task(self._connect(protocol, tls))

    async def _connect(self, protocol: Connection, tls: ssl.SSLContext | None) -> None:
        """Hand the socket to asyncio and wait for the transport (for TLS: the handshake)."""
        sock, protocol.sock = protocol.sock, None  # asyncio's from here on: it closes it
        assert sock is not None
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, sock, ssl=tls)
        except asyncio.CancelledError:
            self.table.remove(protocol)  # shut(), or the server stopping
        except OSError as exc:  # ssl.SSLError is one
            self.table.remove(protocol)
            self.warn("bad", "TLS handshake with %s failed: %s", protocol.remote, getattr(exc, "reason", None) or exc)

    def warn(self, kind: str, fmt: str, *args: object) -> None:
        """A warning about one connection, within the log quota of its kind (one flood
        of evictions must not hide the timeouts)."""
        quota = self._quotas.get(kind)
        if quota is None:
            quota = self._quotas[kind] = LogQuota(clock=self._clock)
        held = quota.take()
        if held is None:
            return
        if held:
            fmt += " (%d more such lines were not logged)"
            args = (*args, held)
        log.warning(fmt, *args)

    def made(self, protocol: Connection) -> None:
        protocol.handshake = None
        self.table.handshake_done(protocol)

    def _out_of_fds(self, exc: OSError) -> None:
        self.warn("fds", "cannot accept a connection: %s", exc.strerror)
        victim = self.table.make_room()
        if victim is not None:
            victim.shut(Reason.OUT_OF_FDS)

    def _sweep(self) -> None:
        for conn, reason in self.table.expired():
            conn.shut(reason)
        self._sweeper = asyncio.get_running_loop().call_later(self._tick, self._sweep)

    def stop(self) -> None:
        """No more timeouts (the server is stopping)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
