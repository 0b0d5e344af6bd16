"""RFC 4740 Diameter SIP application (application 6), both directions, pure.

MAR/MAA (286) carry the digest challenge and credentials in SIP-Auth-Data-Item
with the RFC 5090 Digest-* AVPs (vendor 0, M set); an MAA may also hand over the
user's H(A1) (Flow B, §6.3: Digest-HA1 in SIP-Authenticate, one SIP-Auth-Data-Item
per algorithm), which :attr:`MultimediaAuthAnswer.ha1s` holds; SAR/SAA (284) with
SIP-Server-Assignment-Type NO_ASSIGNMENT fetch SIP-User-Data, which is how a group
check works on a standard server (our convention: SIP-User-Data-Type "groups",
contents the group names one per line, UTF-8). The client half (encode_mar,
decode_maa, encode_sar, decode_saa) takes and returns plain values for the plugin;
the server half (decode_mar, encode_maa, decode_sar, encode_saa) reads requests
from :func:`base.decode_lean` and answers with :func:`base.lean_answer`. Both use
the lean codec of wire/base.py (python-diameter's objects cost ~50 us a message);
error answers, which carry a Failed-AVP, are rare and use python-diameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from diameter.message.avp import Avp

from . import base
from .base import RequestError
from .digest_avps import (
    AVP_DIGEST_ALGORITHM,
    AVP_DIGEST_CNONCE,
    AVP_DIGEST_DOMAIN,
    AVP_DIGEST_HA1,
    AVP_DIGEST_METHOD,
    AVP_DIGEST_NONCE,
    AVP_DIGEST_NONCE_COUNT,
    AVP_DIGEST_OPAQUE,
    AVP_DIGEST_QOP,
    AVP_DIGEST_REALM,
    AVP_DIGEST_RESPONSE,
    AVP_DIGEST_STALE,
    AVP_DIGEST_URI,
    AVP_DIGEST_USERNAME,
    AVP_SIP_AOR,
    DigestHa1,
    digest_ha1,
)

APP_SIP = 6
CMD_SERVER_ASSIGNMENT = 284
CMD_MULTIMEDIA_AUTH = 286

AVP_SIP_SERVER_URI = 371
AVP_SIP_SERVER_ASSIGNMENT_TYPE = 375
AVP_SIP_AUTH_DATA_ITEM = 376
AVP_SIP_AUTHENTICATION_SCHEME = 377
AVP_SIP_ITEM_NUMBER = 378
AVP_SIP_AUTHENTICATE = 379
AVP_SIP_AUTHORIZATION = 380
AVP_SIP_NUMBER_AUTH_ITEMS = 382
AVP_SIP_SUPPORTED_USER_DATA_TYPE = 388
AVP_SIP_USER_DATA = 389
AVP_SIP_USER_DATA_TYPE = 390
AVP_SIP_USER_DATA_CONTENTS = 391
AVP_SIP_USER_DATA_ALREADY_AVAILABLE = 392
AVP_SIP_METHOD = 393

# Digest-* (RFC 5090, 103-122) and SIP-* (RFC 4740 §9, 368-393) on top of the base AVPs.
RECOGNISED: frozenset[int] = base.RECOGNISED | frozenset(range(103, 123)) | frozenset(range(368, 394))
# SIP-Accounting-Information, -Server-Capabilities, -Auth-Data-Item, -Authenticate,
# -Authorization, -Authentication-Info, -Deregistration-Reason, -User-Data.
GROUPED: frozenset[int] = base.GROUPED | frozenset({368, 372, 376, 379, 380, 381, 383, 389})

SCHEME_DIGEST = 0
ASSIGNMENT_NO_ASSIGNMENT = 0
USER_DATA_NOT_AVAILABLE = 0

RESULT_SUCCESS_SERVER_NAME_NOT_STORED = 2006
RESULT_SUCCESS_AUTH_SENT_SERVER_NOT_STORED = 2008
RESULT_USER_NAME_REQUIRED = 4013
RESULT_AVP_OCCURS_TOO_MANY_TIMES = 5009
RESULT_ERROR_USER_UNKNOWN = 5032
RESULT_ERROR_IDENTITIES_DONT_MATCH = 5033
RESULT_ERROR_AUTH_SCHEME_NOT_SUPPORTED = 5037
RESULT_ERROR_NOT_SUPPORTED_USER_DATA = 5040

GROUPS_USER_DATA_TYPE = "groups"


@dataclass(slots=True)  # not frozen: built per exchange, and frozen triples the cost (bench/README.md)
class DigestChallenge:
    """SIP-Authenticate (RFC 4740 §9.5): what goes into WWW-/Proxy-Authenticate, unquoted."""

    realm: str
    nonce: str
    qop: str | None = "auth"
    algorithm: str | None = "MD5"
    stale: bool = False
    opaque: str | None = None
    domain: str | None = None


@dataclass(slots=True)
class DigestResponse:
    """SIP-Authorization (RFC 4740 §9.6): one set of credentials, quotes stripped."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    cnonce: str | None = None
    qop: str | None = None
    nonce_count: str | None = None
    method: str | None = None
    opaque: str | None = None

    def params(self) -> dict[str, str]:
        """The values under their Authorization-header names, as the digest core takes them."""
        out = {
            "username": self.username,
            "realm": self.realm,
            "nonce": self.nonce,
            "uri": self.uri,
            "response": self.response,
        }
        for name, value in (
            ("algorithm", self.algorithm),
            ("cnonce", self.cnonce),
            ("qop", self.qop),
            ("nc", self.nonce_count),
            ("opaque", self.opaque),
        ):
            if value is not None:
                out[name] = value
        return out


@dataclass(slots=True)
class MultimediaAuthRequest:
    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    sip_aor: str
    sip_method: str
    user_name: str | None = None
    server_uri: str | None = None  # only when the client acts as registrar (§8.7)
    destination_host: str | None = None
    credentials: DigestResponse | None = None


@dataclass(slots=True)
class MultimediaAuthAnswer:
    """``challenge`` is the first SIP-Authenticate; ``ha1s`` the Digest-HA1 of every
    SIP-Auth-Data-Item that has one (Flow B), in the order of the answer."""

    result_code: int
    challenge: DigestChallenge | None = None
    error_message: str | None = None
    ha1s: tuple[DigestHa1, ...] = ()


@dataclass(slots=True)
class UserData:
    """SIP-User-Data (RFC 4740 §9.12)."""

    type: str
    contents: bytes


@dataclass(slots=True)
class ServerAssignmentRequest:
    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    assignment_type: int
    user_data_already_available: int = USER_DATA_NOT_AVAILABLE
    user_name: str | None = None
    server_uri: str | None = None
    destination_host: str | None = None
    supported_user_data_types: tuple[str, ...] = ()
    sip_aors: tuple[str, ...] = ()


@dataclass(slots=True)
class ServerAssignmentAnswer:
    result_code: int
    user_data: tuple[UserData, ...] = ()
    error_message: str | None = None


def groups_user_data(groups: Iterable[str]) -> UserData:
    return UserData(GROUPS_USER_DATA_TYPE, "".join(f"{g}\n" for g in groups).encode())


def groups_of(user_data: Iterable[UserData]) -> list[str] | None:
    """The group names in a "groups" SIP-User-Data, or None if the answer has none."""
    for item in user_data:
        if item.type == GROUPS_USER_DATA_TYPE:
            return [g for g in item.contents.decode("utf-8", "replace").split("\n") if g]
    return None


# --- shared pieces -------------------------------------------------------------------


def session_avps() -> list[Avp]:
    """Auth-Application-Id 6 and Auth-Session-State NO_STATE_MAINTAINED, for error answers."""
    return [
        base.avp(base.AVP_AUTH_APPLICATION_ID, APP_SIP),
        base.avp(base.AVP_AUTH_SESSION_STATE, base.AUTH_SESSION_NO_STATE_MAINTAINED),
    ]


def _head_values(avps: base.LeanAvps) -> dict[str, str]:
    """The mandatory head of every app-6 request; 5005 for what is missing."""
    for code in (base.AVP_AUTH_APPLICATION_ID, base.AVP_AUTH_SESSION_STATE):
        avps.required_unsigned(code)
    return {
        "session_id": avps.required_text(base.AVP_SESSION_ID),
        "origin_host": avps.required_text(base.AVP_ORIGIN_HOST),
        "origin_realm": avps.required_text(base.AVP_ORIGIN_REALM),
        "destination_realm": avps.required_text(base.AVP_DESTINATION_REALM),
    }


def _at_most_one(avps: base.LeanAvps, code: int) -> base.LeanAvps | None:
    """The members of the one Grouped AVP with this code, None without; 5009 for two."""
    found = avps.all(code)
    if len(found) > 1:
        raise RequestError(
            RESULT_AVP_OCCURS_TOO_MANY_TIMES, f"AVP {code} occurs {len(found)} times", Avp(code, 0, found[1], 0x40)
        )
    return base.LeanAvps.parse(found[0], 0, len(found[0])) if found else None


def _pack_optional(out: list[bytes], code: int, value: str | None) -> None:
    if value is not None:
        out.append(base.pack_text(code, value))


def _pack_head(
    session_id: str, origin_host: str, origin_realm: str, destination_realm: str, destination_host: str | None
) -> list[bytes]:
    """Session-Id first (RFC 6733 §8.8), then what every app-6 request carries."""
    return [
        base.pack_text(base.AVP_SESSION_ID, session_id),
        _constant_head(origin_host, origin_realm, destination_realm, destination_host),
    ]


@lru_cache(maxsize=64)  # the same for every request of a worker
def _constant_head(origin_host: str, origin_realm: str, destination_realm: str, destination_host: str | None) -> bytes:
    out = [
        base.pack_u32(base.AVP_AUTH_APPLICATION_ID, APP_SIP),
        base.pack_u32(base.AVP_AUTH_SESSION_STATE, base.AUTH_SESSION_NO_STATE_MAINTAINED),
        base.pack_text(base.AVP_ORIGIN_HOST, origin_host),
        base.pack_text(base.AVP_ORIGIN_REALM, origin_realm),
        base.pack_text(base.AVP_DESTINATION_REALM, destination_realm),
    ]
    _pack_optional(out, base.AVP_DESTINATION_HOST, destination_host)
    return b"".join(out)


def _pack_authorization(c: DigestResponse) -> bytes:
    members = base.pack_texts(
        (
            (AVP_DIGEST_USERNAME, c.username),
            (AVP_DIGEST_REALM, c.realm),
            (AVP_DIGEST_NONCE, c.nonce),
            (AVP_DIGEST_URI, c.uri),
            (AVP_DIGEST_RESPONSE, c.response),
            (AVP_DIGEST_ALGORITHM, c.algorithm),
            (AVP_DIGEST_CNONCE, c.cnonce),
            (AVP_DIGEST_OPAQUE, c.opaque),
            (AVP_DIGEST_QOP, c.qop),
            (AVP_DIGEST_NONCE_COUNT, c.nonce_count),
            (AVP_DIGEST_METHOD, c.method),
        )
    )
    return base.pack_avp(AVP_SIP_AUTHORIZATION, members)


_ONE_AUTH_ITEM = base.pack_u32(AVP_SIP_NUMBER_AUTH_ITEMS, 1)
_AUTH_ITEM_SCHEME = base.pack_u32(AVP_SIP_AUTHENTICATION_SCHEME, SCHEME_DIGEST)


def _request_flags(retransmit: bool) -> int:
    return base.FLAG_REQUEST | base.FLAG_PROXIABLE | (base.FLAG_RETRANSMIT if retransmit else 0)


def encode_mar(req: MultimediaAuthRequest, hop_by_hop: int, end_to_end: int, retransmit: bool = False) -> bytes:
    """A MAR (lean codec); with credentials it carries SIP-Number-Auth-Items 1 and one SIP-Auth-Data-Item."""
    avps = _pack_head(req.session_id, req.origin_host, req.origin_realm, req.destination_realm, req.destination_host)
    avps.append(
        base.pack_texts(
            (
                (AVP_SIP_AOR, req.sip_aor),
                (AVP_SIP_METHOD, req.sip_method),
                (base.AVP_USER_NAME, req.user_name),
                (AVP_SIP_SERVER_URI, req.server_uri),
            )
        )
    )
    if req.credentials is not None:
        item = _AUTH_ITEM_SCHEME + _pack_authorization(req.credentials)
        avps.append(_ONE_AUTH_ITEM + base.pack_avp(AVP_SIP_AUTH_DATA_ITEM, item))
    body = b"".join(avps)
    return base.pack_message(_request_flags(retransmit), CMD_MULTIMEDIA_AUTH, APP_SIP, hop_by_hop, end_to_end, body)


def _decode_authorization(m: base.LeanAvps) -> DigestResponse:
    return DigestResponse(
        username=m.required_text(AVP_DIGEST_USERNAME),
        realm=m.required_text(AVP_DIGEST_REALM),
        nonce=m.required_text(AVP_DIGEST_NONCE),
        uri=m.required_text(AVP_DIGEST_URI),
        response=m.required_text(AVP_DIGEST_RESPONSE),
        algorithm=m.text(AVP_DIGEST_ALGORITHM),
        cnonce=m.text(AVP_DIGEST_CNONCE),
        qop=m.text(AVP_DIGEST_QOP),
        nonce_count=m.text(AVP_DIGEST_NONCE_COUNT),
        method=m.text(AVP_DIGEST_METHOD),
        opaque=m.text(AVP_DIGEST_OPAQUE),
    )


def decode_mar(msg: base.LeanMessage) -> MultimediaAuthRequest:
    """A MAR's content. RequestError: 5005 missing AVP, 5004 bad value, 5009 more than one
    SIP-Auth-Data-Item (§8.7 allows one), 5037 a scheme other than DIGEST. DecodeError
    if a group does not hold well-formed AVPs."""
    avps = msg.avps
    head = _head_values(avps)
    credentials = None
    item = _at_most_one(avps, AVP_SIP_AUTH_DATA_ITEM)
    if item is not None:
        scheme = item.required_unsigned(AVP_SIP_AUTHENTICATION_SCHEME)
        if scheme != SCHEME_DIGEST:
            raw = avps.first(AVP_SIP_AUTH_DATA_ITEM) or b""
            failed = Avp(AVP_SIP_AUTH_DATA_ITEM, 0, raw, 0x40)
            raise RequestError(RESULT_ERROR_AUTH_SCHEME_NOT_SUPPORTED, f"authentication scheme {scheme}", failed)
        authorization = _at_most_one(item, AVP_SIP_AUTHORIZATION)
        if authorization is not None:
            credentials = _decode_authorization(authorization)
    return MultimediaAuthRequest(
        **head,
        sip_aor=avps.required_text(AVP_SIP_AOR),
        sip_method=avps.required_text(AVP_SIP_METHOD),
        user_name=avps.text(base.AVP_USER_NAME),
        server_uri=avps.text(AVP_SIP_SERVER_URI),
        destination_host=avps.text(base.AVP_DESTINATION_HOST),
        credentials=credentials,
    )


def _pack_authenticate(c: DigestChallenge, ha1: str | None = None) -> bytes:
    members = [base.pack_text(AVP_DIGEST_REALM, c.realm), base.pack_text(AVP_DIGEST_NONCE, c.nonce)]
    _pack_optional(members, AVP_DIGEST_DOMAIN, c.domain)
    _pack_optional(members, AVP_DIGEST_OPAQUE, c.opaque)
    if c.stale:
        members.append(base.pack_text(AVP_DIGEST_STALE, "true"))
    _pack_optional(members, AVP_DIGEST_ALGORITHM, c.algorithm)
    _pack_optional(members, AVP_DIGEST_QOP, c.qop)
    _pack_optional(members, AVP_DIGEST_HA1, ha1)
    return base.pack_avp(AVP_SIP_AUTHENTICATE, b"".join(members))


def _pack_items(answer: MultimediaAuthAnswer) -> bytes:
    """SIP-Number-Auth-Items and the SIP-Auth-Data-Items of an MAA's challenge: one, or
    with ``ha1s`` one per H(A1), numbered (RFC 4740 §9.5: SIP-Item-Number when there are
    several), each the challenge with that H(A1)'s realm, algorithm and qop."""
    c = answer.challenge
    if c is None:
        if answer.ha1s:
            raise ValueError("Digest-HA1 travels in SIP-Authenticate: an answer with ha1s needs a challenge")
        return b""
    if not answer.ha1s:
        item = base.pack_u32(AVP_SIP_AUTHENTICATION_SCHEME, SCHEME_DIGEST) + _pack_authenticate(c)
        return base.pack_u32(AVP_SIP_NUMBER_AUTH_ITEMS, 1) + base.pack_avp(AVP_SIP_AUTH_DATA_ITEM, item)
    out = [base.pack_u32(AVP_SIP_NUMBER_AUTH_ITEMS, len(answer.ha1s))]
    for number, h in enumerate(answer.ha1s, 1):
        challenge = DigestChallenge(h.realm, c.nonce, h.qop, h.algorithm, c.stale, c.opaque, c.domain)
        item = base.pack_u32(AVP_SIP_AUTHENTICATION_SCHEME, SCHEME_DIGEST) + base.pack_u32(AVP_SIP_ITEM_NUMBER, number)
        out.append(base.pack_avp(AVP_SIP_AUTH_DATA_ITEM, item + _pack_authenticate(challenge, h.ha1)))
    return b"".join(out)


_SESSION_AVPS = base.pack_u32(base.AVP_AUTH_APPLICATION_ID, APP_SIP) + base.pack_u32(
    base.AVP_AUTH_SESSION_STATE, base.AUTH_SESSION_NO_STATE_MAINTAINED
)


def encode_maa(request: base.LeanMessage, identity: base.Identity, answer: MultimediaAuthAnswer) -> bytes:
    """ValueError for ``ha1s`` without a challenge to carry them."""
    body = _SESSION_AVPS + _pack_items(answer)
    return base.lean_answer(request, identity, answer.result_code, body, answer.error_message)


def _decode_challenge(m: base.LeanAvps) -> DigestChallenge:
    return DigestChallenge(
        realm=m.required_text(AVP_DIGEST_REALM),
        nonce=m.required_text(AVP_DIGEST_NONCE),
        qop=m.text(AVP_DIGEST_QOP),
        algorithm=m.text(AVP_DIGEST_ALGORITHM),
        stale=(m.text(AVP_DIGEST_STALE) or "").lower() == "true",
        opaque=m.text(AVP_DIGEST_OPAQUE),
        domain=m.text(AVP_DIGEST_DOMAIN),
    )


def _decode_ha1(m: base.LeanAvps) -> DigestHa1 | None:
    """The H(A1) of one SIP-Authenticate (Flow B), None without Digest-HA1 or for an
    algorithm we cannot use; DecodeError if it is not hex of the right length."""
    ha1 = m.text(AVP_DIGEST_HA1)
    if ha1 is None:
        return None
    return digest_ha1(m.text(AVP_DIGEST_ALGORITHM), ha1, m.required_text(AVP_DIGEST_REALM), m.text(AVP_DIGEST_QOP))


def decode_maa(raw: bytes) -> tuple[base.AnswerInfo, MultimediaAuthAnswer]:
    """An MAA (lean codec). DecodeError if the bytes are not a message (close the
    connection) or an H(A1) is not hex of its algorithm's length; RequestError if it
    lacks Result-Code, Origin-* or a challenge's realm/nonce. The SIP-Authenticate of
    each SIP-Auth-Data-Item is read, and nothing deeper: a hostile nesting costs nothing."""
    msg = base.decode_lean(raw)
    info = base.answer_info(msg)
    challenge = None
    ha1s = []
    for item in msg.avps.groups(AVP_SIP_AUTH_DATA_ITEM):
        authenticate = item.groups(AVP_SIP_AUTHENTICATE)
        if authenticate:
            if challenge is None:
                challenge = _decode_challenge(authenticate[0])
            ha1 = _decode_ha1(authenticate[0])
            if ha1 is not None:
                ha1s.append(ha1)
    answer = MultimediaAuthAnswer(
        result_code=msg.avps.required_unsigned(base.AVP_RESULT_CODE),
        challenge=challenge,
        error_message=info.error_message,
        ha1s=tuple(ha1s),
    )
    return info, answer


# --- SAR / SAA -----------------------------------------------------------------------


def encode_sar(req: ServerAssignmentRequest, hop_by_hop: int, end_to_end: int, retransmit: bool = False) -> bytes:
    """A SAR (lean codec)."""
    avps = _pack_head(req.session_id, req.origin_host, req.origin_realm, req.destination_realm, req.destination_host)
    avps.append(base.pack_u32(AVP_SIP_SERVER_ASSIGNMENT_TYPE, req.assignment_type))
    avps.append(base.pack_u32(AVP_SIP_USER_DATA_ALREADY_AVAILABLE, req.user_data_already_available))
    _pack_optional(avps, base.AVP_USER_NAME, req.user_name)
    _pack_optional(avps, AVP_SIP_SERVER_URI, req.server_uri)
    avps += [base.pack_text(AVP_SIP_SUPPORTED_USER_DATA_TYPE, t) for t in req.supported_user_data_types]
    avps += [base.pack_text(AVP_SIP_AOR, aor) for aor in req.sip_aors]
    body = b"".join(avps)
    return base.pack_message(_request_flags(retransmit), CMD_SERVER_ASSIGNMENT, APP_SIP, hop_by_hop, end_to_end, body)


def decode_sar(msg: base.LeanMessage) -> ServerAssignmentRequest:
    """A SAR's content; RequestError 5005/5004 as for decode_mar."""
    avps = msg.avps
    return ServerAssignmentRequest(
        **_head_values(avps),
        assignment_type=avps.required_unsigned(AVP_SIP_SERVER_ASSIGNMENT_TYPE),
        user_data_already_available=avps.required_unsigned(AVP_SIP_USER_DATA_ALREADY_AVAILABLE),
        user_name=avps.text(base.AVP_USER_NAME),
        server_uri=avps.text(AVP_SIP_SERVER_URI),
        destination_host=avps.text(base.AVP_DESTINATION_HOST),
        supported_user_data_types=tuple(_texts(avps, AVP_SIP_SUPPORTED_USER_DATA_TYPE)),
        sip_aors=tuple(_texts(avps, AVP_SIP_AOR)),
    )


def _texts(avps: base.LeanAvps, code: int) -> list[str]:
    try:
        return [data.decode("utf-8") for data in avps.all(code)]
    except UnicodeDecodeError:
        raise RequestError(base.RESULT_INVALID_AVP_VALUE, f"AVP {code} is not UTF-8") from None


def encode_saa(request: base.LeanMessage, identity: base.Identity, answer: ServerAssignmentAnswer) -> bytes:
    body = [_SESSION_AVPS]
    for item in answer.user_data:
        members = [base.pack_text(AVP_SIP_USER_DATA_TYPE, item.type)]
        members.append(base.pack_avp(AVP_SIP_USER_DATA_CONTENTS, item.contents))
        body.append(base.pack_avp(AVP_SIP_USER_DATA, b"".join(members)))
    return base.lean_answer(request, identity, answer.result_code, b"".join(body), answer.error_message)


def decode_saa(raw: bytes) -> tuple[base.AnswerInfo, ServerAssignmentAnswer]:
    """An SAA (lean codec); errors as for decode_maa."""
    msg = base.decode_lean(raw)
    info = base.answer_info(msg)
    user_data = []
    for m in msg.avps.groups(AVP_SIP_USER_DATA):
        contents = m.first(AVP_SIP_USER_DATA_CONTENTS)
        if contents is None:
            raise base.missing(AVP_SIP_USER_DATA_CONTENTS)
        user_data.append(UserData(m.required_text(AVP_SIP_USER_DATA_TYPE), contents))
    answer = ServerAssignmentAnswer(
        result_code=msg.avps.required_unsigned(base.AVP_RESULT_CODE),
        user_data=tuple(user_data),
        error_message=info.error_message,
    )
    return info, answer
