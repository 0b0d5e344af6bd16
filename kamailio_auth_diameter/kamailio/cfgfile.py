"""Our settings as written in kamailio.cfg, read from the file at start-up, pure.

Kamailio 5.6 cannot hand custom cfg values to Python before the first request: in
mod_init they read as None, and reading an int one in child_init or in
event_route[core:worker-one-init] crashes the process (SIGSEGV in select_cfg_var).
So mod_init scans the cfg text (following include_file/import_file and #!define /
-A defines) to learn which settings are declared, and to refuse a bad literal value
at start-up. The values Kamailio itself holds are read per request (cfg_rpc may
change them); this scan only decides which to read and catches mistakes early.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..settings import GROUP

DEFAULT_CFG = "/etc/kamailio/kamailio.cfg"

_ASSIGN = re.compile(
    rf'^[ \t]*{GROUP}\.(\w+)[ \t]*=[ \t]*("(?:[^"\\\n]|\\.)*"|-?\d+|\w+)'
    r'[ \t]*(?:desc[ \t]+"[^"\n]*")?[ \t]*;?[ \t]*(?:(?:#|//).*)?$',
    re.M,
)
_DEFINE = re.compile(
    r"^[ \t]*(?:#!|!!)(define|def|trydef|trydefine|redefine|redef)[ \t]+(\w+)(?:[ \t]+(.*?))?[ \t]*$", re.M
)
_INCLUDE = re.compile(r'^[ \t]*(?:#!|!!)?(?:include_file|import_file)[ \t]+"([^"\n]+)"', re.M)

UNRESOLVED = object()  # a define we cannot evaluate: Kamailio's value is checked at run time


@dataclass
class Declared:
    values: dict[str, object] = field(default_factory=dict)  # name -> str | int | UNRESOLVED
    files: list[str] = field(default_factory=list)


def _literal(token: str, defines: dict[str, str], depth: int = 0) -> object:
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return token[1:-1]
    if re.fullmatch(r"-?[0-9]+", token):
        return int(token)
    if token in defines and depth < 16:  # a define loop stays unresolved
        return _literal(defines[token].strip(), defines, depth + 1)
    return UNRESOLVED


def scan(path: str, defines: dict[str, str], read: Callable[[str], str]) -> Declared:
    """Declared ``auth_diameter.*`` settings in ``path`` and the files it includes.

    ``defines`` holds the -A command line defines, which take precedence over the
    file's own; ``read`` is injected so the scan is testable without files.
    """
    found = Declared()
    cli_names = set(defines)
    defines = dict(defines)
    pending = [path]
    while pending and len(found.files) < 64:
        current = pending.pop(0)
        if current in found.files:
            continue
        try:
            text = read(current)
        except OSError:
            continue
        found.files.append(current)
        for m in _DEFINE.finditer(text):
            directive, name, value = m.groups()
            if directive.startswith("re") and name not in cli_names:
                defines[name] = value or "1"
            else:  # -A defines win; a plain #!define of a defined name is an error to Kamailio
                defines.setdefault(name, value or "1")
        for m in _ASSIGN.finditer(text):
            found.values[m.group(1)] = _literal(m.group(2), defines)
        base = os.path.dirname(current)
        pending.extend(os.path.join(base, inc) for inc in _INCLUDE.findall(text))
    return found


def from_command_line(argv: list[str]) -> tuple[str, dict[str, str]]:
    """Kamailio's cfg file (-f) and -A defines, from its own argv."""
    path, defines = DEFAULT_CFG, {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        for opt in ("-f", "-A"):
            if arg.startswith(opt):
                value = arg[2:] if len(arg) > 2 else (argv[i + 1] if i + 1 < len(argv) else "")
                if len(arg) == 2:
                    i += 1
                if opt == "-f":
                    path = value
                else:
                    name, _, val = value.partition("=")
                    defines[name] = val or "1"
        i += 1
    return path, defines


def read_own_command_line() -> list[str]:
    with open("/proc/self/cmdline", "rb") as f:
        return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
