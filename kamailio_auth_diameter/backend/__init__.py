"""One backend per mode, behind one contract, chosen from the settings in one place.

The plugin (kamailio/plugin.py) reads the SIP request, plans it (authorize.plan,
group.plan), hands the plan to the backend of the ``protocol`` setting and turns what
comes back into a reply. A backend owns its connections and its wire format; the
plugin never asks which mode it is in. :func:`choose` is the only place that maps a
``protocol`` value to a backend.
"""

from __future__ import annotations

from .contract import Backend, Environment
from .legacy import LegacyBackend
from .rfc4740 import Rfc4740Backend

__all__ = ["BACKENDS", "Backend", "Environment", "choose", "needs_host_name"]

BACKENDS: dict[str, type] = {"legacy": LegacyBackend, "rfc4740": Rfc4740Backend}


def choose(protocol: str, env: Environment) -> Backend:
    """The backend for a ``protocol`` value (settings.py validates the names)."""
    return BACKENDS[protocol](env)


def needs_host_name(protocol: str) -> bool:
    """Whether the mode names itself on the wire (Origin-Host), whose default is this
    host's FQDN: DNS that start-up should do once, not a request."""
    return getattr(BACKENDS[protocol], "NAMED", False)
