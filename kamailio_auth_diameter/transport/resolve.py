"""Host names to addresses, and a TCP connect, that keep to a request's deadline.

``socket.create_connection`` looks the name up with getaddrinfo, which waits as long
as the system resolver likes (by default 5 s per name server and attempt, twice),
and then gives every address the whole timeout: two addresses that drop SYNs took
2 s of a 1 s deadline. Here a numeric host needs no lookup. A name is looked up in a
thread of its own while the request waits no longer than its deadline: waiting on
the lookup releases the GIL, so the thread runs meanwhile (Kamailio 5.6 lets other
Python threads run only while a worker is inside Python, so a lookup that outlives
its request goes on during the next one). One lookup per name is in flight at a
time and its addresses are kept for FRESH_FOR. After that a new lookup starts and
gets REFRESH_WAIT to answer; if it is slower, the old addresses are used, and so
they are while it stays in flight: a resolver that went quiet costs a name already
known at most REFRESH_WAIT once. Then each address is tried in turn, each connect
bounded by the caller's per-attempt timeout and by what is left of the deadline,
never more.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

FRESH_FOR = 30.0  # seconds a looked-up set of addresses is used without a new lookup
RETRY_AFTER = 5.0  # after a failed refresh, the stale addresses are used this long before the next try
REFRESH_WAIT = 0.05  # what a refresh may take before the stale addresses are used instead

Address = tuple[int, tuple]  # (address family, sockaddr)
T = TypeVar("T")


class _Background(Generic[T]):
    """``work()`` in a daemon thread of its own: ``done`` is set once ``result`` or ``error`` is."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: OSError | None = None
        try:
            threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()
        except RuntimeError as exc:  # no thread to be had (a process or memory limit)
            self.error = OSError(f"{name}: {exc}")
            self.done.set()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self.result = work()
        except OSError as exc:
            self.error = exc
        except Exception as exc:  # noqa: BLE001 - whatever it was, the waiting request must hear of it
            self.error = OSError(f"{exc!r}")
        finally:
            self.done.set()


@dataclass(slots=True)
class _Known:
    addresses: list[Address]
    fresh_until: float
    retry_at: float = 0.0  # no refresh before this (one failed)


class Resolver:
    """A process's name cache (``clock`` ages its entries)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._known: dict[tuple[str, int], _Known] = {}
        self._pending: dict[tuple[str, int], _Background[list[Address]]] = {}
        self._pid = os.getpid()

    def addresses(self, host: str, port: int, wait: float) -> list[Address]:
        """The TCP addresses of ``host``; TimeoutError if a lookup it must wait for does not
        finish within ``wait`` seconds, socket.gaierror if the resolver says there are none."""
        numeric = _numeric(host, port)
        if numeric is not None:
            return numeric
        if self._pid != os.getpid():
            # a fork (Kamailio's workers): the threads of lookups in flight stayed behind
            self._pending.clear()
            self._pid = os.getpid()
        key = (host, port)
        self._collect(key)
        known = self._known.get(key)
        if known is not None:
            now = self._clock()
            if now < known.fresh_until or now < known.retry_at or key in self._pending:
                return known.addresses
            if self._start(key).done.wait(min(REFRESH_WAIT, max(wait, 0.0))):
                self._collect(key)
            return self._known[key].addresses
        lookup = self._start(key)
        if wait <= 0 or not lookup.done.wait(wait):
            raise TimeoutError(f"the name lookup of {host} did not finish before the deadline")
        self._collect(key)
        if lookup.error is not None:
            raise lookup.error
        assert lookup.result is not None
        return lookup.result

    def _start(self, key: tuple[str, int]) -> _Background[list[Address]]:
        """The lookup of ``key`` in flight, started if there is none."""
        lookup = self._pending.get(key)
        if lookup is None:
            lookup = self._pending[key] = _Background(partial(_lookup, *key), f"lookup {key[0]}")
        return lookup

    def _collect(self, key: tuple[str, int]) -> None:
        """Take the result of a finished lookup of ``key`` into the cache."""
        lookup = self._pending.get(key)
        if lookup is None or not lookup.done.is_set():
            return
        del self._pending[key]
        now = self._clock()
        if lookup.result is not None:
            self._known[key] = _Known(lookup.result, now + FRESH_FOR)
        elif (known := self._known.get(key)) is not None:
            known.retry_at = now + RETRY_AFTER


DEFAULT_RESOLVER = Resolver()  # shared by a process's transports: one lookup per name, not per connection


def _lookup(host: str, port: int) -> list[Address]:
    found = _unique(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
    return found


def _unique(found: list[tuple]) -> list[Address]:
    seen: list[Address] = []
    for family, _, _, _, sockaddr in found:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in seen:
            seen.append((family, sockaddr))
    return seen


def _numeric(host: str, port: int) -> list[Address] | None:
    """The address of an IPv4 or IPv6 literal (getaddrinfo does no I/O for these), else None."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    return _unique(found)


def connect(
    resolver: Resolver,
    host: str,
    port: int,
    deadline: float,
    attempt_timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> socket.socket:
    """A TCP connection to the first address of ``host`` that accepts one, each connect
    bounded by ``attempt_timeout`` and all of it by ``deadline``.

    OSError says what happened with each address tried (TimeoutError when the lookup
    itself ran out of time).
    """
    problems: list[str] = []
    for family, sockaddr in resolver.addresses(host, port, deadline - clock()):
        left = deadline - clock()
        if left <= 0:
            problems.append(f"no time left for {_where(sockaddr)}")
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(attempt_timeout, left))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            problems.append(f"{_where(sockaddr)}: {str(exc) or type(exc).__name__}")
            continue
        return sock
    raise OSError("; ".join(problems) or f"{host} has no address")


def _where(sockaddr: tuple) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_local_fqdn: str | None = None
_getfqdn: _Background[str] | None = None


def local_fqdn(timeout: float) -> str:
    """This machine's FQDN as ``socket.getfqdn()`` gives it, or the host name when that
    takes longer than ``timeout`` seconds (getfqdn asks DNS, with no bound of its own).

    A name without a dot gets ``.localdomain``. The first answer is kept for the life
    of the process and of the workers it forks, so the Origin-Host made from it never
    changes under a running Kamailio.
    """
    global _local_fqdn, _getfqdn
    if _local_fqdn is None:
        if _getfqdn is None:
            _getfqdn = _Background(socket.getfqdn, "getfqdn")
        name = socket.gethostname()
        if _getfqdn.done.wait(max(timeout, 0.0)) and _getfqdn.result:
            name = _getfqdn.result
        _local_fqdn = name if "." in name else f"{name}.localdomain"
    return _local_fqdn
