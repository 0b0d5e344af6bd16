"""The SIP-side decisions of diameter_www_authorize / diameter_proxy_authorize, pure.

This is §6 of the shared notes on the C module: which credentials are used, which URI
identifies the user, and which requests never reach the server. The wire formats
take an ``AuthContext`` from here; the adapter turns the ``Outcome`` into a reply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import outcome
from .outcome import Outcome
from .sip.credentials import Credentials, CredentialsError, select_credentials
from .sip.uri import SipUri, UriError, parse_uri


class Result(enum.Enum):
    """The server's verdict on an authorize request, whatever the wire format."""

    AUTHORIZED = "authorized"
    CHALLENGE = "challenge"
    NOT_AUTHORIZED = "not-authorized"
    SERVER_ERROR = "server-error"


@dataclass(slots=True)  # not frozen: built per request, and frozen triples the cost
class SipRequest:
    """What one authorize call reads from Kamailio, read once."""

    method: str
    ruri: str | None
    from_uri: str | None  # None when absent, or not needed (see kamailio/request.py)
    to_uri: str | None
    credentials: tuple[str, ...]  # bodies of every Authorization (www) or Proxy-Authorization header


@dataclass(slots=True)  # not frozen: built per request
class AuthContext:
    """Everything a wire format needs to ask the server about one request."""

    method: str
    ruri: SipUri
    identity: SipUri  # To for REGISTER, From otherwise
    credentials: Credentials | None
    realm: str = ""  # the script's realm, or the one derived from To/From when it passed none


# ACK and CANCEL cannot be challenged; the C module lets them through untouched.
EXEMPT = frozenset(("ACK", "CANCEL"))


def plan(req: SipRequest, realm: str, proxy: bool, check_identity: bool = False) -> AuthContext | Outcome:
    """What to ask the server, or the outcome decided here without asking.

    ``check_identity`` (the identity_check setting): credentials must belong to the
    user the request claims to be, the To user for REGISTER and the From user
    otherwise, or the request gets 403 without a word to the server. Without it, as in
    the C module, any user with a valid password could register or call as anyone:
    the server only checks that the password fits the digest username.
    """
    register = req.method == "REGISTER"
    if not realm:
        # The C module derives the lookup realm from To only for www on REGISTER,
        # but takes the identity from To for every REGISTER (B15): kept as is.
        try:
            realm = parse_uri(req.to_uri if register and not proxy else req.from_uri).host
        except UriError:
            return outcome.BAD_REQUEST
    try:
        cred = select_credentials(req.credentials, realm)
    except CredentialsError:
        return outcome.BAD_REQUEST
    try:
        identity = parse_uri(req.to_uri if register else req.from_uri)
        ruri = parse_uri(req.ruri)
    except UriError:
        return outcome.NO_REPLY_ERROR
    if cred is not None and cred.realm != identity.host and cred.realm.lower() != identity.host.lower():
        return outcome.NO_REPLY_ERROR
    if check_identity and cred is not None and not _is_identity(cred.username, identity):
        header = "To" if register else "From"
        return outcome.forbidden(
            f"digest username {cred.username!r} is not the {header} user {identity.user!r}@{identity.host}"
        )
    return AuthContext(method=req.method, ruri=ruri, identity=identity, credentials=cred, realm=realm)


def _is_identity(username: str, identity: SipUri) -> bool:
    """``alice`` or ``alice@example.com`` is the user of sip:alice@example.com: user parts
    equal (case-sensitive, as SIP compares them), a domain if given equal ignoring case."""
    user, at, domain = username.partition("@")
    return user == identity.user and (not at or domain == identity.host or domain.lower() == identity.host.lower())


def result_outcome(result: Result, challenge: bytes | None, proxy: bool, answered: bool = False) -> Outcome:
    """Map a server verdict to the reply; a hostile challenge becomes 500. ``answered``:
    the request carried credentials (see outcome.challenge)."""
    if result is Result.AUTHORIZED:
        return outcome.PASS
    if result is Result.NOT_AUTHORIZED:
        return outcome.FORBIDDEN
    if result is Result.CHALLENGE and challenge is not None:
        try:
            return outcome.challenge(proxy, challenge, answered)
        except outcome.ChallengeError:
            return outcome.SERVER_ERROR
    return outcome.SERVER_ERROR
