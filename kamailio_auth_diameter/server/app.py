"""asyncio wiring: the legacy listener, one small Protocol per connection.

A connection is one Kamailio worker. Requests are answered in order as they
arrive; the store lookups are short synchronous reads (SQLite, or PostgreSQL with
bounded waits: see store_pg), so the event loop does everything and needs no threads. Anything hostile (a bad frame, an
undecodable message, a request without SIP-MSGID) closes that connection only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import socket
from dataclasses import dataclass, field

from ..wire import legacy
from ..wire.base import Identity
from ..wire.framing import Framer, FramingError
from .auth import LegacyAuthority

log = logging.getLogger("kamailio_auth_diameter.server")

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def address_allowed(address: str, allow: list) -> bool:
    """Whether a client address is in ``--allow`` (an empty list allows everyone); shared by both listeners."""
    if not allow:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in allow)


@dataclass
class ServerStats:
    connections: int = 0
    refused: int = 0
    requests: int = 0
    by_result: dict[int, int] = field(default_factory=dict)


class LegacyProtocol(asyncio.Protocol):
    def __init__(self, server: LegacyServer) -> None:
        self._server = server
        self._framer = Framer()
        self._transport: asyncio.Transport | None = None
        self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if not self._server.allowed(peer[0] if peer else ""):
            self._server.stats.refused += 1
            log.warning("refused connection from %s (not in --allow)", self._peer)
            transport.abort()
            return
        self._server.stats.connections += 1
        log.debug("connection from %s", self._peer)

    def data_received(self, data: bytes) -> None:
        self._framer.feed(data)
        out = []
        try:
            while (raw := self._framer.next_message()) is not None:
                out.append(self._server.answer(raw))
        except (FramingError, legacy.LegacyError) as exc:
            log.warning("closing connection from %s: %s", self._peer, exc)
            if out and self._transport is not None:
                self._transport.write(b"".join(out))
            self._close()
            return
        if out and self._transport is not None:
            self._transport.write(b"".join(out))

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        log.debug("connection from %s closed", self._peer)
        self._transport = None


class LegacyServer:
    def __init__(self, authority: LegacyAuthority, identity: Identity, allow: list) -> None:
        self._authority = authority
        self._identity = identity
        self._allow = allow
        self._origin_host = identity.origin_host.encode()
        self._origin_realm = identity.origin_realm.encode()
        self._session_prefix = f"{identity.origin_host};{os.getpid()};".encode()
        self._session_counter = itertools.count(1)
        self.stats = ServerStats()

    def allowed(self, address: str) -> bool:
        return address_allowed(address, self._allow)

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


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening socket; with reuse_port, each server process binds its own and the
    kernel spreads connections (Kamailio workers) across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(server: LegacyServer, sock: socket.socket, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: LegacyProtocol(server), sock=sock)
    try:
        await stop.wait()
    finally:
        listener.close()
        await listener.wait_closed()
