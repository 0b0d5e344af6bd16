"""Authorization / Proxy-Authorization credentials (RFC 3261 §25.1, RFC 7616 §3.4), pure.

The grammar lives here and nowhere else::

    credentials    = auth-scheme LWS auth-param *(COMMA auth-param)
    auth-param     = token EQUAL ( token / quoted-string )
    quoted-string  = DQUOTE *( qdtext / quoted-pair ) DQUOTE

Only "Digest" credentials are parsed; other schemes are skipped, as Kamailio does.
Malformed Digest credentials are an error the caller turns into 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_LWS = " \t\r\n"


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


def _skip_lws(s: str, i: int) -> int:
    while i < len(s) and s[i] in _LWS:
        i += 1
    return i


def parse_credentials(body: str) -> Credentials | None:
    """Parse one header body; None for a non-Digest scheme, CredentialsError if malformed."""
    i = _skip_lws(body, 0)
    m = _TOKEN.match(body, i)
    if not m or m.group().lower() != "digest":
        return None
    i = m.end()
    if i < len(body) and body[i] not in _LWS:
        return None  # e.g. "DigestX": another scheme that merely starts alike
    params: dict[str, str] = {}
    while True:
        i = _skip_lws(body, i)
        while i < len(body) and body[i] == ",":
            i = _skip_lws(body, i + 1)
        if i >= len(body):
            break
        m = _TOKEN.match(body, i)
        if not m:
            raise CredentialsError(f"expected a parameter name at offset {i}")
        name = m.group().lower()
        i = _skip_lws(body, m.end())
        if i >= len(body) or body[i] != "=":
            raise CredentialsError(f"parameter {name!r} has no value")
        i = _skip_lws(body, i + 1)
        if i < len(body) and body[i] == '"':
            value, i = _quoted(body, i)
        else:
            m = _TOKEN.match(body, i)
            if not m:
                raise CredentialsError(f"parameter {name!r} has an empty or invalid value")
            value, i = m.group(), m.end()
        params.setdefault(name, value)  # the first occurrence wins, as in Kamailio
        i = _skip_lws(body, i)
        if i < len(body) and body[i] != ",":
            raise CredentialsError(f"expected ',' after parameter {name!r}")
    return Credentials(raw=body, params=params)


def _quoted(s: str, i: int) -> tuple[str, int]:
    out = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c in "\r\n\0":
            raise CredentialsError("control character inside a quoted value")
        out.append(c)
        i += 1
    raise CredentialsError("unterminated quoted value")


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
