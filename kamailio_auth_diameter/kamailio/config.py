"""Settings from Kamailio custom cfg parameters, re-read so cfg_rpc changes apply.

Which parameters exist comes from the start-up scan of kamailio.cfg (cfgfile.py):
reading one that the cfg never declared makes Kamailio log six errors on every read.
The declared ones are read again at most every REFRESH_INTERVAL seconds, on the next
request (six KSR calls cost a worker about as much as the rest of its glue code), and
validated again whenever a value changes: a cfg_rpc change applies within 0.1 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import backend, settings
from ..settings import Settings, SettingsError
from ..transport.tls import client_context, key_file_warning
from .cfgfile import UNRESOLVED, Declared

REFRESH_INTERVAL = 0.1


def startup_settings(declared: Declared) -> tuple[Settings, str | None]:
    """The settings the cfg file's literal values give, and a warning to log, or SettingsError.

    Shared by Kamailio's start-up and ``check --cfg``, so both say the same. Defaults
    stand in for values that are defines the scan could not resolve."""
    literal = {name: value for name, value in declared.values.items() if value is not UNRESOLVED}
    parsed = settings.parse(literal)  # unknown names and bad literal values raise here
    backend.check_at_startup(parsed)  # a mode's own needs: the nonce secret of the verifying modes
    if backend.needs_host_name(parsed.protocol) and parsed.use_tls:
        client_context(parsed)  # so does a TLS file that cannot be used, or a key anyone may read
        return parsed, key_file_warning(parsed)
    return parsed, None


class CfgSettings:
    """Current settings of this process.

    ``current`` is None until a valid set has been read from Kamailio; an invalid
    run-time change is logged once and the previous settings stay in force.
    """

    def __init__(
        self,
        ksr: Any,
        declared: tuple[str, ...],
        clock: Callable[[], float] = time.monotonic,
        startup: Settings | None = None,
    ) -> None:
        self.startup = startup  # what the cfg file's literal values say, checked before Kamailio forks
        self._ksr = ksr
        self._clock = clock
        self._next_read = 0.0
        self._selectors = tuple((name, f"$sel(cfg_get.{settings.GROUP}.{name})") for name in declared)
        self._raw: tuple[object, ...] | None = None
        self._rejected: tuple[object, ...] | None = None
        self.current: Settings | None = None

    @classmethod
    def at_startup(cls, ksr: Any, declared: Declared) -> CfgSettings:
        """Validate what the cfg file says; SettingsError (naming the setting) stops Kamailio."""
        parsed, warning = startup_settings(declared)
        if warning:
            ksr.warn(f"auth_diameter: {warning}\n")
        return cls(ksr, tuple(declared.values), startup=parsed)

    def refresh(self) -> Settings | None:
        """The settings in force for this request; None while no valid set was ever read."""
        now = self._clock()
        if now < self._next_read:
            return self.current
        self._next_read = now + REFRESH_INTERVAL
        get = self._ksr.pv.get
        values = {name: get(sel) for name, sel in self._selectors}
        raw = tuple(values.values())
        if raw == self._raw or raw == self._rejected:
            return self.current
        try:
            new = settings.parse(values)
        except SettingsError as exc:
            self._rejected = raw
            kept = "keeping the previous settings" if self.current else "every request fails with 500 until fixed"
            self._ksr.err(f"auth_diameter: invalid setting, {kept}: {exc}\n")
            return self.current
        if self.current is not None:
            self._ksr.info(f"auth_diameter: settings changed at run time: {new}\n")
        self._raw, self._rejected, self.current = raw, None, new
        return new
