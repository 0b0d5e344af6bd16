"""``--processes N``: N server processes on the same ports, each replaced when it dies.

The main process binds every listening socket before it forks (``SO_REUSEPORT``,
one set per child), so an address in use stops the start with a message instead of
N children dying unseen; it keeps the sockets, so a replacement child takes over its
predecessor's and the connections the kernel queued there in the meantime. It then
only waits: for SIGCHLD (a child died: log it, start another after a back-off) and
for SIGTERM or SIGINT (pass it on to every child, wait for them all, exit).

:class:`Backoff` is the pure part: a child that dies soon after its start waits
twice as long as the previous one before it is replaced, up to a minute, so a crash
loop (a database that refuses every start) costs a log line per back-off, not a
spinning CPU; a child that ran for a while is replaced at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import time
from collections.abc import Callable

log = logging.getLogger("kamailio_auth_diameter.server")

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
STABLE = 60.0  # seconds a child must run for its death to count as a fresh failure
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


class Backoff:
    """How long to wait before replacing the child of each slot; pure."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started: dict[int, float] = {}
        self._delay: dict[int, float] = {}

    def started(self, slot: int) -> None:
        self._started[slot] = self._clock()

    def died(self, slot: int) -> float:
        """Seconds until the slot's next child starts."""
        lived = self._clock() - self._started.get(slot, self._clock())
        if lived >= STABLE:
            self._delay[slot] = 0.0
            return 0.0
        delay = min(MAX_DELAY, max(FIRST_DELAY, 2 * self._delay.get(slot, 0.0)))
        self._delay[slot] = delay
        return delay


def _die_with_parent() -> None:
    """SIGTERM this child when the main process dies, even by SIGKILL (Linux prctl)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(libc_name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by signal {os.WTERMSIG(status)} ({signal.Signals(os.WTERMSIG(status)).name})"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def supervise(
    count: int,
    child: Callable[[int], int],
    clock: Callable[[], float] = time.monotonic,
    reaped: Callable[[int], None] | None = None,
) -> int:
    """Run ``child(slot)`` in ``count`` forked processes until SIGTERM or SIGINT; its
    return value is the child's exit status. Returns 0 once every child is gone.
    ``reaped(pid)`` is told of each child gone, before its replacement starts."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    backoff = Backoff(clock)
    children: dict[int, int] = {}  # pid -> slot
    due: dict[int, float] = {}  # slot -> when its next child starts

    parent = os.getpid()

    def start(slot: int) -> int:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                _die_with_parent()
                if os.getppid() == parent:  # else it died before prctl could tell us
                    status = child(slot)
            except BaseException:
                log.exception("server process %d failed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = slot
        backoff.started(slot)
        return pid

    try:
        for slot in range(count):
            start(slot)
        log.info("%d server processes: %s", count, " ".join(map(str, children)))
        stopping = False
        while children or (due and not stopping):
            wait = max(0.0, min(due.values()) - clock()) if due else None
            info = signal.sigtimedwait(_SIGNALS, wait) if wait is not None else signal.sigwaitinfo(_SIGNALS)
            if info is not None and info.si_signo != signal.SIGCHLD and not stopping:
                stopping = True
                due.clear()
                for pid in children:
                    os.kill(pid, info.si_signo)
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                slot = children.pop(pid)
                if reaped is not None:
                    reaped(pid)
                if not stopping:
                    delay = backoff.died(slot)
                    log.warning("server process %d %s; starting another in %g s", pid, _describe(status), delay)
                    due[slot] = clock() + delay
            for slot, at in list(due.items()):
                if at <= clock() and not stopping:
                    del due[slot]
                    log.info("server process %d started in place of the one that died", start(slot))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return 0
