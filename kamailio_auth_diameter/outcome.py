"""What an authorize call ends in, and the SIP reply and return code of each, in one place.

Return codes follow the C module (§2.3 of the shared notes): 1 authorized, -5 after a
reply or on an error without a reply (the script goes on), 0 after 400 (stops the
script). Reason phrases are the C module's, "Server Internal Error" included.

Since -5 covers a first challenge, a refused password and a server outage alike, each
outcome also has a label that the plugin leaves in ``$avp(auth_diameter)`` for the
script (RESULT_AVP): what a per-source failure counter needs to tell them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

AUTHORIZED = 1
AUTH_ERROR = -5
STOP = 0
RESULT_AVP = "$avp(auth_diameter)"


@dataclass(slots=True)
class Outcome:
    """A SIP reply to send (code 0: none) and the value the cfg script gets back.

    Treated as immutable (PASS and the other constants are shared), but not frozen: a
    challenge builds one per request, and frozen dataclasses cost three times as much."""

    code: int
    reason: str
    ret: int
    header: str = ""  # a complete header line ending in CRLF, or ""
    note: str = field(default="", compare=False)  # why, for the log, when the operator should hear of it
    # for the script (RESULT_AVP): authorized, exempt, challenged (no credentials yet), stale (right
    # password, old nonce), refused (credentials not accepted), bad-request, error (ours or the server's)
    label: str = field(default="error", compare=False)


PASS = Outcome(0, "", AUTHORIZED, label="authorized")
EXEMPT = Outcome(0, "", AUTHORIZED, label="exempt")  # ACK and CANCEL
NO_REPLY_ERROR = Outcome(0, "", AUTH_ERROR)
BAD_REQUEST = Outcome(400, "Bad Request", STOP, label="bad-request")
FORBIDDEN = Outcome(403, "Forbidden", AUTH_ERROR, label="refused")
SERVER_ERROR = Outcome(500, "Server Internal Error", AUTH_ERROR)


def forbidden(note: str) -> Outcome:
    """403 for a reason the proxy decided itself, with the reason for the log."""
    return Outcome(403, "Forbidden", AUTH_ERROR, note=note, label="refused")


class ChallengeError(ValueError):
    """A challenge from the server that would corrupt or inject SIP headers."""


# Control characters cannot appear in a header value (RFC 3261 §25.1: TEXT-UTF8 and LWS):
# CR/LF/NUL would end or cut the header, and the others (VT, ESC, DEL, ...) break parsers
# and terminals downstream. HTAB is linear white space, so it may stay.
_CONTROLS = frozenset(range(0x20)) - {0x09} | {0x7F}
# What may not stand inside a quoted challenge parameter: a quote, a backslash, any control.
UNSAFE_IN_QUOTES = frozenset('"\\\x7f' + "".join(map(chr, range(0x20))))


def challenge(proxy: bool, value: bytes, answered: bool = False) -> Outcome:
    """401/407 carrying the server's challenge, refused if it could inject a header.

    The C module copies the value blindly and relies on the server's trailing CRLF
    (B13); we add a missing one and refuse any control character elsewhere.
    ``answered``: the request carried credentials, so a new challenge means they were
    not accepted (labelled refused), unless it says stale=true (the password was right).
    """
    if value.endswith(b"\r\n"):
        value = value[:-2]
    if not value or not _CONTROLS.isdisjoint(value):
        raise ChallengeError("challenge is empty or has control characters inside")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChallengeError("challenge is not UTF-8") from exc
    label = ("stale" if "stale=true" in text.lower() else "refused") if answered else "challenged"
    return challenges(proxy, (text,), label)


def challenges(proxy: bool, values: Sequence[str], label: str, note: str = "") -> Outcome:
    """401 with a WWW-Authenticate, or 407 with a Proxy-Authenticate, for each value (one
    per algorithm where the proxy makes the challenge): values already known safe."""
    name = "Proxy-Authenticate: " if proxy else "WWW-Authenticate: "
    header = name + ("\r\n" + name).join(values) + "\r\n"  # no generator: half of all flows come here
    if proxy:
        return Outcome(407, "Proxy Authentication Required", AUTH_ERROR, header, note, label)
    return Outcome(401, "Unauthorized", AUTH_ERROR, header, note, label)
