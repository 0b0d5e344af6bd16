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

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_LWS = r"[ \t\r\n]*"
_SCHEME = re.compile(rf"{_LWS}({_TOKEN})(?:[ \t\r\n]+|$)")
_SEPARATORS = re.compile(r"[ \t\r\n,]*")
# name = token / quoted-string; a quoted value may not hold CR, LF or NUL (no folding inside)
_PARAM = re.compile(rf'({_TOKEN}){_LWS}={_LWS}(?:"((?:[^"\\\r\n\0]|\\[^\r\n\0])*)"|({_TOKEN})){_LWS}')
_ESCAPE = re.compile(r"\\(.)")


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


def parse_credentials(body: str) -> Credentials | None:
    """Parse one header body; None for a non-Digest scheme, CredentialsError if malformed."""
    m = _SCHEME.match(body)
    if not m or m.group(1).lower() != "digest":
        return None  # another scheme, or e.g. "DigestX" that merely starts alike
    params: dict[str, str] = {}
    end = len(body)
    pos = _SEPARATORS.match(body, m.end()).end()
    while pos < end:
        m = _PARAM.match(body, pos)
        if m is None:
            raise CredentialsError(f"malformed parameter at offset {pos}: {body[pos : pos + 20]!r}")
        name, quoted, token = m.groups()
        if quoted is None:
            value = token
        elif "\\" in quoted:
            value = _ESCAPE.sub(r"\1", quoted)
        else:
            value = quoted
        params.setdefault(name.lower(), value)  # the first occurrence wins, as in Kamailio
        pos = m.end()
        if pos < end:
            if body[pos] != ",":
                raise CredentialsError(f"expected ',' at offset {pos} after parameter {name!r}")
            pos = _SEPARATORS.match(body, pos).end()
    return Credentials(raw=body, params=params)


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
