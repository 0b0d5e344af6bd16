"""A worker's Diameter client for the modes that speak RFC 6733, and its lifecycle.

Each SIP worker owns its peer connections (Kamailio 5.6 runs no Python thread while a
worker waits for SIP). The worker's identity, ``w<rank>.<origin_host>``, comes from
the settings; when they change, the old connections are parted from (DPR, DPA, FIN)
within the deadline of the request that noticed, and a new client is built.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from .. import metrics
from ..settings import Settings
from ..transport.client import DiameterClient, LocalPeer, resolve_identity
from ..transport.stream import RequestTooLarge, TransportError
from ..wire import base
from .contract import Environment

A = TypeVar("A")


class PeerClient:
    def __init__(
        self,
        env: Environment,
        applications: tuple[int, ...],
        vendor_applications: tuple[base.VendorApplication, ...] = (),
    ) -> None:
        self._env = env
        self._applications = applications
        self._vendor_applications = vendor_applications
        self.base_host = ""  # origin_host, or this host's FQDN: what the worker identities are named after
        self._client: DiameterClient | None = None
        self._identity: tuple[str, str, str] = ("", "", "")  # origin host, origin realm, destination realm
        self._timeout = 0.0
        self.origin = base.Identity("", "")  # Origin-Host/Realm of this worker's requests
        self.sessions = base.SessionIds("")

    @property
    def destination_realm(self) -> str:
        return self._identity[2]

    def configure(self, settings: Settings, deadline: float) -> None:
        """SettingsError (a TLS file that cannot be used) leaves the connections as they were."""
        env = self._env
        identity = resolve_identity(settings, env.rank, env.host_name)
        if self._client is None or identity != self._identity:
            if self._client is not None:
                self._client.close(deadline)
            origin = base.Identity(identity[0], identity[1])
            local = LocalPeer(origin, self._applications, int(time.time()), self._vendor_applications)
            self._client = DiameterClient(local, clock=env.clock, events=env.events)
            self._client.offset = env.rank if env.rank is not None and env.rank > 0 else os.getpid()
            self._identity, self.origin = identity, origin
            self.sessions = base.SessionIds(origin.origin_host)
            self.base_host = identity[0].partition(".")[2]
        self._client.configure(settings, deadline)
        self._timeout = settings.answer_timeout / 1000.0

    def close(self, deadline: float | None) -> None:
        if self._client is not None:
            self._client.close(deadline)

    def ask(
        self,
        build: Callable[[int, int, bool], bytes],
        start: float,
        decode: Callable[[bytes], tuple[base.AnswerInfo, A]],
        unusable: str,
    ) -> A | None:
        """The decoded answer to ``build``'s request, or None after logging why not."""
        assert self._client is not None, "configure() first"
        try:
            frame = self._client.request(build, start, self._timeout)
        except RequestTooLarge:
            raise
        except TransportError as exc:
            self._env.events(metrics.EXCHANGE_FAILED)
            self._env.log(f"Diameter exchange failed: {exc}")
            return None
        try:
            return decode(frame)[1]
        except (base.DecodeError, base.RequestError) as exc:
            self._env.events(metrics.EXCHANGE_FAILED)
            self._env.log(f"{unusable}: {exc}")
            return None
