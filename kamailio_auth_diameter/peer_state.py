"""The client side of one RFC 6733 peer connection, pure: handshake, watchdog, peer requests.

A Kamailio worker runs Python only while it handles a SIP request, so this state
machine is driven from inside requests: the transport feeds it every frame it
reads and sends whatever it returns. There are no timers; "Tw has passed" is
checked when the next request goes out, and the DWR then travels in the same
write as the request, so the watchdog never costs a request a round trip.

Frames are bytes of one message (the transport frames the stream). Anything that
is not a well-formed message, or a first message that is not a successful CEA
naming a common application, raises :class:`PeerError`: the transport closes the
connection (RFC 6733 §5.1, §5.3).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from diameter.message import Message

from .wire import base
from .wire.base import Capabilities, Identity

HEADER_HOP_BY_HOP = slice(12, 16)


class PeerError(Exception):
    """The connection cannot be used (refused CER, garbage, a DPR); the message says why."""

    def __init__(self, message: str, retry_soon: bool = True) -> None:
        super().__init__(message)
        self.retry_soon = retry_soon  # False: back off as long as allowed (misconfiguration, BUSY)


class State(enum.Enum):
    CLOSED = "closed"
    WAIT_CEA = "wait-cea"
    OPEN = "open"


@dataclass(slots=True)  # not frozen: built per exchange, and frozen triples the cost (bench/README.md)
class Received:
    """What one frame meant: an answer for the caller, and/or bytes to send back."""

    answer: bytes | None = None
    reply: bytes | None = None


class PeerProtocol:
    """One connection, from the CER we send to its close.

    The applications of ``local`` (Auth-Application-Id, or a vendor's such as 3GPP Cx in
    Vendor-Specific-Application-Id) are what we need from the peer: the connection
    opens only if its CEA names one of them, in either form, or the relay application
    (RFC 6733 §2.4: a relay supports everything).
    """

    def __init__(
        self,
        local: Capabilities,
        watchdog_interval: float,
        clock: Callable[[], float],
        hop_by_hop: Callable[[], int] | None = None,
        end_to_end: Callable[[], int] | None = None,
    ) -> None:
        self._local = local
        self._tw = watchdog_interval
        self._clock = clock
        self.hop_by_hop = hop_by_hop or base.HopByHop()
        self._end_to_end = end_to_end or base.EndToEnd()
        self.state = State.CLOSED
        self.peer: Capabilities | None = None
        self._cer_id = -1
        self._dwr_id: int | None = None  # hop-by-hop of our unanswered DWR
        self.last_received = 0.0  # any frame from the peer resets Tw (RFC 3539 §3.4.1)
        self.watchdogs_sent = 0
        self.watchdogs_answered = 0

    @property
    def identity(self) -> Identity:
        return self._local.identity

    def start(self) -> bytes:
        """The CER to send first on a new connection."""
        self.state = State.WAIT_CEA
        self.last_received = self._clock()
        self._cer_id = self.hop_by_hop()
        return base.encode_cer(self._local, self._cer_id, self._end_to_end())

    def watchdog(self) -> bytes | None:
        """A DWR when the peer has been silent for Tw and none is outstanding."""
        if self.state is not State.OPEN or self._dwr_id is not None:
            return None
        if self._clock() - self.last_received < self._tw:
            return None
        self._dwr_id = self.hop_by_hop()
        self.watchdogs_sent += 1
        return base.encode_dwr(self.identity, self._local.origin_state_id or 0, self._dwr_id, self._end_to_end())

    def disconnect(self) -> bytes:
        """A DPR (REBOOTING: we will be back) before we close a connection ourselves."""
        self.state = State.CLOSED
        return base.encode_dpr(self.identity, base.DISCONNECT_REBOOTING, self.hop_by_hop(), self._end_to_end())

    def receive(self, frame: bytes) -> Received:
        self.last_received = self._clock()
        if self.state is State.WAIT_CEA:
            self._receive_cea(frame)
            return Received()
        if frame[4] & base.FLAG_REQUEST:
            return Received(reply=self._answer_request(frame))
        hop = int.from_bytes(frame[HEADER_HOP_BY_HOP], "big")
        if hop == self._dwr_id:
            self._dwr_id = None
            self.watchdogs_answered += 1
            return Received()
        return Received(answer=frame)

    def _receive_cea(self, frame: bytes) -> None:
        try:
            msg = base.decode(frame)
        except base.DecodeError as exc:
            raise PeerError(f"unreadable first message: {exc}") from None
        h = msg.header
        if h.is_request or h.command_code != base.CMD_CAPABILITIES_EXCHANGE or h.hop_by_hop_identifier != self._cer_id:
            raise PeerError(f"first message is command {h.command_code}, not the CEA to our CER")
        try:
            result = base.required_unsigned(msg.avps, base.AVP_RESULT_CODE)
            caps = base.decode_capabilities(msg)
        except base.RequestError as exc:
            raise PeerError(f"CEA is malformed: {exc}") from None
        if result != base.RESULT_SUCCESS:
            message = base.text(msg.avps, base.AVP_ERROR_MESSAGE)
            detail = f" ({message})" if message else ""
            raise PeerError(f"peer refused our CER with Result-Code {result}{detail}", retry_soon=False)
        ours = {*self._local.auth_application_ids, *(a.auth_application_id for a in self._local.vendor_applications)}
        if not (ours | {base.APP_RELAY}) & caps.applications:
            raise PeerError(
                f"peer {caps.identity.origin_host} supports none of our applications {sorted(ours)}",
                retry_soon=False,
            )
        self.peer = caps
        self.state = State.OPEN

    def _answer_request(self, frame: bytes) -> bytes:
        try:
            msg = base.decode(frame)
        except base.DecodeError as exc:
            raise PeerError(f"unreadable request from the peer: {exc}") from None
        code = msg.header.command_code
        state_id = self._local.origin_state_id or 0
        if code == base.CMD_DEVICE_WATCHDOG:
            return base.encode_dwa(msg, self.identity, state_id)
        if code == base.CMD_DISCONNECT_PEER:
            self.state = State.CLOSED
            raise Disconnected(base.encode_dpa(msg, self.identity), _disconnect_cause(msg))
        try:
            return base.encode_answer(
                msg, self.identity, base.RESULT_COMMAND_UNSUPPORTED, error_message=f"command {code} is not served here"
            )
        except base.Unanswerable as exc:
            raise PeerError(f"unanswerable request from the peer: {exc}") from None


class Disconnected(PeerError):
    """The peer sent a DPR: send ``dpa``, then close."""

    def __init__(self, dpa: bytes, cause: int | None) -> None:
        # RFC 6733 §5.4.3: after REBOOTING come back soon; after BUSY or DO_NOT_WANT_TO_TALK not
        soon = cause in (None, base.DISCONNECT_REBOOTING)
        super().__init__(f"peer disconnected (DPR, Disconnect-Cause {cause})", retry_soon=soon)
        self.dpa = dpa


def _disconnect_cause(msg: Message) -> int | None:
    try:
        return base.unsigned(msg.avps, base.AVP_DISCONNECT_CAUSE)
    except base.RequestError:
        return None


def hop_by_hop_of(frame: bytes) -> int:
    return int.from_bytes(frame[HEADER_HOP_BY_HOP], "big")
