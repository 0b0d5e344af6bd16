"""The legacy listener: one small Protocol per connection, on the shared listener shell.

A connection is one Kamailio worker. Requests are answered in order as they
arrive; the store lookups are short synchronous reads (SQLite, or PostgreSQL with
bounded waits: see store_pg), so the event loop does everything and needs no threads.
Anything hostile (a bad frame, an undecodable message, a request without SIP-MSGID)
closes that connection only; ``--allow``, connection caps, timeouts and
back-pressure are :mod:`.listener`'s.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket

from ..wire import legacy
from ..wire.base import Identity
from .auth import LegacyAuthority
from .limits import Limits
from .listener import Connection, Guard, ServerStats
from .metrics import LEGACY_AUTH, LEGACY_GROUP, LEGACY_OTHER, Metrics

log = logging.getLogger("kamailio_auth_diameter.server")
_SERVICE_TYPES = {legacy.SERVICE_AUTH: LEGACY_AUTH, legacy.SERVICE_GROUP: LEGACY_GROUP}


class LegacyProtocol(Connection):
    kind = "legacy"
    listener = "legacy"

    def __init__(self, server: LegacyServer, guard: Guard) -> None:
        super().__init__(guard, server.stats)
        self._server = server

    def opened(self) -> None:
        self.stats.connections += 1

    def message(self, raw: bytes) -> tuple[bytes, bool]:
        try:
            return self._server.answer(raw), False
        except legacy.LegacyError as exc:
            self.guard.warn("bad", "closing legacy connection from %s: %s", self.remote, exc)
            return b"", True


class LegacyServer:
    def __init__(self, authority: LegacyAuthority, identity: Identity, metrics: Metrics | None = None) -> None:
        self._authority = authority
        self._metrics = metrics or Metrics()
        self._identity = identity
        self._origin_host = identity.origin_host.encode()
        self._origin_realm = identity.origin_realm.encode()
        self._session_prefix = f"{identity.origin_host};{os.getpid()};".encode()
        self._session_counter = itertools.count(1)
        self.stats = ServerStats()

    def answer(self, raw: bytes) -> bytes:
        """The answer to one request; LegacyError if it cannot be answered at all."""
        request = legacy.decode_message(raw)
        msgid = request.first(legacy.AVP_SIP_MSGID)
        service = request.first(legacy.AVP_SERVICE_TYPE)
        if not request.is_request or msgid is None or not service:
            raise legacy.LegacyError("not a request with SIP-MSGID and Service-Type")
        verdict = self._authority.decide(request)
        stats = self.stats
        stats.requests += 1
        stats.by_result[verdict.result_code] = stats.by_result.get(verdict.result_code, 0) + 1
        self._metrics.request(_SERVICE_TYPES.get(service[:1], LEGACY_OTHER), verdict.result_code)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("service %r -> %d (%s)", service, verdict.result_code, verdict.reason)
        return legacy.encode_answer(
            service=service[:1],
            msgid=msgid,
            result_code=verdict.result_code,
            session_id=self._session_prefix + str(next(self._session_counter)).encode(),
            origin_host=self._origin_host,
            origin_realm=self._origin_realm,
            challenge=verdict.challenge,
            hop_by_hop=request.hop_by_hop,
            end_to_end=request.end_to_end,
        )


async def serve(server: LegacyServer, sock: socket.socket, stop: asyncio.Event, guard: Guard | None = None) -> None:
    """Serve until ``stop``; ``guard`` is the process's, shared with the other listeners
    (default: one of its own with the default limits, allowing everyone)."""
    guard = guard if guard is not None else Guard(Limits(), [])
    accepting = asyncio.create_task(guard.serve(sock, lambda: LegacyProtocol(server, guard), server.stats))
    try:
        await stop.wait()
    finally:
        accepting.cancel()
        sock.close()
