"""``check --cfg``: a kamailio.cfg's auth_diameter.* settings checked offline, as Kamailio's start-up would.

The same scan (cfgfile.py) and the same validation (config.startup_settings) run
here as in the plugin's mod_init, so a cfg that passes here passes there, and a
refused one is refused with the same message, before anyone restarts a proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..settings import GROUP, SPECS, Settings, SettingsError
from . import cfgfile
from .cfgfile import UNRESOLVED, Declared
from .config import startup_settings


@dataclass
class CfgCheck:
    """``messages`` are what Kamailio would log about the settings; ``error`` stops its start-up."""

    declared: Declared
    settings: Settings | None = None
    error: str | None = None
    messages: list[str] = field(default_factory=list)

    def table(self) -> list[str]:
        """Every setting in force and where its value comes from."""
        assert self.settings is not None
        rows = []
        for spec in SPECS:
            if self.declared.values.get(spec.name) is UNRESOLVED:
                rows.append((spec.name, "?", "a define not set here: Kamailio checks its value at run time"))
            else:
                source = "declared" if spec.name in self.declared.values else "default, not declared"
                rows.append((spec.name, _shown(getattr(self.settings, spec.name)), source))
        name_width = max(len(r[0]) for r in rows)
        value_width = max(len(r[1]) for r in rows)
        return ["effective settings:"] + [
            f"  {GROUP}.{name:<{name_width}}  {value:<{value_width}}  {source}" for name, value, source in rows
        ]


def _shown(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def summary(declared: Declared) -> str:
    """The start-up log line's account of what the scan found."""
    names = ", ".join(declared.values) or "none, all defaults"
    return f"settings declared in {', '.join(declared.files)}: {names}"


def check(path: str, defines: dict[str, str], read: Callable[[str], str]) -> CfgCheck:
    """Scan ``path`` (with ``defines`` as kamailio -A gives them) and validate what it declares."""
    declared = cfgfile.scan(path, defines, read)
    result = CfgCheck(declared)
    if path not in declared.files:
        result.error = f"{path}: cannot be read"
        result.messages.append(result.error)
        return result
    try:
        result.settings, warning = startup_settings(declared)
    except SettingsError as exc:
        result.error = str(exc)
        result.messages.append(result.error)
        return result
    result.messages.append(f"{GROUP}: {summary(declared)}")
    if warning:
        result.messages.append(f"{GROUP}: {warning}")
    return result


def read_text(path: str) -> str:
    """How the plugin reads a cfg file (plugin._read_text): undecodable bytes do not stop the scan."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
