"""What each server process allows its clients: connection caps, eviction, timeouts. Pure.

The listeners are reachable by every local user (the legacy dialect has no
authentication at all), so nothing a client does may cost the server without bound:

* **Connection caps.** A process holds at most ``max_connections`` connections on
  all its listeners together, and at most ``max_per_address`` from one client
  address. When a newcomer would pass a cap, a connection (of that address, or
  overall) is closed to make room instead of refusing the newcomer: a Kamailio
  worker that reconnects must get in, and on loopback Kamailio and a local attacker
  share 127.0.0.1, so refusing by address would lock the workers out. The one closed
  is the oldest of those that never sent a whole message, else the least recently
  active (a whole message arrived on it longest ago): connections opened and left
  silent, or left inside a message, go before any that ever asked something, and
  a worker that asks now and then goes last.
* **Idle timeout.** A connection with no whole message for ``idle_timeout`` is
  closed. Long by default (an hour): Kamailio workers keep one connection each
  through a quiet night, and the C module answers 500 to the first request after
  the server closed its connection.
* **Message timeout.** Bytes of a message, once begun, must be complete within
  ``message_timeout``; so must a TLS handshake; and answers the client does not
  read (writing is paused at the high-water mark) must be taken within it. A
  Kamailio worker writes a request in one send and waits for its answer, so none of
  these ever take it more than a round trip.

:class:`ConnectionTable` holds the decisions; the asyncio shell
(:mod:`.listener`) tells it what happened and closes what it names.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

FD_RESERVE = 32  # descriptors kept for the listeners, the database, the log, asyncio's own
DEFAULT_MAX_CONNECTIONS = 10_000  # at most, by default: about 30 MB of idle connections (a few KB each)
DEFAULT_MAX_PER_ADDRESS = 256  # a Kamailio host's workers, with room to spare
DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MESSAGE_TIMEOUT = 5.0


def fd_reserve(nofile: int) -> int:
    """Descriptors not given to client connections, out of a limit of ``nofile``."""
    return min(FD_RESERVE, nofile // 2)


def default_max_connections(nofile: int) -> int:
    """``--max-connections`` when not given: what the descriptor limit leaves, up to a ceiling."""
    return max(1, min(DEFAULT_MAX_CONNECTIONS, nofile - fd_reserve(nofile)))


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # 0: never
    message_timeout: float = DEFAULT_MESSAGE_TIMEOUT


class Reason(enum.Enum):
    """Why the table wants a connection closed; ``describe`` gives the log's words."""

    ADDRESS_CAP = "address-cap"
    CAP = "cap"
    OUT_OF_FDS = "out-of-fds"
    IDLE = "idle"
    PARTIAL = "partial"
    HANDSHAKE = "handshake"
    STALLED = "stalled"

    @property
    def evicted(self) -> bool:
        """Closed to make room for another connection, rather than for what it did (a timeout)."""
        return self in (Reason.ADDRESS_CAP, Reason.CAP, Reason.OUT_OF_FDS)

    def describe(self, limits: Limits) -> str:
        return {
            Reason.ADDRESS_CAP: f"least recently active of the {limits.max_per_address} from its address "
            "(--max-connections-per-address), to make room",
            Reason.CAP: f"least recently active of {limits.max_connections} (--max-connections), to make room",
            Reason.OUT_OF_FDS: "least recently active connection, to free a file descriptor",
            Reason.IDLE: f"no message for {limits.idle_timeout:g} s (--idle-timeout)",
            Reason.PARTIAL: f"a message begun is not complete after {limits.message_timeout:g} s (--message-timeout)",
            Reason.HANDSHAKE: f"no TLS handshake within {limits.message_timeout:g} s (--message-timeout)",
            Reason.STALLED: f"our answers not read for {limits.message_timeout:g} s (--message-timeout)",
        }[self]


class LogQuota:
    """At most ``limit`` log lines per ``window`` seconds, so that a client opening and
    dropping connections by the thousand cannot flood the log (ServerStats counts them all)."""

    def __init__(self, limit: int = 20, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._start = clock()
        self._used = 0
        self._held = 0

    def take(self) -> int | None:
        """None: do not log this one. Else log it, and say how many were not logged
        before it (in the windows since the last line)."""
        now = self._clock()
        if now - self._start >= self.window:
            self._start, self._used = now, 0
        if self._used >= self.limit:
            self._held += 1
            return None
        self._used += 1
        held, self._held = self._held, 0
        return held


def address_key(address: str) -> str:
    """The client address connections are counted by: an IPv4-mapped IPv6 address is
    its IPv4 one (a dual-stack listener sees both), a scope id is dropped."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


C = TypeVar("C", bound=Hashable)


@dataclass(slots=True)
class _Row:
    address: str
    last_active: float


class _Pool(Generic[C]):
    """Connections in eviction order: those that never sent a whole message, oldest
    first, then the others, least recently active first."""

    __slots__ = ("new", "used")

    def __init__(self) -> None:
        self.new: OrderedDict[C, None] = OrderedDict()
        self.used: OrderedDict[C, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.new) + len(self.used)

    def first(self) -> C:
        return next(iter(self.new or self.used))

    def active(self, conn: C) -> None:
        self.new.pop(conn, None)
        self.used.pop(conn, None)
        self.used[conn] = None

    def discard(self, conn: C) -> None:
        self.new.pop(conn, None)
        self.used.pop(conn, None)


class ConnectionTable(Generic[C]):
    """One server process's connections (any hashable handle) and what they did when.

    Every operation is O(1) but :meth:`expired`, which is O(what it returns): each
    timeout keeps its connections in the order their clocks started, so the oldest is
    always first.
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._rows: dict[C, _Row] = {}
        self._all: _Pool[C] = _Pool()
        self._by_address: dict[str, _Pool[C]] = {}
        self._partial: OrderedDict[C, tuple[float, Reason]] = OrderedDict()
        self._stalled: OrderedDict[C, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, conn: object) -> bool:
        return conn in self._rows

    def count(self, address: str) -> int:
        return len(self._by_address.get(address_key(address), ()))

    def admit(self, conn: C, address: str, handshake: bool = False) -> tuple[C, Reason] | None:
        """Add a newly accepted connection; the connection to close to make room for it, if any.

        With ``handshake`` (TLS) the connection must finish its handshake within the
        message timeout."""
        key = address_key(address)
        victim: tuple[C, Reason] | None = None
        same = self._by_address.get(key)
        if same is not None and len(same) >= self.limits.max_per_address:
            victim = (same.first(), Reason.ADDRESS_CAP)
        elif len(self._rows) >= self.limits.max_connections:
            victim = (self._all.first(), Reason.CAP)
        if victim is not None:
            self.remove(victim[0])
        now = self._clock()
        self._rows[conn] = _Row(key, now)
        self._all.new[conn] = None
        self._by_address.setdefault(key, _Pool()).new[conn] = None
        if handshake:
            self._partial[conn] = (now, Reason.HANDSHAKE)
        return victim

    def make_room(self) -> C | None:
        """The connection a newcomer would evict, taken out of the table to be closed:
        the process ran out of file descriptors. None if there is none."""
        if not self._rows:
            return None
        conn = self._all.first()
        self.remove(conn)
        return conn

    def received(self, conn: C, completed: bool, pending: bool) -> None:
        """After reading: ``completed`` whole messages arrived (the connection is active),
        ``pending`` bytes of a next one are waiting for the rest (its clock starts now
        unless it was already running for the same message)."""
        row = self._rows.get(conn)
        if row is None:
            return
        now = self._clock()
        if completed:
            row.last_active = now
            self._all.active(conn)
            self._by_address[row.address].active(conn)
        if pending:
            if completed or conn not in self._partial:
                self._partial.pop(conn, None)
                self._partial[conn] = (now, Reason.PARTIAL)
        else:
            self._partial.pop(conn, None)

    def handshake_done(self, conn: C) -> None:
        self._partial.pop(conn, None)

    def stalled(self, conn: C, paused: bool) -> None:
        """Our writing to ``conn`` is paused (the client does not read) or resumed."""
        if conn not in self._rows:
            return
        if not paused:
            self._stalled.pop(conn, None)
        elif conn not in self._stalled:
            self._stalled[conn] = self._clock()

    def remove(self, conn: C) -> None:
        row = self._rows.pop(conn, None)
        if row is None:
            return
        self._all.discard(conn)
        same = self._by_address[row.address]
        same.discard(conn)
        if not same:
            del self._by_address[row.address]
        self._partial.pop(conn, None)
        self._stalled.pop(conn, None)

    def expired(self) -> list[tuple[C, Reason]]:
        """Connections past a timeout, taken out of the table to be closed."""
        now = self._clock()
        out: list[tuple[C, Reason]] = []
        limit = now - self.limits.message_timeout
        while self._partial:
            conn, (since, reason) = next(iter(self._partial.items()))
            if since > limit:
                break
            out.append((conn, reason))
            self.remove(conn)
        while self._stalled:
            conn, since = next(iter(self._stalled.items()))
            if since > limit:
                break
            out.append((conn, Reason.STALLED))
            self.remove(conn)
        if self.limits.idle_timeout:
            idle_limit = now - self.limits.idle_timeout
            for order in (self._all.new, self._all.used):  # each in order of last activity
                while order:
                    conn = next(iter(order))
                    if self._rows[conn].last_active > idle_limit:
                        break
                    out.append((conn, Reason.IDLE))
                    self.remove(conn)
        return out
