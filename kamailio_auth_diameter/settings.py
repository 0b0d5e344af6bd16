"""Every plugin setting: name, type, default, validation. One reader per source elsewhere.

In Kamailio the settings are custom cfg parameters of group ``auth_diameter``
(``auth_diameter.use_domain = 1 desc "..."``), so an operator can change them at
run time with cfg_rpc. Values arrive as str or int; anything missing takes its default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

GROUP = "auth_diameter"
_INTEGER = re.compile(r"[+-]?[0-9]+")


class SettingsError(ValueError):
    """A setting has a value we refuse; the message names it."""


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    kind: type
    default: object
    low: int = 0
    high: int = 0
    help: str = ""


SPECS: tuple[Spec, ...] = (
    Spec("diameter_client_host", str, "localhost", help="host name or address of the Diameter server (DISC client)"),
    Spec("diameter_client_port", int, 3000, 1, 65535, "TCP port of the Diameter server"),
    Spec("use_domain", int, 0, 0, 1, "1: diameter_is_user_in sends user@domain as User-Name"),
    Spec("answer_timeout", int, 2000, 1, 60000, "ms from the start of a request to its answer, connect included"),
    Spec("connect_timeout", int, 500, 1, 60000, "ms allowed for a TCP connect (capped by answer_timeout)"),
    Spec(
        "reconnect_interval",
        int,
        1000,
        0,
        3600000,
        "ms after a failed connect or an unanswered request during which requests fail at once with 500",
    ),
)
NAMES = tuple(s.name for s in SPECS)


@dataclass(frozen=True, slots=True)
class Settings:
    """Field names and order match SPECS; defaults live only there (``parse({})``)."""

    diameter_client_host: str
    diameter_client_port: int
    use_domain: int
    answer_timeout: int
    connect_timeout: int
    reconnect_interval: int


def _convert(spec: Spec, raw: object) -> object:
    where = f"{GROUP}.{spec.name}"
    if spec.kind is str:
        if not isinstance(raw, str):
            raise SettingsError(f"{where}: expected a string, got {raw!r}")
        value = raw.strip()
        if not value or any(c.isspace() or c in "/\0" for c in value):
            raise SettingsError(f"{where}: {raw!r} is not a host name or address")
        return value
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise SettingsError(f"{where}: expected an integer, got {raw!r}")
    if isinstance(raw, str) and not _INTEGER.fullmatch(raw.strip()):
        raise SettingsError(f"{where}: expected an integer, got {raw!r}")
    value = int(raw)
    if not spec.low <= value <= spec.high:
        raise SettingsError(f"{where}: {value} is outside {spec.low}..{spec.high}")
    return value


def parse(raw: Mapping[str, object]) -> Settings:
    """Validated settings from raw values; unknown names are an error, not a silent typo."""
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise SettingsError(f"{GROUP}.{unknown[0]}: unknown setting (known: {', '.join(NAMES)})")
    values = {}
    for spec in SPECS:
        value = raw.get(spec.name)
        values[spec.name] = spec.default if value is None else _convert(spec, value)
    return Settings(**values)
