"""Settings from Kamailio custom cfg parameters, re-read so cfg_rpc changes apply.

Reading a parameter that the cfg never declared makes Kamailio log an error on every
read, so the declared names are found once at start-up and only those are read per
request (a few KSR calls, well under a microsecond each).
"""

from __future__ import annotations

from typing import Any

from .. import settings
from ..settings import Settings, SettingsError


def _selector(name: str) -> str:
    return f"$sel(cfg_get.{settings.GROUP}.{name})"


class CfgSettings:
    """Current settings of this process; invalid run-time changes keep the last good ones."""

    def __init__(self, ksr: Any, declared: tuple[str, ...]) -> None:
        self._ksr = ksr
        self._selectors = tuple((name, _selector(name)) for name in declared)
        self._raw: tuple[object, ...] | None = None
        self._rejected: tuple[object, ...] | None = None
        self.current: Settings = settings.parse({})

    @classmethod
    def at_startup(cls, ksr: Any, probe: Any) -> CfgSettings:
        """Find the declared parameters and validate them; SettingsError stops Kamailio.

        ``probe(name)`` tells whether the cfg declares ``auth_diameter.<name>``.
        """
        declared = tuple(name for name in settings.NAMES if probe(name))
        cfg = cls(ksr, declared)
        cfg.current = settings.parse(cfg._read())
        cfg._raw = tuple(cfg._read().values())
        return cfg

    def _read(self) -> dict[str, object]:
        get = self._ksr.pv.get
        return {name: get(sel) for name, sel in self._selectors}

    def refresh(self) -> Settings:
        """The settings in force for this request, validating any run-time change once."""
        values = self._read()
        raw = tuple(values.values())
        if raw == self._raw or raw == self._rejected:
            return self.current
        try:
            self.current = settings.parse(values)
        except SettingsError as exc:
            self._rejected = raw
            self._ksr.err(f"auth_diameter: run-time change refused, keeping previous settings: {exc}\n")
            return self.current
        self._raw = raw
        self._rejected = None
        self._ksr.info(f"auth_diameter: settings changed at run time: {self.current}\n")
        return self.current
