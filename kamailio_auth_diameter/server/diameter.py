"""The RFC 6733 responder peer with the RFC 4740 SIP application and 3GPP Cx (``--diameter-listen``).

:class:`PeerSession` is the pure per-connection state machine (bytes of one message
in, bytes to send and whether to close out); :class:`DiameterProtocol` and
:func:`serve_diameter` are the thin asyncio shell around it.

The server never initiates a connection: it is a pure responder. The election of
RFC 6733 §5.6.4 only arbitrates between two connections that two peers opened to
each other at the same time, so it never happens here. Several connections from
one Origin-Host (one per Kamailio worker) are all accepted, and every answer goes
back on the connection its request came in on.

Per connection: the first message must be a CER (anything else closes it). A CER
from an Origin-Host outside ``--peers`` gets CEA 3010, one that names none of
application 6, Cx (16777216, in Vendor-Specific-Application-Id or not) and the relay
application gets 5010, one that demands TLS in-band gets 5017; each is closed after
its CEA. Our CEA names application 6, and Cx as Vendor-Specific-Application-Id{10415,
16777216} with Supported-Vendor-Id 10415. Then DWR -> DWA; DPR -> DPA and close;
MAR and SAR (application 6) -> :class:`~.auth.SipAuthority`, Cx MAR (303) ->
:class:`~.auth.CxAuthority`. A command we do not serve gets 3001, an application
other than 0, 6 and Cx 3007, a request with the E bit 3008, an unknown AVP with the
M bit 5001, a missing one 5005. Bytes that are not a well-formed message close the
connection (§5.1). On shutdown every open peer gets a DPR (REBOOTING) and a moment
to answer it.

H(A1) delegation (RFC 4740 Flow B, Cx): a connection whose CER's Origin-Host matches
an ``--ha1-peer`` pattern (:func:`name_matches`: ``*.proxy.example.com`` names every
worker ``w<rank>.proxy.example.com`` of a proxy) is trusted with H(A1)s, decided once
at the CER and kept for the connection's life. It is the connection's peer that is
trusted, not the Origin-Host a request claims: through a relay, the relay is the peer
(name it, and let it admit only proxies). On TLS with ``--tls-ca`` that Origin-Host is
already one the client's certificate names (below), so the trust rests on the
certificate; on clear TCP it rests on the Origin-Host alone, which ``--allow`` should
confine to the proxies' addresses.

``--diameter-tls-listen`` serves the same state machine over TLS (RFC 6733 §2.1,
port 5658): asyncio completes the handshake before the protocol sees the
connection, so the CER is the first thing read from it either way. With
``--tls-ca`` the client's certificate is verified, and the CER's Origin-Host must be
one of the names it vouches for (:func:`certificate_names`, :func:`name_matches`),
else CEA 3010: a certificate from the CA does not let its holder speak as another
peer. ``--allow``, connection caps, timeouts and back-pressure are :mod:`.listener`'s.

Every request answered is counted in the process's :class:`~.metrics.Metrics` by its
type and result, CER, DWR and DPR too; so are H(A1)s handed over and Cx MARs refused
them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from diameter.message import Message
from diameter.message.avp import Avp

from ..wire import base, cx, sip_app
from ..wire.base import Capabilities, Identity, RequestError
from .auth import CxAuthority, DiameterRequest, SipAuthority
from .limits import Limits
from .listener import Connection, Guard, ServerStats
from .metrics import CER, CX, CX_MAR, DPR, DWR, MAR, OTHER, RFC4740, SAR, Metrics

log = logging.getLogger("kamailio_auth_diameter.server")
_APP_SIP = sip_app.APP_SIP.to_bytes(4, "big")
_SIP_COMMANDS = frozenset(c.to_bytes(3, "big") for c in (sip_app.CMD_MULTIMEDIA_AUTH, sip_app.CMD_SERVER_ASSIGNMENT))
_APP_CX = cx.APP_CX.to_bytes(4, "big")
_CX_MAR = cx.CMD_MULTIMEDIA_AUTH.to_bytes(3, "big")
_SERVED = frozenset({sip_app.APP_SIP, cx.APP_CX, base.APP_RELAY})  # what a CER must name one of
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_REQUEST_TYPES = {  # (application, command) -> the metrics' type label
    (base.APP_COMMON, base.CMD_CAPABILITIES_EXCHANGE): CER,
    (base.APP_COMMON, base.CMD_DEVICE_WATCHDOG): DWR,
    (base.APP_COMMON, base.CMD_DISCONNECT_PEER): DPR,
    (sip_app.APP_SIP, sip_app.CMD_MULTIMEDIA_AUTH): MAR,
    (sip_app.APP_SIP, sip_app.CMD_SERVER_ASSIGNMENT): SAR,
    (cx.APP_CX, cx.CMD_MULTIMEDIA_AUTH): CX_MAR,
}

PRODUCT_NAME = "kamailio_auth_diameter"
DPR_GRACE = 2.0  # seconds the peers get to answer our DPR at shutdown


def parse_peers(text: str) -> frozenset[str] | None:
    """``--peers``: "any" (None) or comma-separated Origin-Hosts, compared case-insensitively."""
    if text.strip().lower() == "any":
        return None
    hosts = frozenset(h.strip().lower() for h in text.split(",") if h.strip())
    if not hosts:
        raise ValueError(f"--peers {text!r} names no host")
    return hosts


def parse_ha1_peer(text: str) -> str:
    """``--ha1-peer``: an Origin-Host, or ``*.`` and a domain for every host one label
    below it (:func:`name_matches`); ValueError for anything else."""
    pattern = text.strip().lower().rstrip(".")
    labels = pattern.split(".")
    if labels[0] == "*" and len(labels) > 2:  # not "*.com": a pattern names one operator's hosts
        labels = labels[1:]
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"--ha1-peer {text!r} is not a host name, nor '*.' and a domain of at least two labels")
    return pattern


def certificate_names(peercert: dict) -> tuple[str, ...]:
    """The names a verified client certificate (in ``SSLSocket.getpeercert()`` form)
    vouches for: its DNS subjectAltNames, or its CN when it has none (RFC 6125 §6.4.4)."""
    dns = tuple(value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
    if dns:
        return dns
    return tuple(value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName")


def name_matches(host: str, name: str) -> bool:
    """Whether the DiameterIdentity ``host`` is the certificate name ``name``, case-insensitively.

    A leftmost label of just ``*`` matches exactly one label, and nothing else is a
    wildcard: ``*.sip1.example.com`` names each Kamailio worker ``w<rank>.sip1.example.com``
    of a proxy whose origin_host is ``sip1.example.com``, but neither that host itself nor
    ``a.b.sip1.example.com``."""
    host, name = host.lower().rstrip("."), name.lower().rstrip(".")
    if "*" in host or not host:
        return False
    if name.startswith("*.") and len(name) > 2:
        label, _, rest = host.partition(".")
        return bool(label) and rest == name[2:]
    return host == name


class TlsSetupError(Exception):
    """A TLS option names a file that cannot serve; the message names the option."""


def server_tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """TLS 1.2 or later (RFC 6733 §13.1 rules out older versions); with ``ca``, peers must
    present a certificate that CA signed.

    Each file is checked on its own first, since OpenSSL's error for a failed
    load_cert_chain does not say whether the certificate or the key was wrong.
    """
    for option, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)):
        if path is not None:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise TlsSetupError(f"{option} {path}: {exc.strerror}") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except ssl.SSLError as exc:
        raise TlsSetupError(f"--tls-cert {cert}: no PEM certificate in it ({exc.reason or exc})") from None

    def encrypted() -> bytes:
        # Without this callback OpenSSL would prompt on the terminal: a daemon would hang.
        raise TlsSetupError(f"--tls-key {key}: the key is encrypted; give an unencrypted one")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=encrypted)
    except ssl.SSLError as exc:
        raise TlsSetupError(f"--tls-key {key}: not the private key of --tls-cert ({exc.reason or exc})") from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise TlsSetupError(f"--tls-ca {ca}: no PEM certificate in it ({exc.reason or exc})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class PeerState(enum.Enum):
    WAIT_CER = "wait-cer"
    OPEN = "open"  # R-Open
    CLOSING = "closing"  # we sent DPR


@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes = b""
    close: bool = False


class DiameterResponder:
    """What every connection of one server process shares: identity, policy, decisions, counters."""

    def __init__(
        self,
        authority: SipAuthority,
        identity: Identity,
        peers: frozenset[str] | None,
        origin_state_id: int | None = None,
        watchdog_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        ha1_peers: tuple[str, ...] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self.authority = authority
        self.metrics = metrics or Metrics()
        self.cx = CxAuthority(authority.store, self.metrics)
        self.ha1_peers = ha1_peers  # --ha1-peer patterns (parse_ha1_peer)
        self.watchdog_interval = watchdog_interval  # Tw in seconds; None: never send DWR
        self.clock = clock
        self.identity = identity
        self.peers = peers
        # Origin-State-Id must grow with every restart (RFC 6733 §8.16): the start time does.
        self.origin_state_id = int(time.time()) & 0xFFFFFFFF if origin_state_id is None else origin_state_id
        self.end_to_end = base.EndToEnd()
        self.stats = ServerStats()

    def capabilities(self, local_address: str) -> Capabilities:
        return Capabilities(
            identity=self.identity,
            host_ip_addresses=(local_address,),
            auth_application_ids=(sip_app.APP_SIP,),
            product_name=PRODUCT_NAME,
            origin_state_id=self.origin_state_id,
            supported_vendor_ids=(cx.VENDOR_3GPP,),
            vendor_applications=(cx.APPLICATION,),
        )

    def trusts_with_ha1(self, origin_host: str) -> bool:
        return any(name_matches(origin_host, pattern) for pattern in self.ha1_peers)


class PeerSession:
    """One connection's peer state machine, responder side; no I/O."""

    def __init__(
        self,
        responder: DiameterResponder,
        local_address: str,
        remote: str = "?",
        certificate_names: tuple[str, ...] | None = None,
    ) -> None:
        self._r = responder
        self._caps = responder.capabilities(local_address)
        self._hop_by_hop = base.HopByHop()
        self.remote = remote
        # the names of the peer's verified TLS certificate, which its Origin-Host must be one of;
        # None: no certificate (clear TCP, or TLS without --tls-ca)
        self.certificate_names = certificate_names
        self.state = PeerState.WAIT_CER
        self.peer_host: str | None = None
        self.ha1_trusted = False  # the peer's Origin-Host matches an --ha1-peer: set at its CER
        self.last_received = responder.clock()
        self._dwr_sent = False

    def watchdog(self) -> tuple[Reply, float | None]:
        """RFC 3539 §3.4.1 for an open peer: after Tw of silence a DWR, after another Tw
        without a word (a worker that never runs while idle) the connection is closed;
        a connection that sends no CER within Tw is closed too. Returns what to do now
        and in how many seconds to ask again (None: never)."""
        tw = self._r.watchdog_interval
        if tw is None:
            return Reply(), None
        silent = self._r.clock() - self.last_received
        if self.state is PeerState.WAIT_CER:
            if silent >= tw:
                log.warning("closing Diameter connection from %s: no CER within %.0f s", self.remote, tw)
                return Reply(close=True), None
            return Reply(), tw - silent
        if self.state is not PeerState.OPEN:
            return Reply(), tw
        if silent >= 2 * tw and self._dwr_sent:
            log.info("closing Diameter connection of %s (%s): silent for %.0f s", self.peer_host, self.remote, silent)
            return Reply(close=True), None
        if silent >= tw and not self._dwr_sent:
            self._dwr_sent = True
            dwr = base.encode_dwr(self._r.identity, self._r.origin_state_id, self._hop_by_hop(), self._r.end_to_end())
            return Reply(dwr), 2 * tw - silent
        return Reply(), (2 * tw if self._dwr_sent else tw) - silent

    def receive(self, raw: bytes) -> Reply:
        """What to send back for one message, and whether to close. Anything we cannot
        decode, or cannot answer within a frame, closes the connection (RFC 6733 §5.1)."""
        self.last_received = self._r.clock()
        self._dwr_sent = False
        try:
            return self._receive(raw)
        except base.DecodeError as exc:
            log.warning("closing Diameter connection from %s: %s", self.remote, exc)
            return Reply(close=True)

    def _receive(self, raw: bytes) -> Reply:
        if (
            self.state is PeerState.OPEN
            and len(raw) >= 20
            and raw[4] & (base.FLAG_REQUEST | base.FLAG_ERROR) == base.FLAG_REQUEST
            and raw[8:12] == _APP_SIP
            and raw[5:8] in _SIP_COMMANDS
        ):
            return self._sip(raw)
        if (
            self.state is PeerState.OPEN
            and len(raw) >= 20
            and raw[4] & (base.FLAG_REQUEST | base.FLAG_ERROR) == base.FLAG_REQUEST
            and raw[8:12] == _APP_CX
            and raw[5:8] == _CX_MAR
        ):
            return self._cx(raw)
        msg = base.decode(raw, sip_app.GROUPED)
        h = msg.header
        if h.is_request and h.command_code == base.CMD_CAPABILITIES_EXCHANGE:
            return self._capabilities_exchange(msg)  # also in R-Open, which answers a repeated CER
        if self.state is PeerState.WAIT_CER:
            log.warning("closing Diameter connection from %s: command %d before CER", self.remote, h.command_code)
            return Reply(close=True)
        if not h.is_request:
            # We only ever send a DPR; its DPA ends the connection. Any other answer
            # cannot match a request of ours and is discarded (RFC 6733 §6.2.1).
            return Reply(close=h.command_code == base.CMD_DISCONNECT_PEER and self.state is PeerState.CLOSING)
        if h.command_flags & base.FLAG_ERROR:
            return self._error(msg, RequestError(base.RESULT_INVALID_HDR_BITS, "E bit set in a request"))
        if h.application_id == base.APP_COMMON:
            if h.command_code == base.CMD_DEVICE_WATCHDOG:
                self._r.metrics.request(DWR, base.RESULT_SUCCESS)
                return Reply(base.encode_dwa(msg, self._r.identity, self._r.origin_state_id))
            if h.command_code == base.CMD_DISCONNECT_PEER:
                log.debug("DPR from %s (%s)", self.peer_host, self.remote)
                self._r.metrics.request(DPR, base.RESULT_SUCCESS)
                return Reply(base.encode_dpa(msg, self._r.identity), close=True)
        elif h.application_id == sip_app.APP_SIP:
            if h.command_code in (sip_app.CMD_MULTIMEDIA_AUTH, sip_app.CMD_SERVER_ASSIGNMENT):
                return self._sip(raw)
        elif h.application_id == cx.APP_CX:
            if h.command_code == cx.CMD_MULTIMEDIA_AUTH:
                return self._cx(raw)
        else:
            return self._error(
                msg, RequestError(base.RESULT_APPLICATION_UNSUPPORTED, f"application {h.application_id} is not served")
            )
        return self._error(
            msg,
            RequestError(
                base.RESULT_COMMAND_UNSUPPORTED,
                f"command {h.command_code} is not served in application {h.application_id}",
            ),
        )

    def disconnect(self) -> bytes | None:
        """A DPR (REBOOTING) for an open peer, at shutdown; None if there is nobody to tell."""
        if self.state is not PeerState.OPEN:
            return None
        self.state = PeerState.CLOSING
        return base.encode_dpr(self._r.identity, base.DISCONNECT_REBOOTING, self._hop_by_hop(), self._r.end_to_end())

    def _count(self, kind: str, result_code: int) -> None:
        stats = self._r.stats
        stats.requests += 1
        stats.by_result[result_code] = stats.by_result.get(result_code, 0) + 1
        self._r.metrics.request(kind, result_code)

    def _error(self, msg: Message, error: RequestError) -> Reply:
        h = msg.header
        self._count(_REQUEST_TYPES.get((h.application_id, h.command_code), OTHER), error.result_code)
        log.debug("%s from %s: %d (%s)", msg.header.command_code, self.remote, error.result_code, error)
        app = msg.header.application_id
        body = sip_app.session_avps() if app == sip_app.APP_SIP else cx.session_avps() if app == cx.APP_CX else []
        return Reply(base.encode_error(msg, self._r.identity, error, body))

    def _capabilities_exchange(self, msg: Message) -> Reply:
        def refuse(code: int, why: str, failed: Avp | None = None) -> Reply:
            log.warning("refused CER from %s: %s", self.remote, why)
            self._r.metrics.request(CER, code)
            return Reply(base.encode_cea(msg, self._caps, code, why, failed), close=True)

        try:
            unknown = base.unknown_mandatory(msg.avps, base.RECOGNISED, base.GROUPED)
            if unknown is not None:
                return refuse(base.RESULT_AVP_UNSUPPORTED, f"unknown mandatory AVP {unknown.code}", unknown)
            peer = base.decode_capabilities(msg)
        except RequestError as exc:
            return refuse(exc.result_code, str(exc), exc.failed_avp)
        host = peer.identity.origin_host
        if self._r.peers is not None and host.lower() not in self._r.peers:
            return refuse(base.RESULT_UNKNOWN_PEER, f"Origin-Host {host!r} is not in --peers")
        names = self.certificate_names
        if names is not None and not any(name_matches(host, name) for name in names):
            return refuse(
                base.RESULT_UNKNOWN_PEER,
                f"Origin-Host {host!r} is not a name of its TLS certificate ({', '.join(names) or 'it has none'})",
            )
        if not _SERVED & peer.applications:
            return refuse(base.RESULT_NO_COMMON_APPLICATION, f"no common application in {sorted(peer.applications)}")
        if peer.inband_security_ids and 0 not in peer.inband_security_ids:
            return refuse(base.RESULT_NO_COMMON_SECURITY, "in-band TLS is not offered")
        self.state = PeerState.OPEN
        self.peer_host = host
        self.ha1_trusted = self._r.trusts_with_ha1(host)
        self._r.stats.connections += 1
        self._r.metrics.request(CER, base.RESULT_SUCCESS)
        log.debug("CER from %s (%s) accepted%s", host, self.remote, ", trusted with HA1" if self.ha1_trusted else "")
        return Reply(base.encode_cea(msg, self._caps, base.RESULT_SUCCESS))

    def _sip(self, raw: bytes) -> Reply:
        """MAR and SAR from an open peer, on the lean codec; an error answer (with its
        Failed-AVP) is built from python-diameter's decoding of the same bytes.
        DecodeError (close the connection) goes to :meth:`receive`."""
        identity, authority = self._r.identity, self._r.authority
        try:
            msg = base.decode_lean(raw)
            unknown = base.lean_unknown_mandatory(msg.avps, sip_app.RECOGNISED, sip_app.GROUPED)
            if unknown is not None:
                raise RequestError(base.RESULT_AVP_UNSUPPORTED, f"unknown mandatory AVP {unknown.code}", unknown)
            if msg.command == sip_app.CMD_MULTIMEDIA_AUTH:
                mar = sip_app.decode_mar(msg)
                request = DiameterRequest(f"{mar.origin_host};{msg.end_to_end}", bool(msg.flags & base.FLAG_RETRANSMIT))
                maa = authority.multimedia_auth(mar, request, ha1=self.ha1_trusted)
                kind, code, data = MAR, maa.result_code, sip_app.encode_maa(msg, identity, maa)
                if maa.ha1s:
                    self._r.metrics.ha1_given(RFC4740)
            else:
                saa = authority.server_assignment(sip_app.decode_sar(msg))
                kind, code, data = SAR, saa.result_code, sip_app.encode_saa(msg, identity, saa)
        except RequestError as exc:
            return self._error(base.decode(raw, sip_app.GROUPED), exc)
        self._count(kind, code)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("command %d from %s -> %d", msg.command, self.peer_host, code)
        return Reply(data)

    def _cx(self, raw: bytes) -> Reply:
        """A Cx MAR from an open peer, as :meth:`_sip` does for application 6."""
        try:
            msg = base.decode_lean(raw)
            unknown = base.lean_unknown_mandatory(msg.avps, cx.RECOGNISED, cx.GROUPED)
            if unknown is not None:
                raise RequestError(base.RESULT_AVP_UNSUPPORTED, f"unknown mandatory AVP {unknown.code}", unknown)
            maa = self._r.cx.multimedia_auth(cx.decode_mar(msg), self.ha1_trusted)
            data = cx.encode_maa(msg, self._r.identity, maa)
        except RequestError as exc:
            return self._error(base.decode(raw, cx.GROUPED), exc)
        code = maa.experimental_result if maa.experimental_result is not None else maa.result_code
        self._count(CX_MAR, code or 0)
        if not self.ha1_trusted:
            self._r.metrics.ha1_refused()
        elif maa.ha1s:
            self._r.metrics.ha1_given(CX)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("command %d from %s -> %s", msg.command, self.peer_host, code)
        return Reply(data)


class DiameterProtocol(Connection):
    """The asyncio shell around one PeerSession."""

    def __init__(
        self,
        responder: DiameterResponder,
        guard: Guard,
        sessions: set[DiameterProtocol],
        kind: str = "Diameter",
        listener: str = "diameter",
    ) -> None:
        super().__init__(guard, responder.stats)
        self.kind = kind
        self.listener = listener
        self._responder = responder
        self._sessions = sessions
        self.session: PeerSession | None = None
        self.gone = asyncio.get_running_loop().create_future()
        self._timer: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        assert self.transport is not None
        local = self.transport.get_extra_info("sockname")
        peercert = self.transport.get_extra_info("peercert")
        names = certificate_names(peercert) if peercert else None
        self.session = PeerSession(self._responder, local[0] if local else "127.0.0.1", self.remote, names)
        self._sessions.add(self)
        self._watchdog()

    def _watchdog(self) -> None:
        if self.session is None or self.transport is None:
            return
        reply, again = self.session.watchdog()
        if reply.data:
            self.transport.write(reply.data)
        if reply.close:
            self.close()
        elif again is not None:
            self._timer = asyncio.get_running_loop().call_later(max(again, 0.01), self._watchdog)

    def message(self, raw: bytes) -> tuple[bytes, bool]:
        assert self.session is not None
        reply = self.session.receive(raw)
        return reply.data, reply.close

    def send_disconnect(self) -> None:
        dpr = self.session.disconnect() if self.session is not None else None
        if dpr is not None and self.transport is not None:
            self.transport.write(dpr)
        else:
            self.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._sessions.discard(self)
        if not self.gone.done():
            self.gone.set_result(None)


async def serve_diameter(
    responder: DiameterResponder,
    sock: socket.socket,
    stop: asyncio.Event,
    tls: ssl.SSLContext | None = None,
    guard: Guard | None = None,
) -> None:
    """Serve until ``stop`` (over TLS with ``tls``); then DPR every open peer and give them
    DPR_GRACE to answer. ``guard`` is the process's, shared with the other listeners
    (default: one of its own with the default limits, allowing everyone)."""
    guard = guard if guard is not None else Guard(Limits(), [])
    sessions: set[DiameterProtocol] = set()
    kind, listener = ("Diameter over TLS", "diameter_tls") if tls is not None else ("Diameter", "diameter")
    accepting = asyncio.create_task(
        guard.serve(sock, lambda: DiameterProtocol(responder, guard, sessions, kind, listener), responder.stats, tls)
    )
    try:
        await stop.wait()
    finally:
        accepting.cancel()
        sock.close()
        open_now = list(sessions)
        for proto in open_now:
            proto.send_disconnect()
        if open_now:
            await asyncio.wait([p.gone for p in open_now], timeout=DPR_GRACE)
        for proto in list(sessions):
            proto.abort()
