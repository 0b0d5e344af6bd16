"""The SIP-side decisions of diameter_is_user_in, pure (§7 of the shared notes).

Return codes are the C module's: -2 To unusable, -3 From unusable, -4 no authorized
credentials, -5 URI unparsable, -1 anything else that fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sip.credentials import Credentials
from .sip.uri import UriError, parse_uri
from .wire.legacy import group_user_name

WHO = ("request-uri", "to", "from", "credentials")

USER_IN = 1
ERROR = -1
BAD_TO = -2
BAD_FROM = -3
NO_CREDENTIALS = -4
BAD_URI = -5


class GroupParamError(ValueError):
    """The "who,group" parameter is wrong: a script error, reported by name."""


@dataclass(frozen=True, slots=True)
class GroupQuery:
    who: str
    group: str


def parse_param(param: str) -> GroupQuery:
    """``"From,voicemail"`` -> GroupQuery; who is case-insensitive, group is literal."""
    who, sep, group = param.partition(",")
    who = who.strip().lower()
    if not sep or who not in WHO:
        raise GroupParamError(
            f"diameter_is_user_in: parameter {param!r} must be '<who>,<group>' with who one of "
            "Request-URI, From, To, Credentials"
        )
    if not group:
        raise GroupParamError(f"diameter_is_user_in: parameter {param!r} has an empty group")
    return GroupQuery(who=who, group=group)


@dataclass(frozen=True, slots=True)
class GroupContext:
    destination_realm: str
    user_name: bytes


def plan(
    who: str,
    uri: str | None,
    ruri: str | None,
    authorized: Credentials | None,
    use_domain: bool,
) -> GroupContext | int:
    """``uri`` is the URI named by ``who`` (unused for Credentials)."""
    if who == "credentials":
        if authorized is None:
            return NO_CREDENTIALS
        user = authorized.username
        user = user.partition(":")[2] if ":" in user else user
        user, domain = user.partition("@")[0], authorized.realm
    else:
        if uri is None:
            return {"to": BAD_TO, "from": BAD_FROM}.get(who, BAD_URI)
        try:
            parsed = parse_uri(uri)
        except UriError:
            return BAD_URI
        user, domain = parsed.user, parsed.host
    user_name = group_user_name(user, domain, use_domain)
    if not user_name:
        return ERROR
    try:
        realm = parse_uri(ruri).host
    except UriError:
        return ERROR
    return GroupContext(destination_realm=realm, user_name=user_name)
