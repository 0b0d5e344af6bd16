"""One backend per mode, behind one contract, chosen from the settings in one place.

The plugin (kamailio/plugin.py) reads the SIP request, plans it (authorize.plan,
group.plan), hands the plan to the backend of the ``protocol`` setting and turns what
comes back into a reply. A backend owns its connections and its wire format; the
plugin never asks which mode it is in. :data:`BACKENDS` is the only place that maps
a ``protocol`` value to a backend.
"""

from __future__ import annotations

from collections.abc import Callable

from ..settings import Settings
from .contract import Backend, Environment
from .cx_source import CxSource
from .ha1_source import Rfc4740Ha1Source
from .legacy import LegacyBackend
from .rfc4740 import Rfc4740Backend
from .shared import SharedTables
from .verify import VerifyBackend, read_secret

__all__ = ["BACKENDS", "Backend", "Environment", "check_at_startup", "choose", "needs_host_name"]

# Each factory takes the worker's Environment and, for the verifying modes, the tables
# they keep their nonce counts and HA1 cache in (None: Kamailio's htables).
BACKENDS: dict[str, Callable[[Environment, SharedTables | None], Backend]] = {
    "legacy": lambda env, tables: LegacyBackend(env),
    "rfc4740": lambda env, tables: Rfc4740Backend(env),
    "rfc4740-ha1": lambda env, tables: VerifyBackend(env, Rfc4740Ha1Source(env), tables),
    "cx": lambda env, tables: VerifyBackend(env, CxSource(env), tables),
}
VERIFYING = frozenset({"rfc4740-ha1", "cx"})  # the proxy checks digests itself
# The modes that are RFC 6733 peers, named on the wire by an Origin-Host whose default
# is this host's FQDN: DNS that start-up does once, not a request.
NAMED = frozenset({"rfc4740"}) | VERIFYING


def choose(protocol: str, env: Environment, tables: SharedTables | None = None) -> Backend:
    """The backend for a ``protocol`` value (settings.py validates the names). ``tables``:
    where a verifying mode keeps what Kamailio's workers share, for a process outside
    Kamailio (the check tool gives shared.MemoryTables); the other modes keep nothing."""
    return BACKENDS[protocol](env, tables)


def needs_host_name(protocol: str) -> bool:
    return protocol in NAMED


def check_at_startup(s: Settings) -> None:
    """SettingsError for what the mode needs beyond valid settings, before Kamailio forks:
    the verifying modes refuse to start without a usable nonce secret (every request
    would fail with 500 otherwise)."""
    if s.protocol in VERIFYING:
        read_secret(s.nonce_secret_file)
