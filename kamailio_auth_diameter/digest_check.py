"""One judgement of digest credentials, in the order that keeps it safe; pure.

The reference server (with HA1s from its store) and the plugin (with HA1s from a
Diameter server, cached) judge credentials the same way, so both call this module:

1. :func:`screen`: what can be judged without the password. A nonce that is not
   ours, a qop, algorithm or nonce-count we did not offer or cannot read, a ``uri``
   that is not the request's (RFC 7616 §3.4 makes the verifier check it, or a
   captured INVITE could be replayed to call someone else): a fresh challenge.
2. The caller finds the user's HA1 (and may throttle, see server/auth.py).
3. :func:`judge`: the response. Only a correct one is told it is stale (RFC 7616
   §3.3: stale=true means the digest was valid), and only a correct one may consume
   a nonce-count, which the caller then records so that the count grows for each
   nonce: a replay is refused, and a wrong guess cannot burn the counts of the
   user's real nonce.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from . import digest
from .nonce import NonceFactory, NonceState
from .sip.uri import UriError, parse_uri

_NONCE_COUNT = re.compile(r"[0-9A-Fa-f]{8}")  # RFC 7616 §3.4: nc-value = 8LHEX


class Check(enum.Enum):
    AUTHENTICATED = "authenticated"
    UNUSABLE = "unusable"  # not ours, malformed, not for this request or not what we offered: challenge afresh
    WRONG = "wrong"  # a wrong response from a known user, or one not checked (throttled)
    STALE = "stale"  # a correct response with an expired nonce, or a replayed one: challenge with stale=true
    UNKNOWN_USER = "unknown user"


@dataclass(slots=True)  # these three are built per request: not frozen, which triples the cost
class DigestVerdict:
    check: Check
    reason: str  # for the log


@dataclass(slots=True)
class Target:
    """What the request says it is for, to compare with the digest ``uri``: the user and
    host of the Request-URI, and its port when known (None: not compared)."""

    user: str
    host: str
    port: str | None


@dataclass(slots=True)
class Presented:
    """Credentials that passed :func:`screen`: ``nc`` parsed, the nonce's state known."""

    params: Mapping[str, str]
    nonce_state: NonceState
    nc: int
    algorithm: str  # as offered: "MD5" or "SHA-256"


def screen(
    nonces: NonceFactory,
    realm: str,
    params: Mapping[str, str],
    target: Target | None,
    algorithms: Collection[str] = ("MD5",),
) -> Presented | DigestVerdict:
    """Step 1. ``realm`` is the realm we challenged in (the nonce is bound to it);
    ``params`` are the credentials under their Authorization-header names; ``target``
    what the digest ``uri`` must name, when known; ``algorithms``: what we offered,
    upper case. Our challenges always offer qop="auth": a response must use it (RFC
    7616 §3.4; without it there would be no nonce-count to guard against replay)."""
    state = nonces.check(params.get("nonce", ""), realm)
    if state is NonceState.INVALID:
        return DigestVerdict(Check.UNUSABLE, "nonce not ours")
    qop = params.get("qop", "")
    if qop.lower() != "auth":
        why = f"qop {qop!r} where 'auth' was offered" if qop else "no qop where 'auth' was offered"
        return DigestVerdict(Check.UNUSABLE, why)
    given = params.get("algorithm", "MD5")
    algorithm = given.upper()
    if algorithm not in algorithms:
        offered = " or ".join(algorithms) + (" were" if len(algorithms) > 1 else " was")
        return DigestVerdict(Check.UNUSABLE, f"algorithm {given!r} where {offered} offered")
    nc = params.get("nc", "")
    count = int(nc, 16) if _NONCE_COUNT.fullmatch(nc) else 0
    if not count:
        return DigestVerdict(Check.UNUSABLE, f"nonce-count {nc!r} is not 8 hex digits from 00000001")
    if not params.get("cnonce"):
        return DigestVerdict(Check.UNUSABLE, "no cnonce")
    uri = params.get("uri", "")
    if target is not None and not names(uri, target):
        return DigestVerdict(Check.UNUSABLE, f"digest uri {uri!r} is not the request's ({target.user}@{target.host})")
    return Presented(params, state, count, algorithm)


def names(uri: str, target: Target) -> bool:
    """Whether the digest ``uri`` names the request's target: user equal, host equal
    ignoring case, and the port when the target has one to compare."""
    try:
        u = parse_uri(uri)
    except UriError:
        return False
    if u.user != target.user or (u.host != target.host and u.host.lower() != target.host.lower()):
        return False
    return target.port is None or u.port == target.port


def split_username(username: str, realm: str) -> tuple[str, bool] | None:
    """(user, with_domain) for a digest username ``alice`` or ``alice@realm``; None for
    ``alice@elsewhere``. With the domain the UA hashed ``alice@realm`` into H(A1), so
    the verifier needs the second HA1 (Kamailio's ``ha1b``)."""
    user, at, domain = username.partition("@")
    if at and domain != realm and domain.lower() != realm.lower():
        return None
    return user, bool(at)


def judge(presented: Presented, ha1: str, method: str) -> Check:
    """Step 3: WRONG, STALE (correct but the nonce expired), or AUTHENTICATED, which
    the caller confirms only once it has recorded the nonce-count (a count not above
    the last makes it STALE: a replay)."""
    p = presented.params  # screen() saw qop=auth
    if not digest.check_auth(
        ha1, presented.algorithm, method, p.get("uri", ""), p["nonce"], p["nc"], p["cnonce"], p.get("response", "")
    ):
        return Check.WRONG
    if presented.nonce_state is NonceState.STALE:
        return Check.STALE
    return Check.AUTHENTICATED
