"""A worker's Diameter client: its peers, load sharing and failover (RFC 6733 §5.5.4).

One :class:`~.peer.PeerLink` per configured peer, opened when a request first needs
it. Each request goes to the next usable peer (:mod:`..routing`). When that peer
dies with the request outstanding, or stays silent past ``failover_timeout``, the
request is re-sent once to another peer with the T flag and the same end-to-end
id, so the server side can spot the duplicate. An answer with the E bit and 3002
(UNABLE_TO_DELIVER) or 3004 (TOO_BUSY) is re-sent once too, with the same end-to-
end id but without the T flag: the first copy was answered, so it cannot be a
duplicate (RFC 6733 §3: T marks requests that got no answer). A peer whose
connect fails is not a re-send: the next peer gets the first copy. With no other
peer usable, a request whose connection broke under it is re-sent once to the
same peer on a new connection (a server restart met under load).

Only a failed connect (or a refusal) keeps requests away from a peer for a while
(:mod:`..routing`); a late answer or a broken connection only puts the peer after
the others, so one hiccup of a server never turns into a spell of 500s. A request
too large for a frame (RequestTooLarge) is nobody's failure: it is never sent.

The identity is per worker (see :func:`worker_identity`), so each connection is a
distinct peer in the server's peer table, as RFC 6733 expects of one connection
per peer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .. import metrics, routing
from ..metrics import Events, no_events
from ..peer_state import PeerProtocol
from ..settings import PeerAddress, Settings, peer_addresses
from ..wire import base
from ..wire.base import Capabilities, Identity, VendorApplication
from .peer import ConnectFailed, PeerDown, PeerLink, PeerTimeout
from .resolve import local_fqdn
from .stream import TransportError
from .tls import client_context

PRODUCT_NAME = "kamailio_auth_diameter"
FAILOVER_RESULTS = frozenset({3002, 3004})  # UNABLE_TO_DELIVER, TOO_BUSY
FQDN_WAIT = 0.2  # s: resolve_identity's bound on the FQDN lookup when it is given no default host


@dataclass(frozen=True, slots=True)
class LocalPeer:
    """Who this worker is on the wire: ``applications`` go into its CER as Auth-Application-Id
    (RFC 4740: 6), ``vendor_applications`` as Vendor-Specific-Application-Id with their
    vendors as Supported-Vendor-Id (3GPP Cx: 10415, 16777216)."""

    identity: Identity
    applications: tuple[int, ...]
    origin_state_id: int
    vendor_applications: tuple[VendorApplication, ...] = ()


def worker_identity(origin_host: str, rank: int | None, pid: int) -> str:
    """``w<rank>.<origin_host>`` for a SIP worker (stable across restarts, so the
    server's peer table does not fill with dead entries), ``p<pid>.<origin_host>`` for
    processes whose rank is not unique (rank <= 0: timers, async workers, main)."""
    label = f"w{rank}" if rank is not None and rank > 0 else f"p{pid}"
    return f"{label}.{origin_host}"


def resolve_identity(s: Settings, rank: int | None, default_host: str | None = None) -> tuple[str, str, str]:
    """(Origin-Host of this process, Origin-Realm, Destination-Realm) from the settings.

    Without ``origin_host`` the base name is ``default_host``, which the caller got from
    :func:`~.resolve.local_fqdn` at start-up; failing that, ``local_fqdn(FQDN_WAIT)``:
    the FQDN takes DNS, which must not hold a request for long.
    """
    base_host = s.origin_host or default_host or local_fqdn(FQDN_WAIT)
    realm = s.origin_realm or (base_host.partition(".")[2] or "localdomain")
    return worker_identity(base_host, rank, os.getpid()), realm, s.destination_realm or realm


class DiameterClient:
    """``events`` hears what the peers' links report, and of timeouts and failovers."""

    def __init__(
        self, local: LocalPeer, clock: Callable[[], float] = time.monotonic, events: Events = no_events
    ) -> None:
        self._local = local
        self._clock = clock
        self._events = events
        self._links: list[PeerLink] = []
        self._routing = routing.Routing(1, 0, clock)
        self._end_to_end = base.EndToEnd()
        self._peers: tuple[PeerAddress, ...] = ()
        self._tls_key: tuple[object, ...] = ()
        self.failover_timeout = 1.0
        self.offset = 0  # where this worker starts its round robin

    @property
    def links(self) -> list[PeerLink]:
        return self._links

    def configure(self, s: Settings, deadline: float | None = None) -> None:
        """Apply settings; a changed peer list or TLS setting replaces the connections,
        each closed with a DPR whose waits end by ``deadline`` (see PeerLink.close).

        SettingsError (a TLS file that cannot be used) leaves everything as it was.
        """
        peers = peer_addresses(s)
        tls_key = (s.use_tls, s.tls_ca_file, s.tls_cert_file, s.tls_key_file, s.watchdog_interval)
        if peers != self._peers or tls_key != self._tls_key:
            tls = client_context(s) if s.use_tls else None
            self.close(deadline)
            make = self._protocol_factory(s)
            self._links = [PeerLink(address, make, self._clock, self._events) for address in peers]
            for link in self._links:
                link.tls = tls
            self._routing = routing.Routing(len(peers), self.offset, self._clock)
            self._peers, self._tls_key = peers, tls_key
        for link in self._links:
            link.connect_timeout = s.connect_timeout / 1000.0
        self.failover_timeout = s.failover_timeout / 1000.0
        self._routing.interval = s.reconnect_interval / 1000.0
        self._routing.ceiling = max(s.reconnect_max, s.reconnect_interval) / 1000.0

    def _protocol_factory(self, s: Settings) -> Callable[[str], PeerProtocol]:
        local = self._local
        tw = s.watchdog_interval / 1000.0

        def make(address: str) -> PeerProtocol:
            caps = Capabilities(
                identity=local.identity,
                host_ip_addresses=(address,),
                auth_application_ids=local.applications,
                product_name=PRODUCT_NAME,
                origin_state_id=local.origin_state_id,
                supported_vendor_ids=tuple(sorted({a.vendor_id for a in local.vendor_applications})),
                vendor_applications=local.vendor_applications,
            )
            return PeerProtocol(caps, tw, self._clock, end_to_end=self._end_to_end)

        return make

    def close(self, deadline: float | None = None) -> None:
        for link in self._links:
            link.close(deadline=deadline)

    def request(self, build: Callable[[int, int, bool], bytes], start: float, timeout: float) -> bytes:
        """The answer frame to ``build(hop_by_hop, end_to_end, retransmit)``.

        TransportError when no peer answered before ``start + timeout``; its message
        lists what happened with each peer tried. RequestTooLarge (a TransportError)
        when ``build`` makes more than a frame may hold: nothing is sent, and no peer or
        connection suffers for it.
        """
        deadline = start + timeout
        end_to_end = self._end_to_end()
        candidates = self._routing.candidates()
        if not candidates:
            waits = (f"{link.address} for {self._routing.down_for(i):.1f} s" for i, link in enumerate(self._links))
            raise TransportError("every peer is backing off after failures: " + ", ".join(waits))
        problems: list[str] = []
        sends = 0
        retransmit = False
        queue = list(candidates)
        for position, index in enumerate(queue):
            if sends == 2 or self._clock() >= deadline:
                break
            link = self._links[index]
            last = sends == 1 or position == len(queue) - 1
            attempt_deadline = deadline if last else min(deadline, self._clock() + self.failover_timeout)
            if sends:
                self._events(metrics.FAILOVER)
            try:
                frame = link.exchange(partial(_build_with, build, end_to_end, retransmit), attempt_deadline)
            except PeerTimeout as exc:
                self._events(metrics.TIMEOUT)
                self._routing.silent(index)
                problems.append(str(exc))
                sends += 1
                retransmit = True
                continue
            except PeerDown as exc:
                if isinstance(exc, ConnectFailed) or not exc.retry_soon:  # not reachable, or told to go away
                    self._routing.failed(index, exc.retry_soon)
                else:
                    self._routing.silent(index)
                problems.append(str(exc))
                if exc.sent:
                    sends += 1
                    retransmit = True
                    if len(candidates) == 1 and len(queue) == 1:
                        queue.append(index)  # no other peer: its re-send goes to this one on a new connection
                continue
            self._routing.succeeded(index)
            refused = _failover_result(frame)
            if refused is None:
                return frame
            problems.append(f"{link.address}: answered {refused}")
            sends += 1
        raise TransportError("; ".join(problems) or "the deadline passed before any peer was tried")


def _build_with(build: Callable[[int, int, bool], bytes], end_to_end: int, retransmit: bool, hop: int) -> bytes:
    return build(hop, end_to_end, retransmit)


def _failover_result(frame: bytes) -> int | None:
    """3002/3004 in an answer with the E bit (a hop could not deliver it), else None."""
    if not frame[4] & base.FLAG_ERROR:
        return None
    try:
        code = base.unsigned(base.decode(frame).avps, base.AVP_RESULT_CODE)
    except Exception:  # noqa: BLE001 - not ours to judge: the caller decodes the answer and says what is wrong
        return None
    return code if code in FAILOVER_RESULTS else None
