"""Authorization / Proxy-Authorization credentials, parsed exactly as Kamailio parses them.

Kamailio's digest parser (core/parser/digest) is more lenient than the RFC 3261 §25.1
grammar, and the C module forwards what it accepts, so we follow it rather than the
ABNF: the scheme is "Digest" (any case) followed by LWS or a comma; each parameter is
``name = value`` where a quoted value ends at the next double quote (no escapes) and a
token ends at LWS or a comma; whatever follows a value up to the next comma is
skipped; a later occurrence of a parameter replaces an earlier one. It is malformed
(400) when a parameter has no ``=``, no value, or an unterminated quote, which
includes a trailing comma and "Digest " with nothing after it. Every step is a
``str.find`` forward, so hostile headers cost linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LWS = " \t\r\n"
# Kamailio stores only these; any other parameter is checked for syntax and dropped.
_KNOWN = frozenset(("username", "realm", "nonce", "uri", "response", "cnonce", "opaque", "qop", "nc", "algorithm"))


class CredentialsError(ValueError):
    """Digest credentials that cannot be parsed: the request gets 400 Bad Request."""


@dataclass(frozen=True, slots=True)
class Credentials:
    raw: str  # the header body as received, for wire formats that forward it whole
    params: dict[str, str] = field(hash=False)  # lower-case names, unquoted values

    @property
    def username(self) -> str:
        return self.params.get("username", "")

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


_skip = re.compile(r"[ \t\r\n]*")
_token = re.compile(r"[^ \t\r\n,]*")


def parse_credentials(body: str) -> Credentials | None:
    """Parse one header body; None for a non-Digest scheme, CredentialsError if malformed."""
    start = _skip.match(body).end()
    if len(body) - start < 7 or body[start : start + 6].lower() != "digest" or body[start + 6] not in " \t\r\n,":
        return None
    params: dict[str, str] = {}
    pos = _skip.match(body, start + 7).end()
    while True:
        eq = body.find("=", pos)
        if eq < 0:
            raise CredentialsError(f"parameter without '=' at offset {pos}")
        name = body[pos:eq].rstrip(_LWS).lower()
        v = _skip.match(body, eq + 1).end()
        if v >= len(body):
            raise CredentialsError(f"parameter {name!r} has no value")
        if body[v] == '"':
            close = body.find('"', v + 1)
            if close < 0:
                raise CredentialsError(f"parameter {name!r} has an unterminated quoted value")
            value, after = body[v + 1 : close], close + 1
        else:
            after = _token.match(body, v).end()
            if after == v:
                raise CredentialsError(f"parameter {name!r} has an empty value")
            value = body[v:after]
        if name in _KNOWN:
            params[name] = value
        comma = body.find(",", after)
        if comma < 0:
            return Credentials(raw=body, params=params)
        pos = _skip.match(body, comma + 1).end()


def select_credentials(bodies: list[str], realm: str) -> Credentials | None:
    """The first Digest credentials whose realm equals ``realm`` (case-insensitive).

    Every Digest header before the match is parsed too, so a malformed one raises
    even if a later header would have matched, as Kamailio's find_credentials does.
    """
    wanted = realm.lower()
    for body in bodies:
        cred = parse_credentials(body)
        if cred is not None and cred.realm.lower() == wanted:
            return cred
    return None
