"""The contract every mode's backend keeps, and what a worker's backends share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..authorize import AuthContext
from ..group import GroupContext
from ..metrics import Events, no_events
from ..outcome import Outcome
from ..settings import Settings


@dataclass
class Environment:
    """What every backend of one worker shares: who the worker is and how to report.

    ``rank`` is Kamailio's process rank (it names the worker's Diameter identity),
    ``host_name`` this machine's FQDN found at start-up (no DNS inside a request),
    ``log`` the plugin's rate-limited error log, ``ksr`` Kamailio's KSR object for
    backends that keep state in Kamailio's shared memory (None in unit tests that give
    such a backend its tables directly), ``events`` what the connections and exchanges
    report for Kamailio's statistics (metrics.Recorder.event: a metrics event name, or
    any counter name the cfg declares, and for metrics.ANSWER the round-trip time),
    ``instance`` four hex digits naming this Kamailio (all its workers) in the nonces it
    makes, chosen before it forks ("" where there is one process: one is made up),
    ``started`` the wall-clock time it started (0: unknown): the counts of the nonces
    made before then, by it or by another host, were not kept here.
    """

    clock: Callable[[], float]
    log: Callable[[str], None]
    host_name: str | None = None
    rank: int | None = None
    ksr: Any = None
    events: Events = no_events
    instance: str = ""
    started: float = 0.0


class Backend(Protocol):
    """One mode. Every method returns a verdict; none raises for anything a peer, the
    network or a SIP client does (RequestTooLarge excepted: the plugin answers 400)."""

    def configure(self, settings: Settings, deadline: float) -> None:
        """Apply (possibly changed) settings; SettingsError if they cannot be used."""

    def authorize(self, ctx: AuthContext, proxy: bool, msgid: int, start: float) -> Outcome:
        """The outcome of diameter_www_authorize (proxy False) or _proxy_authorize."""

    def challenge(self, realm: str, proxy: bool) -> Outcome | None:
        """The reply to a request without credentials for the script's ``realm``, when
        this mode challenges without the server; None: plan and authorize as usual.
        Such a reply needs nothing else from the request, so the plugin reads nothing
        else: half of every flow is a first, unauthenticated request."""

    def is_user_in(self, ctx: GroupContext, group: str, msgid: int, start: float) -> int:
        """diameter_is_user_in's return code: group.USER_IN or group.ERROR."""

    def close(self, deadline: float | None) -> None:
        """Part from the peers (a DPR where the protocol has one), by ``deadline``."""
