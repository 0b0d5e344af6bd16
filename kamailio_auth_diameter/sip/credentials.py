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
from collections.abc import Iterable
from dataclasses import dataclass

_LWS = " \t\r\n"
# Kamailio stores only these; any other parameter is checked for syntax and dropped.
_KNOWN = frozenset(("username", "realm", "nonce", "uri", "response", "cnonce", "opaque", "qop", "nc", "algorithm"))
# known name -> itself: the usual spelling is found as sent, any other once stripped and lowered
_NAMES = {name: name for name in _KNOWN}


class CredentialsError(ValueError):
    """Digest credentials that cannot be parsed: the request gets 400 Bad Request."""


@dataclass(slots=True)  # not frozen: built per request, and frozen triples the cost
class Credentials:
    raw: str  # the header body as received, for wire formats that forward it whole
    params: dict[str, str]  # lower-case names, unquoted values
    username: str  # params' username and realm, "" when absent: read several times a request
    realm: str


# One parameter, as Kamailio reads it: a name up to "=", LWS, then a quoted value (to the
# next double quote) or a token (to LWS or a comma, not starting with one or a quote),
# then anything up to the next comma, which is skipped, and the comma with LWS after it.
# Each part stops at a character the next part needs, so a match or a failure is linear.
_PARAM = re.compile(r'([^=]*)=[ \t\r\n]*(?:"([^"]*)"|([^ \t\r\n,"][^ \t\r\n,]*))[^,]*(,[ \t\r\n]*)?')
_SCHEME = re.compile(r"[ \t\r\n]*([Dd][Ii][Gg][Ee][Ss][Tt])[ \t\r\n,][ \t\r\n]*")


def parse_credentials(body: str) -> Credentials | None:
    """Parse one header body; None for a non-Digest scheme, CredentialsError if malformed."""
    m = _SCHEME.match(body)
    if m is None:
        return None
    params: dict[str, str] = {}
    pos, end = m.end(), len(body)
    match, names = _PARAM.match, _NAMES
    while True:
        m = match(body, pos)
        if m is None:
            raise CredentialsError(f"malformed parameter at offset {pos}: {body[pos : pos + 30]!r}")
        name, quoted, token, comma = m.groups()
        known = names.get(name) or names.get(name.rstrip(_LWS).lower())
        if known is not None:
            params[known] = token if quoted is None else quoted
        if comma is None:
            return Credentials(body, params, params.get("username", ""), params.get("realm", ""))
        pos = m.end()
        if pos == end:
            raise CredentialsError("trailing comma after the last parameter")


def select_credentials(bodies: Iterable[str], realm: str) -> Credentials | None:
    """The first Digest credentials whose realm equals ``realm`` (case-insensitive).

    Every Digest header before the match is parsed too, so a malformed one raises
    even if a later header would have matched, as Kamailio's find_credentials does.
    """
    wanted = realm.lower()
    for body in bodies:
        cred = parse_credentials(body)
        if cred is not None and (cred.realm == realm or cred.realm.lower() == wanted):
            return cred
    return None
