"""The file ``serve --config FILE`` reads: every ``serve`` option, so that a service
starts with one fixed command line and nothing secret on it.

The format is one ``key = value`` a line, the key being the option's long name
without its dashes (``legacy-listen = 127.0.0.1:3000`` for ``--legacy-listen``).
Blank lines and lines whose first character is ``#`` are ignored. The value is the
rest of the line with the spaces around it removed; nothing in it is interpreted (no
quotes, no comment after it), so a path or an address is written as it is. A switch
(``--hide-unknown-users``) takes ``yes`` or ``no`` (``true``/``false``, ``on``/``off``,
``1``/``0``); a repeatable option (``--allow``) takes one line per value.

The keys and their checks are the command line's own, read from its parser: an
option added there is a key here, checked alike. Refused, naming the file, the line
and the key: a line that is not ``key = value``, an unknown key, a bad value, a key
given twice, two keys that exclude each other (``db`` and ``db-file``). An option
given on the command line wins over the file (a repeatable one replaces all the
file's lines), so the file holds the settings and a one-off run can change one.
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
from dataclasses import dataclass, field
from typing import Any

TRUE = ("yes", "true", "on", "1")
FALSE = ("no", "false", "off", "0")
NOT_KEYS = ("help", "config")  # options that make no sense in the file itself
_TYPE_NAMES = {int: "a whole number", float: "a number"}
_UNSET = object()


class ConfigError(Exception):
    """The file cannot be used; the message names the file, the line and the key."""


@dataclass
class Config:
    """The file's settings: option ``dest`` -> value (a list for a repeatable option),
    and the line each was set on."""

    path: str
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, dest: str) -> str:
        return f"{self.path}:{self.lines[dest]}"


def _repeatable(action: argparse.Action) -> bool:
    return isinstance(action, argparse._AppendAction)


def keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Each key the file may hold (a long option without its dashes) -> its option."""
    table = {}
    for action in parser._actions:
        for option in action.option_strings:
            key = option[2:]
            if option.startswith("--") and key not in NOT_KEYS:
                table[key] = action
    return table


def _value(action: argparse.Action, value: str) -> Any:
    """``value`` as the command line would have made it; ValueError with the reason if it is bad."""
    if action.nargs == 0:  # a switch (store_true, BooleanOptionalAction)
        if value.lower() in TRUE:
            return True if action.const is None else action.const
        if value.lower() in FALSE:
            return False if action.const is None else action.default
        raise ValueError(f"{value!r} is not yes or no")
    convert = action.type
    if convert is None:
        result: Any = value
    else:
        try:
            result = convert(value)  # type: ignore[operator]
        except argparse.ArgumentTypeError as exc:
            raise ValueError(str(exc)) from None
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not {_TYPE_NAMES.get(convert, 'a valid value')}") from None  # type: ignore[call-overload]
    if action.choices is not None and result not in action.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return result


def parse(text: str, path: str, parser: argparse.ArgumentParser) -> Config:
    """The settings in ``text`` (the file at ``path``, named in messages) for the options of ``parser``."""
    table = keys(parser)
    config = Config(path)
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = (part.strip() for part in line.partition("="))
        if not equals or not key:
            raise ConfigError(f"{path}:{n}: not 'key = value': {line[:80]!r}")
        action = table.get(key)
        if action is None:
            raise ConfigError(f"{path}:{n}: unknown key {key!r}{_hint(key, table)}")
        if not value:
            raise ConfigError(f"{path}:{n}: {key}: no value")
        try:
            converted = _value(action, value)
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: {key}: {exc}") from None
        dest = action.dest
        if _repeatable(action):
            config.values.setdefault(dest, []).append(converted)
            config.lines.setdefault(dest, n)
        elif dest in config.values:
            raise ConfigError(f"{path}:{n}: {key}: given again (first on line {config.lines[dest]})")
        else:
            config.values[dest], config.lines[dest] = converted, n
    for group in parser._mutually_exclusive_groups:
        both = [a for a in group._group_actions if a.dest in config.values]
        if len(both) > 1:
            names = " and ".join(f"{a.option_strings[-1][2:]} (line {config.lines[a.dest]})" for a in both)
            raise ConfigError(f"{path}: {names} exclude each other: keep one")
    return config


def _hint(key: str, table: dict[str, argparse.Action]) -> str:
    if key.startswith("-"):
        return f" (write it without dashes: {key.lstrip('-')})"
    close = difflib.get_close_matches(key, table, n=1)
    return f" (did you mean {close[0]}?)" if close else " (the keys are the long options of serve, without '--')"


def read(path: str) -> str:
    """The file's text. One any user of the machine may change is refused: it decides
    which database and keys the server uses."""
    try:
        mode = os.stat(path).st_mode
        if mode & stat.S_IWOTH:
            raise ConfigError(f"--config {path} may be changed by every user of this machine: chmod o-w {path}")
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def given(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options (their ``dest``) that ``argv`` gives: parsed again into a namespace
    where every option starts unset, so that a value equal to its default still counts."""
    actions = [a for a in parser._actions if a.option_strings and a.dest != argparse.SUPPRESS]
    namespace = argparse.Namespace(**{a.dest: None if _repeatable(a) else _UNSET for a in actions})
    parser.parse_args(argv, namespace)
    return {a.dest for a in actions if getattr(namespace, a.dest) not in (_UNSET, None)}


def merge(args: argparse.Namespace, config: Config, parser: argparse.ArgumentParser, given: set[str]) -> None:
    """Put the file's settings into ``args`` where the command line gave neither the
    option nor one it excludes (``--db-file`` on the command line overrides ``db``)."""
    excluded = set(given)
    for group in parser._mutually_exclusive_groups:
        dests = {a.dest for a in group._group_actions}
        if dests & given:
            excluded |= dests
    for dest, value in config.values.items():
        if dest not in excluded:
            setattr(args, dest, value)
