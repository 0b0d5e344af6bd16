"""The parts of a SIP URI that the wire formats need (RFC 3261 §19.1), pure.

Kamailio hands us URIs as strings ($ru, $fu, $tu). We only need user, host and
whether a port was written, so this is a small, strict splitter rather than a
full grammar: anything it cannot split is an error, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

_SCHEMES = ("sip", "sips")
_TEL_SCHEMES = ("tel", "tels")


class UriError(ValueError):
    """The URI cannot be parsed; the C module gives up on the request (-5)."""


@dataclass(frozen=True, slots=True)
class SipUri:
    user: str  # "" when the URI has no user part
    host: str  # as written, IPv6 brackets kept
    port: str  # "" unless a port was written explicitly


@lru_cache(maxsize=4096)  # the same From/To/R-URI strings come back request after request
def parse_uri(text: str | None) -> SipUri:
    if not text:
        raise UriError("empty URI")
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if sep and scheme in _TEL_SCHEMES:
        # Kamailio reads a tel: URI as a user part (the number) and an empty host; the
        # wire formats then fail to build requests that need a host, as the C module does
        number = rest[: min((i for i in (rest.find(";"), rest.find("?")) if i >= 0), default=len(rest))]
        if not number or not number.isprintable() or " " in number:
            raise UriError(f"bad telephone number in {text!r}")
        return SipUri(user=number, host="", port="")
    if not sep or scheme not in _SCHEMES:
        raise UriError(f"not a SIP URI: {text!r}")
    user = ""
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user = userinfo.partition(":")[0]
        if not user:
            raise UriError(f"empty user part in {text!r}")
    # hostport ends at the first parameter or header separator
    end = len(rest)
    for sep_char in ";?":
        i = rest.find(sep_char)
        if 0 <= i < end:
            end = i
    hostport = rest[:end]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise UriError(f"unterminated IPv6 reference in {text!r}")
        host, tail = hostport[: close + 1], hostport[close + 1 :]
        if tail and not tail.startswith(":"):
            raise UriError(f"garbage after IPv6 host in {text!r}")
        port = tail[1:]
        if tail and not port:
            raise UriError(f"empty port in {text!r}")
    else:
        host, colon, port = hostport.partition(":")
        if colon and not port:
            raise UriError(f"empty port in {text!r}")
    if not host or not host.isprintable() or any(c in host for c in ' <>"@'):
        raise UriError(f"bad host in {text!r}")
    if port and (not port.isdigit() or not port.isascii() or int(port) > 65535):
        raise UriError(f"bad port in {text!r}")
    if not user.isprintable():
        raise UriError(f"control character in user part of {text!r}")
    return SipUri(user=user, host=host, port=port)
