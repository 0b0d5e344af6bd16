"""A scripted RFC 6733 responder on 127.0.0.1, for fault injection against the plugin's client.

It answers the CER itself (or refuses it), then hands every other request to a
``behaviour`` callable that returns the bytes to send back (an answer, nothing for
silence, or several messages). It records what it received, so tests can check
T flags and end-to-end ids, and can push unsolicited requests (DWR, DPR) or close
the connections at will.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from diameter.message import Message

from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.framing import Framer

SILENT = b""
CLOSE = None  # a behaviour returning this closes the connection instead of answering


@dataclass
class Received:
    command: int
    flags: int
    hop_by_hop: int
    end_to_end: int
    origin_host: str | None
    connection: int


def answer_mar(msg: Message, identity: Identity, result: int = 2006) -> bytes:
    return sip_app.encode_maa(base.decode_lean(msg.as_bytes()), identity, sip_app.MultimediaAuthAnswer(result))


@dataclass
class FakePeer:
    identity: Identity = field(default_factory=lambda: Identity("aaa.example.com", "example.com"))
    behaviour: Callable[[Message], bytes | None] | None = None
    cea_result: int = base.RESULT_SUCCESS
    answer_dpr: bool = True  # False: a DPR gets neither a DPA nor a close, as from a hung peer
    applications: tuple[int, ...] = (sip_app.APP_SIP,)
    received: list[Received] = field(default_factory=list)
    connections: list[socket.socket] = field(default_factory=list)
    cers: list[Capabilities] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections.append(conn)
                index = len(self.connections) - 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        framer = Framer()
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            framer.feed(data)
            while (frame := framer.next_message()) is not None:
                msg = base.decode(frame, sip_app.GROUPED)
                if not self._handle(conn, index, msg):
                    conn.close()
                    return

    def _handle(self, conn: socket.socket, index: int, msg: Message) -> bool:
        h = msg.header
        origin = base.text(msg.avps, base.AVP_ORIGIN_HOST)
        with self._lock:
            self.received.append(
                Received(
                    h.command_code, h.command_flags, h.hop_by_hop_identifier, h.end_to_end_identifier, origin, index
                )
            )
        if not h.is_request:
            return True
        if h.command_code == base.CMD_CAPABILITIES_EXCHANGE:
            self.cers.append(base.decode_capabilities(msg))
            caps = Capabilities(self.identity, ("127.0.0.1",), self.applications, origin_state_id=1)
            conn.sendall(base.encode_cea(msg, caps, self.cea_result))
            return self.cea_result == base.RESULT_SUCCESS
        if h.command_code == base.CMD_DEVICE_WATCHDOG:
            conn.sendall(base.encode_dwa(msg, self.identity, 1))
            return True
        if h.command_code == base.CMD_DISCONNECT_PEER:
            if not self.answer_dpr:
                return True
            conn.sendall(base.encode_dpa(msg, self.identity))
            return False
        out = self.behaviour(msg) if self.behaviour else answer_mar(msg, self.identity)
        if out is CLOSE:
            return False
        if out:
            conn.sendall(out)
        return True

    def requests(self, command: int = sip_app.CMD_MULTIMEDIA_AUTH) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.command == command and r.flags & base.FLAG_REQUEST]

    def answers(self, command: int) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.command == command and not r.flags & base.FLAG_REQUEST]

    def push(self, data: bytes, connection: int = -1) -> None:
        """Send an unsolicited message (a DWR, a DPR) on one connection."""
        self.connections[connection].sendall(data)

    def drop_connections(self) -> None:
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def stop(self) -> None:
        self._stopped = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the other thread
        except OSError:
            pass
        self._listener.close()
        self.drop_connections()
