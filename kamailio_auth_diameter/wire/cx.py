"""3GPP Cx (TS 29.228 / TS 29.229) MAR/MAA for "SIP Digest", both directions, pure.

Cx is application 16777216 of vendor 3GPP (10415), named in every request by
Vendor-Specific-Application-Id; MAR/MAA is command 303. For "SIP Digest" the
S-CSCF (our plugin) asks for a user's H(A1) and then makes its own nonces and checks
responses itself (TS 33.203 Annex N):

* MAR: User-Name is the IMPI (the digest username as the UA gives it),
  Public-Identity the IMPU (``sip:user@realm``), one SIP-Auth-Data-Item naming the
  scheme, SIP-Number-Auth-Items 1, and Server-Name (the S-CSCF's SIP URI);
* MAA: Result-Code 2001 with SIP-Auth-Data-Item{SIP-Authentication-Scheme "SIP
  Digest", SIP-Digest-Authenticate{Digest-Realm, [Digest-Algorithm], Digest-QoP,
  Digest-HA1, [Alternate-Digest-Algorithm, Alternate-Digest-HA1]}}, or an
  Experimental-Result{10415, 5001 user unknown | 5002 identities don't match | 5006
  scheme not supported} instead of Result-Code.

Flags follow TS 29.229 table 6.3.1: the 3GPP AVPs carry M and V, except
SIP-Digest-Authenticate and the Alternate-Digest AVPs, which carry V only; the
Digest-* AVPs inside are IETF ones (vendor 0, M), which some HSSs send under the 3GPP
vendor instead: both are read. A missing Digest-Algorithm means MD5 and a missing
Digest-QoP "auth" (FHoSS sends neither); Alternate-Digest-* give a second H(A1),
e.g. SHA-256 (RFC 7616), which TS 29.229 only allows next to an MD5 Digest-HA1.

Like wire/sip_app.py, everything goes through the lean codec of wire/base.py, and
decoding is strict: DecodeError for bytes that are not a message or an H(A1) that is
not hex of its algorithm's length, RequestError for a missing or malformed AVP.
Readers open exactly the groups they read (612, then 635), so nesting costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from . import base
from .base import RequestError
from .digest_avps import (
    AVP_DIGEST_ALGORITHM,
    AVP_DIGEST_HA1,
    AVP_DIGEST_QOP,
    AVP_DIGEST_REALM,
    MD5,
    DigestHa1,
    digest_ha1,
)

VENDOR_3GPP = 10415
APP_CX = 16777216
APPLICATION = base.VendorApplication(VENDOR_3GPP, APP_CX)
CMD_MULTIMEDIA_AUTH = 303

AVP_PUBLIC_IDENTITY = 601
AVP_SERVER_NAME = 602
AVP_SIP_NUMBER_AUTH_ITEMS = 607
AVP_SIP_AUTHENTICATION_SCHEME = 608
AVP_SIP_AUTH_DATA_ITEM = 612
AVP_SIP_ITEM_NUMBER = 613
AVP_SIP_DIGEST_AUTHENTICATE = 635
AVP_ALTERNATE_DIGEST_ALGORITHM = 662
AVP_ALTERNATE_DIGEST_HA1 = 663

SCHEME_SIP_DIGEST = "SIP Digest"
SCHEME_UNKNOWN = "Unknown"  # the S-CSCF leaves the choice to the HSS

# Experimental-Result-Code values of vendor 10415 (TS 29.229 §6.2.2)
USER_UNKNOWN = 5001
IDENTITIES_DONT_MATCH = 5002
AUTH_SCHEME_NOT_SUPPORTED = 5006

# What a Cx request may carry on top of the base AVPs: the Digest-* AVPs and the Cx
# dictionary (3GPP 600-666), whatever of it we read; an M-bit AVP outside gets 5001.
RECOGNISED: frozenset[base.AvpKey] = (
    base.RECOGNISED | frozenset(range(103, 123)) | frozenset((code, VENDOR_3GPP) for code in range(600, 667))
)
GROUPED: frozenset[base.AvpKey] = base.GROUPED | {
    (AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP),
    (AVP_SIP_DIGEST_AUTHENTICATE, VENDOR_3GPP),
}

_MV = base.AVP_FLAG_MANDATORY  # pack_avp adds V for a vendor
_V_ONLY = 0  # TS 29.229: M must not be set (SIP-Digest-Authenticate, Alternate-Digest-*)


@dataclass(slots=True)  # not frozen: built per exchange, and frozen triples the cost (bench/README.md)
class MultimediaAuthRequest:
    session_id: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    user_name: str  # IMPI: the digest username as the UA gave it
    public_identity: str  # IMPU: sip:user@realm
    server_name: str  # the S-CSCF's SIP URI
    scheme: str = SCHEME_SIP_DIGEST
    destination_host: str | None = None


@dataclass(slots=True)
class MultimediaAuthAnswer:
    """An MAA's outcome: ``result_code`` (Result-Code) or ``experimental_result`` (the
    code of an Experimental-Result from vendor 10415; another vendor's is not read), and
    the H(A1)s of its SIP-Digest-Authenticate AVPs, each main one before its alternate."""

    result_code: int | None = None
    experimental_result: int | None = None
    ha1s: tuple[DigestHa1, ...] = ()
    error_message: str | None = None


# --- MAR -------------------------------------------------------------------------------


@lru_cache(maxsize=64)  # the same for every request of a worker
def _constant_head(origin_host: str, origin_realm: str, destination_realm: str, destination_host: str | None) -> bytes:
    out = [
        base.vendor_application_avp(APPLICATION),
        base.pack_u32(base.AVP_AUTH_SESSION_STATE, base.AUTH_SESSION_NO_STATE_MAINTAINED),
        base.pack_text(base.AVP_ORIGIN_HOST, origin_host),
        base.pack_text(base.AVP_ORIGIN_REALM, origin_realm),
        base.pack_text(base.AVP_DESTINATION_REALM, destination_realm),
    ]
    if destination_host is not None:
        out.append(base.pack_text(base.AVP_DESTINATION_HOST, destination_host))
    return b"".join(out)


def encode_mar(req: MultimediaAuthRequest, hop_by_hop: int, end_to_end: int, retransmit: bool = False) -> bytes:
    """A MAR (lean codec), its AVPs in the order of TS 29.229 §6.1.7."""
    scheme = base.pack_text(AVP_SIP_AUTHENTICATION_SCHEME, req.scheme, _MV, VENDOR_3GPP)
    body = b"".join(
        (
            base.pack_text(base.AVP_SESSION_ID, req.session_id),
            _constant_head(req.origin_host, req.origin_realm, req.destination_realm, req.destination_host),
            base.pack_text(base.AVP_USER_NAME, req.user_name),
            base.pack_text(AVP_PUBLIC_IDENTITY, req.public_identity, _MV, VENDOR_3GPP),
            base.pack_avp(AVP_SIP_AUTH_DATA_ITEM, scheme, _MV, VENDOR_3GPP),
            base.pack_u32(AVP_SIP_NUMBER_AUTH_ITEMS, 1, _MV, VENDOR_3GPP),
            base.pack_text(AVP_SERVER_NAME, req.server_name, _MV, VENDOR_3GPP),
        )
    )
    flags = base.FLAG_REQUEST | base.FLAG_PROXIABLE | (base.FLAG_RETRANSMIT if retransmit else 0)
    return base.pack_message(flags, CMD_MULTIMEDIA_AUTH, APP_CX, hop_by_hop, end_to_end, body)


def decode_mar(msg: base.LeanMessage) -> MultimediaAuthRequest:
    """A MAR's content. RequestError: 5005 for a missing AVP (the scheme inside
    SIP-Auth-Data-Item included), 5004 for a bad value, 5009 for more than one
    SIP-Auth-Data-Item (the MAR has exactly one). Whether the scheme is one we serve
    is the caller's decision (5006 in an Experimental-Result); DecodeError if a group
    does not hold well-formed AVPs."""
    avps = msg.avps
    if avps.first(base.AVP_VENDOR_SPECIFIC_APPLICATION_ID) is None:
        raise base.missing(base.AVP_VENDOR_SPECIFIC_APPLICATION_ID)
    avps.required_unsigned(base.AVP_AUTH_SESSION_STATE)
    avps.required_unsigned(AVP_SIP_NUMBER_AUTH_ITEMS, VENDOR_3GPP)
    items = avps.all(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
    if not items:
        raise base.missing(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP)
    if len(items) > 1:
        failed = base.Avp(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP, items[1], base.AVP_FLAG_MANDATORY)
        raise RequestError(
            base.RESULT_AVP_OCCURS_TOO_MANY_TIMES, f"SIP-Auth-Data-Item occurs {len(items)} times", failed
        )
    item = base.LeanAvps.parse(items[0], 0, len(items[0]))
    return MultimediaAuthRequest(
        session_id=avps.required_text(base.AVP_SESSION_ID),
        origin_host=avps.required_text(base.AVP_ORIGIN_HOST),
        origin_realm=avps.required_text(base.AVP_ORIGIN_REALM),
        destination_realm=avps.required_text(base.AVP_DESTINATION_REALM),
        user_name=avps.required_text(base.AVP_USER_NAME),
        public_identity=avps.required_text(AVP_PUBLIC_IDENTITY, VENDOR_3GPP),
        server_name=avps.required_text(AVP_SERVER_NAME, VENDOR_3GPP),
        scheme=item.required_text(AVP_SIP_AUTHENTICATION_SCHEME, VENDOR_3GPP),
        destination_host=avps.text(base.AVP_DESTINATION_HOST),
    )


# --- MAA -------------------------------------------------------------------------------

_SESSION_AVPS = base.vendor_application_avp(APPLICATION) + base.pack_u32(
    base.AVP_AUTH_SESSION_STATE, base.AUTH_SESSION_NO_STATE_MAINTAINED
)


def session_avps() -> list[base.Avp]:
    """Vendor-Specific-Application-Id and Auth-Session-State, for error answers made
    with python-diameter (those with a Failed-AVP)."""
    vsai = base.avp_group(
        base.AVP_VENDOR_SPECIFIC_APPLICATION_ID,
        [base.avp(base.AVP_VENDOR_ID, VENDOR_3GPP), base.avp(base.AVP_AUTH_APPLICATION_ID, APP_CX)],
    )
    return [vsai, base.avp(base.AVP_AUTH_SESSION_STATE, base.AUTH_SESSION_NO_STATE_MAINTAINED)]


def _pack_digest_authenticate(ha1s: tuple[DigestHa1, ...]) -> bytes:
    """SIP-Digest-Authenticate for one or two H(A1)s of one realm and qop: the MD5 one
    in Digest-HA1, the other in Alternate-Digest-HA1 (TS 29.229 §6.3.72: MD5 only in
    Digest-Algorithm). ValueError for what the AVP cannot say."""
    if not 1 <= len(ha1s) <= 2 or len({(h.realm, h.qop) for h in ha1s}) != 1:
        raise ValueError("SIP-Digest-Authenticate holds one or two H(A1)s of one realm and qop")
    main, *alternates = sorted(ha1s, key=lambda h: h.algorithm != MD5)  # stable: the MD5 one first
    members = [
        base.pack_text(AVP_DIGEST_REALM, main.realm),
        base.pack_text(AVP_DIGEST_ALGORITHM, main.algorithm),
        base.pack_text(AVP_DIGEST_QOP, main.qop),
        base.pack_text(AVP_DIGEST_HA1, main.ha1),
    ]
    for alternate in alternates:
        if main.algorithm != MD5 or alternate.algorithm == MD5:
            raise ValueError("an Alternate-Digest-HA1 goes with an MD5 Digest-HA1 and is not MD5 itself")
        members.append(base.pack_text(AVP_ALTERNATE_DIGEST_ALGORITHM, alternate.algorithm, _V_ONLY, VENDOR_3GPP))
        members.append(base.pack_text(AVP_ALTERNATE_DIGEST_HA1, alternate.ha1, _V_ONLY, VENDOR_3GPP))
    return base.pack_avp(AVP_SIP_DIGEST_AUTHENTICATE, b"".join(members), _V_ONLY, VENDOR_3GPP)


def encode_maa(request: base.LeanMessage, identity: base.Identity, answer: MultimediaAuthAnswer) -> bytes:
    """The MAA to a lean MAR: User-Name and Public-Identity echoed from it, and with
    ``ha1s`` one SIP-Auth-Data-Item of scheme "SIP Digest". ValueError for an answer
    without a result, or H(A1)s one SIP-Digest-Authenticate cannot hold."""
    if answer.result_code is None and answer.experimental_result is None:
        raise ValueError("an MAA needs a Result-Code or an Experimental-Result")
    body = [_SESSION_AVPS]
    user_name = request.avps.first(base.AVP_USER_NAME)
    if user_name is not None:
        body.append(base.pack_avp(base.AVP_USER_NAME, user_name))
    public_identity = request.avps.first(AVP_PUBLIC_IDENTITY, VENDOR_3GPP)
    if public_identity is not None:
        body.append(base.pack_avp(AVP_PUBLIC_IDENTITY, public_identity, _MV, VENDOR_3GPP))
    if answer.ha1s:
        item = (
            base.pack_u32(AVP_SIP_ITEM_NUMBER, 1, _MV, VENDOR_3GPP)
            + base.pack_text(AVP_SIP_AUTHENTICATION_SCHEME, SCHEME_SIP_DIGEST, _MV, VENDOR_3GPP)
            + _pack_digest_authenticate(answer.ha1s)
        )
        body.append(base.pack_u32(AVP_SIP_NUMBER_AUTH_ITEMS, 1, _MV, VENDOR_3GPP))
        body.append(base.pack_avp(AVP_SIP_AUTH_DATA_ITEM, item, _MV, VENDOR_3GPP))
    experimental = None if answer.experimental_result is None else (VENDOR_3GPP, answer.experimental_result)
    return base.lean_answer(
        request, identity, answer.result_code, b"".join(body), answer.error_message, experimental=experimental
    )


def _digest_text(m: base.LeanAvps, code: int) -> str | None:
    """A Digest-* AVP inside SIP-Digest-Authenticate: IETF as specified, or under 3GPP's vendor."""
    value = m.text(code)
    return value if value is not None else m.text(code, VENDOR_3GPP)


def _decode_digest_authenticate(m: base.LeanAvps) -> list[DigestHa1]:
    realm = _digest_text(m, AVP_DIGEST_REALM)
    ha1 = _digest_text(m, AVP_DIGEST_HA1)
    if realm is None or ha1 is None:
        raise base.missing(AVP_DIGEST_REALM if realm is None else AVP_DIGEST_HA1)
    qop = _digest_text(m, AVP_DIGEST_QOP)
    found = [digest_ha1(_digest_text(m, AVP_DIGEST_ALGORITHM), ha1, realm, qop)]
    alternate_algorithm = m.text(AVP_ALTERNATE_DIGEST_ALGORITHM, VENDOR_3GPP)
    alternate_ha1 = m.text(AVP_ALTERNATE_DIGEST_HA1, VENDOR_3GPP)
    if (alternate_algorithm is None) != (alternate_ha1 is None):
        missing = AVP_ALTERNATE_DIGEST_HA1 if alternate_ha1 is None else AVP_ALTERNATE_DIGEST_ALGORITHM
        raise base.missing(missing, VENDOR_3GPP)
    if alternate_algorithm is not None and alternate_ha1 is not None:
        found.append(digest_ha1(alternate_algorithm, alternate_ha1, realm, qop))
    return [h for h in found if h is not None]


def decode_maa(raw: bytes) -> tuple[base.AnswerInfo, MultimediaAuthAnswer]:
    """An MAA (lean codec). DecodeError if the bytes are not a message (close the
    connection) or an H(A1) is not hex of its algorithm's length; RequestError if it
    has neither Result-Code nor a 3GPP Experimental-Result, lacks Origin-*, or a
    SIP-Digest-Authenticate lacks its realm or H(A1). An H(A1) of an algorithm we
    cannot use (neither MD5 nor SHA-256) is left out."""
    msg = base.decode_lean(raw)
    info = base.answer_info(msg)
    avps = msg.avps
    result_code = avps.unsigned(base.AVP_RESULT_CODE)
    experimental = base.experimental_result(avps, VENDOR_3GPP)
    if result_code is None and experimental is None:
        raise base.missing(base.AVP_RESULT_CODE)
    ha1s = []
    for item in avps.groups(AVP_SIP_AUTH_DATA_ITEM, VENDOR_3GPP):
        for authenticate in item.groups(AVP_SIP_DIGEST_AUTHENTICATE, VENDOR_3GPP):
            ha1s += _decode_digest_authenticate(authenticate)
    answer = MultimediaAuthAnswer(
        result_code=result_code,
        experimental_result=experimental,
        ha1s=tuple(ha1s),
        error_message=info.error_message,
    )
    return info, answer
