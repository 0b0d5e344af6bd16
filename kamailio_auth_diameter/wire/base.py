"""RFC 6733 base protocol, both roles, pure: strict decoding, answers, peer messages, ids.

python-diameter (0.9.0) does the value encoding and decoding, but it trusts the
lengths it reads: a short AVP length silently desynchronises it and a frame whose
header lies about its length decodes anyway. So :func:`decode` first walks the
AVP tree itself and refuses anything that is not exactly one well-formed message;
the caller then closes the connection (RFC 6733 §5.1: unparseable input means the
stream is compromised). Problems that deserve an answer instead (a missing,
unknown-mandatory or invalid AVP) raise :class:`RequestError`, which carries the
result code and the Failed-AVP.

Messages are built as plain ``Message(header, [Avp.new(...)])``: python-diameter's
typed commands cost ~6x more to encode, and nothing is registered in its global
dictionary, so the legacy dialect's private AVPs 400-406 cannot clash here.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from diameter.message import Message, MessageHeader
from diameter.message.avp import Avp
from diameter.message.avp.errors import AvpDecodeError
from diameter.message.packer import ConversionError, Unpacker

from .framing import HEADER_LEN, MAX_MESSAGE

FLAG_REQUEST = 0x80
FLAG_PROXIABLE = 0x40
FLAG_ERROR = 0x20
FLAG_RETRANSMIT = 0x10
AVP_FLAG_VENDOR = 0x80
AVP_FLAG_MANDATORY = 0x40

APP_COMMON = 0
APP_RELAY = 0xFFFFFFFF

CMD_CAPABILITIES_EXCHANGE = 257
CMD_DEVICE_WATCHDOG = 280
CMD_DISCONNECT_PEER = 282

AVP_USER_NAME = 1
AVP_HOST_IP_ADDRESS = 257
AVP_AUTH_APPLICATION_ID = 258
AVP_ACCT_APPLICATION_ID = 259
AVP_VENDOR_SPECIFIC_APPLICATION_ID = 260
AVP_SESSION_ID = 263
AVP_ORIGIN_HOST = 264
AVP_SUPPORTED_VENDOR_ID = 265
AVP_VENDOR_ID = 266
AVP_FIRMWARE_REVISION = 267
AVP_RESULT_CODE = 268
AVP_PRODUCT_NAME = 269
AVP_DISCONNECT_CAUSE = 273
AVP_AUTH_SESSION_STATE = 277
AVP_ORIGIN_STATE_ID = 278
AVP_FAILED_AVP = 279
AVP_ERROR_MESSAGE = 281
AVP_DESTINATION_REALM = 283
AVP_PROXY_INFO = 284
AVP_DESTINATION_HOST = 293
AVP_ORIGIN_REALM = 296
AVP_EXPERIMENTAL_RESULT = 297
AVP_EXPERIMENTAL_RESULT_CODE = 298
AVP_INBAND_SECURITY_ID = 299

# An AVP's name on the wire: its code for an IETF AVP (vendor 0), (code, Vendor-Id) for a
# vendor's (V flag). Sets of recognised or Grouped AVPs mix both, so that one set serves
# RFC 4740 (all vendor 0) and 3GPP Cx (vendor 10415 around vendor-0 Digest-* AVPs).
AvpKey = int | tuple[int, int]

# The base AVPs of RFC 6733 §4.5 and §9.8 (with State 24 from RFC 7155): a request
# with an M-bit AVP outside what the receiver recognises gets 5001.
RECOGNISED: frozenset[int] = frozenset(
    {1, 24, 25, 27, 33, 44, 50, 55, 85, 287, 480, 483, 485}
    | set(range(257, 275))
    | {276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 291, 292, 293, 294, 295, 296, 297, 298, 299}
)
# Grouped base AVPs: Vendor-Specific-Application-Id, Failed-AVP, Proxy-Info, Experimental-Result.
GROUPED: frozenset[int] = frozenset({260, 279, 284, 297})

RESULT_MULTI_ROUND_AUTH = 1001
RESULT_SUCCESS = 2001
RESULT_COMMAND_UNSUPPORTED = 3001
RESULT_APPLICATION_UNSUPPORTED = 3007
RESULT_INVALID_HDR_BITS = 3008
RESULT_UNKNOWN_PEER = 3010
RESULT_AUTHENTICATION_REJECTED = 4001
RESULT_AVP_UNSUPPORTED = 5001
RESULT_INVALID_AVP_VALUE = 5004
RESULT_MISSING_AVP = 5005
RESULT_AVP_OCCURS_TOO_MANY_TIMES = 5009
RESULT_NO_COMMON_APPLICATION = 5010
RESULT_UNABLE_TO_COMPLY = 5012
RESULT_NO_COMMON_SECURITY = 5017

AUTH_SESSION_NO_STATE_MAINTAINED = 1
DISCONNECT_REBOOTING = 0

# struct.error: python-diameter unpacks an Address AVP of 1 byte with struct and lets it fly
_DECODE_ERRORS = (ConversionError, AvpDecodeError, EOFError, ValueError, IndexError, struct.error)
# Grouped AVPs inside Grouped AVPs: the messages we read nest three deep (MAA:
# SIP-Auth-Data-Item, SIP-Authenticate, Digest-*), Failed-AVP and relays add a few.
# A 64 KiB frame could nest 8,000 deep; every walker stops at this depth with
# DecodeError instead of running out of Python's recursion limit.
MAX_DEPTH = 16


class DecodeError(ValueError):
    """The bytes are not one well-formed Diameter message: close the connection."""


class Unanswerable(DecodeError):
    """A request whose answer would be longer than a frame may be (it is near 64 KiB and
    its Proxy-Info, echoed back, does not fit again): close the connection, as for
    bytes that are not a message; no peer would accept the answer."""


class RequestError(Exception):
    """A well-formed request that gets an error answer (RFC 6733 §7.1) instead of its normal one."""

    def __init__(self, result_code: int, message: str, failed_avp: Avp | None = None) -> None:
        super().__init__(message)
        self.result_code = result_code
        self.failed_avp = failed_avp


@dataclass(frozen=True, slots=True)
class Identity:
    """Who we are on the wire: Origin-Host and Origin-Realm of everything we send."""

    origin_host: str
    origin_realm: str


# --- decoding ------------------------------------------------------------------------


def _walk(raw: bytes, pos: int, end: int, grouped: Collection[AvpKey], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError(f"Grouped AVPs nested more than {MAX_DEPTH} deep")
    while pos < end:
        if end - pos < 8:
            raise DecodeError(f"{end - pos} stray bytes where an AVP header should be")
        code = int.from_bytes(raw[pos : pos + 4], "big")
        flags = raw[pos + 4]
        length = int.from_bytes(raw[pos + 5 : pos + 8], "big")
        head = 12 if flags & AVP_FLAG_VENDOR else 8
        if length < head or pos + ((length + 3) & ~3) > end:
            raise DecodeError(f"AVP {code} has length {length}, which does not fit")
        key = (code, int.from_bytes(raw[pos + 8 : pos + 12], "big")) if head == 12 else code
        if key in grouped:
            _walk(raw, pos + head, pos + length, grouped, depth + 1)
        pos += (length + 3) & ~3


def _check_header(raw: bytes) -> None:
    """DecodeError unless ``raw`` is one whole message as far as its header can tell."""
    if len(raw) < HEADER_LEN or len(raw) > MAX_MESSAGE:
        raise DecodeError(f"{len(raw)} bytes cannot be one message")
    if raw[0] != 1:
        raise DecodeError(f"unsupported Diameter version {raw[0]}")
    length = int.from_bytes(raw[1:4], "big")
    if length != len(raw) or length % 4:
        raise DecodeError(f"header says {length} bytes, got {len(raw)}")


def decode(raw: bytes, grouped: Collection[AvpKey] = GROUPED) -> Message:
    """One message, checked byte by byte first; DecodeError if it is not exactly that.

    ``grouped`` names the Grouped AVPs whose contents are checked too (the ones the
    caller will read, see :data:`AvpKey`); other AVPs are opaque here.
    """
    _check_header(raw)
    _walk(raw, HEADER_LEN, len(raw), grouped)
    try:
        return _plain_message(raw)
    except _DECODE_ERRORS as exc:
        raise DecodeError(f"undecodable message: {exc}") from None


def _plain_message(raw: bytes) -> Message:
    """What ``Message.from_bytes(raw, plain_msg=True)`` should give: the header and the
    top-level AVPs, Grouped values decoded only when read. python-diameter instead
    makes an ``UndefinedMessage`` of any command it does not know (MAR, SAR, a
    peer's own), whose constructor decodes every Grouped AVP down to the bottom,
    including codes :func:`_walk` left opaque: a deep one is a RecursionError."""
    header = MessageHeader.from_bytes(raw)
    unpacker = Unpacker(raw)
    unpacker.set_position(header.length_header)
    avps = []
    while not unpacker.is_done():
        avps.append(Avp.from_unpacker(unpacker))
    return Message(header, avps)


def children(avp: Avp) -> list[Avp]:
    """A Grouped AVP's members; RequestError 5004 if they do not decode."""
    try:
        return list(avp.value)
    except _DECODE_ERRORS:
        raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {avp.code} is not a valid group", avp) from None


def unknown_mandatory(
    avps: Iterable[Avp], recognised: Collection[AvpKey], grouped: Collection[AvpKey], depth: int = 0
) -> Avp | None:
    """The first M-bit AVP we do not recognise, searching recognised groups too (for 5001)."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"Grouped AVPs nested more than {MAX_DEPTH} deep")
    for avp in avps:
        key = (avp.code, avp.vendor_id) if avp.vendor_id else avp.code
        if key not in recognised:
            if avp.flags & AVP_FLAG_MANDATORY:
                return avp
            continue
        if key in grouped:
            inner = unknown_mandatory(children(avp), recognised, grouped, depth + 1)
            if inner is not None:
                return avp_group(avp.code, [inner], avp.vendor_id, avp.flags)
    return None


def find(avps: Iterable[Avp], code: int) -> Avp | None:
    """The first vendor-0 AVP with this code."""
    for avp in avps:
        if avp.code == code and not avp.vendor_id:
            return avp
    return None


def find_all(avps: Iterable[Avp], code: int) -> list[Avp]:
    return [avp for avp in avps if avp.code == code and not avp.vendor_id]


def _value(avp: Avp) -> object:
    try:
        return avp.value
    except _DECODE_ERRORS:
        raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {avp.code} has an invalid value", avp) from None


def text_of(avp: Avp) -> str:
    """A UTF8String or DiameterIdentity (python-diameter gives bytes for the latter) as str."""
    value = _value(avp)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {avp.code} is not UTF-8", avp) from None
    if not isinstance(value, str):
        raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {avp.code} is not a string", avp)
    return value


def text(avps: Iterable[Avp], code: int) -> str | None:
    avp = find(avps, code)
    return None if avp is None else text_of(avp)


def unsigned_of(avp: Avp) -> int:
    if len(avp.payload) != 4:
        raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {avp.code} is not 32 bits", avp)
    return int.from_bytes(avp.payload, "big")


def unsigned(avps: Iterable[Avp], code: int) -> int | None:
    avp = find(avps, code)
    return None if avp is None else unsigned_of(avp)


def missing(code: int, vendor: int = 0) -> RequestError:
    """5005 with the zero-filled example of the missing AVP that RFC 6733 §7.5 asks for."""
    flags = AVP_FLAG_MANDATORY | (AVP_FLAG_VENDOR if vendor else 0)
    return RequestError(
        RESULT_MISSING_AVP, f"AVP {_name(code, vendor)} is missing", Avp(code, vendor, b"\0" * 4, flags)
    )


def _name(code: int, vendor: int) -> str:
    """How messages name an AVP: its code, and its vendor when it has one."""
    return f"{code}/{vendor}" if vendor else str(code)


def required_text(avps: Sequence[Avp], code: int) -> str:
    value = text(avps, code)
    if value is None:
        raise missing(code)
    return value


def required_unsigned(avps: Sequence[Avp], code: int) -> int:
    value = unsigned(avps, code)
    if value is None:
        raise missing(code)
    return value


@dataclass(slots=True)  # not frozen: built per exchange, and frozen triples the cost (bench/README.md)
class AnswerInfo:
    """The base part of a received answer: which request it answers and who sent it."""

    hop_by_hop: int
    end_to_end: int
    session_id: str | None
    origin_host: str
    origin_realm: str
    error: bool  # the E bit: a protocol error (3xxx) answered by some hop
    error_message: str | None


# --- encoding ------------------------------------------------------------------------


def avp(code: int, value: object, mandatory: bool = True) -> Avp:
    """A vendor-0 AVP typed by python-diameter's dictionary."""
    return Avp.new(code, value=value, is_mandatory=mandatory)


def avp_group(code: int, members: list[Avp], vendor: int = 0, flags: int = AVP_FLAG_MANDATORY) -> Avp:
    """A Grouped AVP. A vendor's is built from its members' bytes with the flags given
    (a Failed-AVP copies the request's), as python-diameter's dictionary may not know it."""
    if not vendor:
        return Avp.new(code, value=members, is_mandatory=True)
    return Avp(code, vendor, b"".join(m.as_bytes() for m in members), flags | AVP_FLAG_VENDOR)


def identity_avps(identity: Identity) -> list[Avp]:
    return [avp(AVP_ORIGIN_HOST, identity.origin_host.encode()), avp(AVP_ORIGIN_REALM, identity.origin_realm.encode())]


def encode(header: MessageHeader, avps: list[Avp]) -> bytes:
    """The message's bytes; the header length is filled in here."""
    return Message(header, avps).as_bytes()


def request_header(
    command: int, application: int, hop_by_hop: int, end_to_end: int, *, proxiable: bool, retransmit: bool = False
) -> MessageHeader:
    flags = FLAG_REQUEST | (FLAG_PROXIABLE if proxiable else 0) | (FLAG_RETRANSMIT if retransmit else 0)
    return MessageHeader(
        command_flags=flags,
        command_code=command,
        application_id=application,
        hop_by_hop_identifier=hop_by_hop,
        end_to_end_identifier=end_to_end,
    )


def encode_answer(
    request: Message,
    identity: Identity,
    result_code: int,
    body: Sequence[Avp] = (),
    *,
    error_message: str | None = None,
    failed_avp: Avp | None = None,
) -> bytes:
    """An answer to ``request``: same command, application, ids and P bit; E set for
    3xxx (RFC 6733 §7.1.3: only protocol errors set it); Session-Id first when the
    request had one; the request's Proxy-Info AVPs copied back in order (§6.2).

    A Failed-AVP that would take the answer past MAX_MESSAGE (it copies part of the
    request) is left out; Unanswerable if the answer is still too long.
    """
    h = request.header
    error = 3000 <= result_code < 4000
    header = MessageHeader(
        command_flags=(h.command_flags & FLAG_PROXIABLE) | (FLAG_ERROR if error else 0),
        command_code=h.command_code,
        application_id=h.application_id,
        hop_by_hop_identifier=h.hop_by_hop_identifier,
        end_to_end_identifier=h.end_to_end_identifier,
    )
    avps: list[Avp] = []
    session = find(request.avps, AVP_SESSION_ID)
    if session is not None:
        avps.append(Avp(AVP_SESSION_ID, 0, session.payload, session.flags))
    avps.append(avp(AVP_RESULT_CODE, result_code))
    avps += identity_avps(identity)
    avps += body
    if error_message:
        avps.append(avp(AVP_ERROR_MESSAGE, error_message, mandatory=False))
    if failed_avp is not None:
        avps.append(avp_group(AVP_FAILED_AVP, [failed_avp]))
    avps += find_all(request.avps, AVP_PROXY_INFO)
    data = encode(header, avps)
    if len(data) <= MAX_MESSAGE:
        return data
    if failed_avp is not None:
        return encode_answer(request, identity, result_code, body, error_message=error_message)
    raise Unanswerable(f"the answer to command {h.command_code} would be {len(data)} bytes")


def encode_error(request: Message, identity: Identity, error: RequestError, body: Sequence[Avp] = ()) -> bytes:
    return encode_answer(
        request, identity, error.result_code, body, error_message=str(error), failed_avp=error.failed_avp
    )


# --- the lean codec: the client's hot path without python-diameter --------------------
#
# python-diameter makes an object per AVP and converts every value through its
# dictionary: encoding a MAR with credentials costs ~50 us and decoding an MAA with a
# challenge ~45 us, three times all the rest of a Kamailio worker's work per request.
# The plugin's requests and the answers it reads have a fixed shape of AVPs whose
# types we know, so they are packed and read here directly: IETF AVPs (8-byte header)
# and vendor AVPs (V flag, 12-byte header with the Vendor-Id) alike. Tests check these
# bytes against python-diameter's encoding of the same message, AVP for AVP.

_AVP_HEAD = struct.Struct("!II")  # code, flags << 24 | length
_VENDOR_AVP_HEAD = struct.Struct("!III")  # code, flags << 24 | length, vendor
_U32 = struct.Struct("!I")
_MESSAGE_HEAD = struct.Struct("!IIIII")  # version << 24 | length, flags << 24 | command, app, ids
_PADDING = (b"", b"\0", b"\0\0", b"\0\0\0")


def pack_avp(code: int, data: bytes, flags: int = AVP_FLAG_MANDATORY, vendor: int = 0) -> bytes:
    """An AVP: header, data, zero padding to 4 bytes. With a ``vendor`` the V flag is set
    and the header carries the Vendor-Id (RFC 6733 §4.1)."""
    if vendor:
        length = 12 + len(data)
        head = _VENDOR_AVP_HEAD.pack(code, (flags | AVP_FLAG_VENDOR) << 24 | length, vendor)
        return head + data + _PADDING[-length & 3]
    length = 8 + len(data)
    return _AVP_HEAD.pack(code, flags << 24 | length) + data + _PADDING[-length & 3]


def pack_u32(code: int, value: int, flags: int = AVP_FLAG_MANDATORY, vendor: int = 0) -> bytes:
    return pack_avp(code, _U32.pack(value), flags, vendor)


def pack_text(code: int, value: str, flags: int = AVP_FLAG_MANDATORY, vendor: int = 0) -> bytes:
    """UTF8String and DiameterIdentity alike."""
    return pack_avp(code, value.encode("utf-8"), flags, vendor)


def pack_texts(pairs: Iterable[tuple[int, str | None]]) -> bytes:
    """Mandatory vendor-0 text AVPs in order, those whose value is None left out: one
    call for a whole group, which a request's hot path is made of."""
    out = []
    head, padding = _AVP_HEAD.pack, _PADDING
    for code, value in pairs:
        if value is not None:
            data = value.encode("utf-8")
            length = 8 + len(data)
            out.append(head(code, AVP_FLAG_MANDATORY << 24 | length) + data + padding[-length & 3])
    return b"".join(out)


def pack_message(flags: int, command: int, application: int, hop_by_hop: int, end_to_end: int, body: bytes) -> bytes:
    length = HEADER_LEN + len(body)
    return _MESSAGE_HEAD.pack(1 << 24 | length, flags << 24 | command, application, hop_by_hop, end_to_end) + body


class LeanAvps:
    """One level of AVPs as (code, flags, vendor, data), read from bytes already checked
    by :func:`decode_lean`, with the first of each code at hand. Every accessor takes a
    ``vendor`` (0, the default, for IETF AVPs): an AVP is found only under its own
    (code, vendor), so 3GPP's 612 is never taken for RFC 4740's 612. The accessors
    raise RequestError like the ones above."""

    __slots__ = ("_first", "items")

    def __init__(self, items: list[tuple[int, int, int, bytes]], first: dict[AvpKey, bytes]) -> None:
        self.items = items
        self._first = first

    @classmethod
    def parse(cls, raw: bytes, pos: int, end: int) -> LeanAvps:
        """One level, each AVP's length checked against what is left (DecodeError);
        the members of Grouped AVPs are read when :meth:`groups` asks for them."""
        items: list[tuple[int, int, int, bytes]] = []
        first: dict[AvpKey, bytes] = {}
        unpack, append, vendor_flag = _AVP_HEAD.unpack_from, items.append, AVP_FLAG_VENDOR  # locals: a hot loop
        while pos < end:
            if end - pos < 8:
                raise DecodeError(f"{end - pos} stray bytes where an AVP header should be")
            code, flags_length = unpack(raw, pos)
            flags, length = flags_length >> 24, flags_length & 0xFFFFFF
            following = pos + ((length + 3) & ~3)
            if flags & vendor_flag:
                if length < 12 or following > end:
                    raise DecodeError(f"AVP {code} has length {length}, which does not fit")
                vendor = _U32.unpack_from(raw, pos + 8)[0]
                data = raw[pos + 12 : pos + length]
                append((code, flags, vendor, data))
                first.setdefault((code, vendor) if vendor else code, data)
            else:
                if length < 8 or following > end:
                    raise DecodeError(f"AVP {code} has length {length}, which does not fit")
                data = raw[pos + 8 : pos + length]
                append((code, flags, 0, data))
                if code not in first:
                    first[code] = data
            pos = following
        return cls(items, first)

    def all(self, code: int, vendor: int = 0) -> list[bytes]:
        return [data for c, _, v, data in self.items if c == code and v == vendor]

    def first(self, code: int, vendor: int = 0) -> bytes | None:
        return self._first.get((code, vendor) if vendor else code)

    def text(self, code: int, vendor: int = 0) -> str | None:
        data = self._first.get((code, vendor) if vendor else code)  # first(), inlined: ~20 calls an answer
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {_name(code, vendor)} is not UTF-8") from None

    def required_text(self, code: int, vendor: int = 0) -> str:
        value = self.text(code, vendor)
        if value is None:
            raise missing(code, vendor)
        return value

    def unsigned(self, code: int, vendor: int = 0) -> int | None:
        data = self.first(code, vendor)
        if data is None:
            return None
        if len(data) != 4:
            raise RequestError(RESULT_INVALID_AVP_VALUE, f"AVP {_name(code, vendor)} is not 32 bits")
        return _U32.unpack(data)[0]

    def required_unsigned(self, code: int, vendor: int = 0) -> int:
        value = self.unsigned(code, vendor)
        if value is None:
            raise missing(code, vendor)
        return value

    def groups(self, code: int, vendor: int = 0) -> list[LeanAvps]:
        """Members of each Grouped AVP with this code and vendor; DecodeError if they are
        not well-formed AVPs."""
        return [LeanAvps.parse(data, 0, len(data)) for data in self.all(code, vendor)]


@dataclass(slots=True)
class LeanMessage:
    flags: int
    command: int
    application: int
    hop_by_hop: int
    end_to_end: int
    avps: LeanAvps


def decode_lean(raw: bytes) -> LeanMessage:
    """Like :func:`decode`, without python-diameter objects: the header and the top
    level are checked here, the members of a group when they are read."""
    _check_header(raw)
    _, flags_command, application, hop, e2e = _MESSAGE_HEAD.unpack_from(raw)
    avps = LeanAvps.parse(raw, HEADER_LEN, len(raw))
    return LeanMessage(flags_command >> 24, flags_command & 0xFFFFFF, application, hop, e2e, avps)


def lean_unknown_mandatory(
    avps: LeanAvps, recognised: Collection[AvpKey], grouped: Collection[AvpKey], depth: int = 0
) -> Avp | None:
    """:func:`unknown_mandatory` for lean AVPs; the Failed-AVP comes back as an Avp.
    DecodeError if a recognised group does not hold well-formed AVPs or nests past MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"Grouped AVPs nested more than {MAX_DEPTH} deep")
    for code, flags, vendor, data in avps.items:
        key = (code, vendor) if vendor else code
        if key not in recognised:
            if flags & AVP_FLAG_MANDATORY:
                return Avp(code, vendor, data, flags)
            continue
        if key in grouped:
            inner = lean_unknown_mandatory(LeanAvps.parse(data, 0, len(data)), recognised, grouped, depth + 1)
            if inner is not None:
                return avp_group(code, [inner], vendor, flags)
    return None


def pack_experimental_result(vendor: int, code: int) -> bytes:
    """Experimental-Result{Vendor-Id, Experimental-Result-Code}: a vendor's result code
    (RFC 6733 §7.6), which an answer carries instead of Result-Code."""
    return pack_avp(
        AVP_EXPERIMENTAL_RESULT, pack_u32(AVP_VENDOR_ID, vendor) + pack_u32(AVP_EXPERIMENTAL_RESULT_CODE, code)
    )


def experimental_result(avps: LeanAvps, vendor: int) -> int | None:
    """The Experimental-Result-Code of the first Experimental-Result from ``vendor``;
    RequestError if that group lacks its code or holds a malformed one."""
    for group in avps.groups(AVP_EXPERIMENTAL_RESULT):
        if group.unsigned(AVP_VENDOR_ID) == vendor:
            return group.required_unsigned(AVP_EXPERIMENTAL_RESULT_CODE)
    return None


def lean_answer(
    request: LeanMessage,
    identity: Identity,
    result_code: int | None,
    body: bytes,
    error_message: str | None = None,
    *,
    experimental: tuple[int, int] | None = None,
) -> bytes:
    """:func:`encode_answer` for a lean request, without Failed-AVP (error answers, which
    need one, are rare and go through python-diameter). ``experimental`` is a vendor's
    (Vendor-Id, result code), sent as Experimental-Result where Result-Code would be;
    the E bit follows ``result_code``, the only one that can be a protocol error."""
    error = result_code is not None and 3000 <= result_code < 4000
    flags = (request.flags & FLAG_PROXIABLE) | (FLAG_ERROR if error else 0)
    out = []
    for code, avp_flags, vendor, data in request.avps.items:
        if code == AVP_SESSION_ID and not vendor:
            out.append(pack_avp(AVP_SESSION_ID, data, avp_flags))
            break
    if result_code is not None:
        out.append(pack_u32(AVP_RESULT_CODE, result_code))
    if experimental is not None:
        out.append(pack_experimental_result(*experimental))
    out.append(pack_text(AVP_ORIGIN_HOST, identity.origin_host))
    out.append(pack_text(AVP_ORIGIN_REALM, identity.origin_realm))
    out.append(body)
    if error_message:
        out.append(pack_text(AVP_ERROR_MESSAGE, error_message, 0))
    out += [
        pack_avp(code, data, f) for code, f, vendor, data in request.avps.items if code == AVP_PROXY_INFO and not vendor
    ]
    data = pack_message(
        flags, request.command, request.application, request.hop_by_hop, request.end_to_end, b"".join(out)
    )
    if len(data) > MAX_MESSAGE:
        raise Unanswerable(f"the answer to command {request.command} would be {len(data)} bytes")
    return data


def answer_info(msg: LeanMessage) -> AnswerInfo:
    """The base part of an answer; RequestError (which a client treats as a bad answer)
    if Origin-Host/Realm are missing."""
    if msg.flags & FLAG_REQUEST:
        raise DecodeError("expected an answer, got a request")
    a = msg.avps
    return AnswerInfo(
        hop_by_hop=msg.hop_by_hop,
        end_to_end=msg.end_to_end,
        session_id=a.text(AVP_SESSION_ID),
        origin_host=a.required_text(AVP_ORIGIN_HOST),
        origin_realm=a.required_text(AVP_ORIGIN_REALM),
        error=bool(msg.flags & FLAG_ERROR),
        error_message=a.text(AVP_ERROR_MESSAGE),
    )


# --- peer messages (CER/CEA, DWR/DWA, DPR/DPA) -----------------------------------------


@dataclass(frozen=True, slots=True)
class VendorApplication:
    """Vendor-Specific-Application-Id{Vendor-Id, Auth-Application-Id} (RFC 6733 §6.11): how a
    vendor's application, such as 3GPP Cx, is named in a CER and in its requests."""

    vendor_id: int
    auth_application_id: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a CER or CEA says about its sender (RFC 6733 §5.3)."""

    identity: Identity
    host_ip_addresses: tuple[str, ...]
    auth_application_ids: tuple[int, ...] = ()
    vendor_id: int = 0
    product_name: str = "kamailio_auth_diameter"
    origin_state_id: int | None = None
    # Every application id named anywhere (Auth-, Acct-, Vendor-Specific-); only decoded.
    applications: frozenset[int] = frozenset()
    inband_security_ids: tuple[int, ...] = ()
    # Vendors whose AVPs the sender understands (Supported-Vendor-Id), and its vendors'
    # applications; a CER that names none carries neither AVP, byte for byte as before.
    supported_vendor_ids: tuple[int, ...] = ()
    vendor_applications: tuple[VendorApplication, ...] = ()


def vendor_application_avp(app: VendorApplication) -> bytes:
    """The Vendor-Specific-Application-Id of a vendor's application, as its requests carry it."""
    members = pack_u32(AVP_VENDOR_ID, app.vendor_id) + pack_u32(AVP_AUTH_APPLICATION_ID, app.auth_application_id)
    return pack_avp(AVP_VENDOR_SPECIFIC_APPLICATION_ID, members)


def _capability_avps(caps: Capabilities) -> list[Avp]:
    """In the order of RFC 6733 §5.3.1's CER."""
    avps = identity_avps(caps.identity)
    avps += [avp(AVP_HOST_IP_ADDRESS, a) for a in caps.host_ip_addresses]
    avps.append(avp(AVP_VENDOR_ID, caps.vendor_id))
    avps.append(avp(AVP_PRODUCT_NAME, caps.product_name, mandatory=False))  # §5.3.7: M MUST NOT
    if caps.origin_state_id is not None:
        avps.append(avp(AVP_ORIGIN_STATE_ID, caps.origin_state_id))
    avps += [avp(AVP_SUPPORTED_VENDOR_ID, vendor) for vendor in caps.supported_vendor_ids]
    avps += [avp(AVP_AUTH_APPLICATION_ID, app) for app in caps.auth_application_ids]
    avps += [
        avp_group(
            AVP_VENDOR_SPECIFIC_APPLICATION_ID,
            [avp(AVP_VENDOR_ID, a.vendor_id), avp(AVP_AUTH_APPLICATION_ID, a.auth_application_id)],
        )
        for a in caps.vendor_applications
    ]
    return avps


def encode_cer(caps: Capabilities, hop_by_hop: int, end_to_end: int) -> bytes:
    header = request_header(CMD_CAPABILITIES_EXCHANGE, APP_COMMON, hop_by_hop, end_to_end, proxiable=False)
    return encode(header, _capability_avps(caps))


def encode_cea(
    request: Message,
    caps: Capabilities,
    result_code: int,
    error_message: str | None = None,
    failed_avp: Avp | None = None,
) -> bytes:
    body = _capability_avps(caps)[2:]  # encode_answer adds Origin-Host/Realm itself
    return encode_answer(request, caps.identity, result_code, body, error_message=error_message, failed_avp=failed_avp)


def decode_capabilities(msg: Message) -> Capabilities:
    """A CER's or CEA's content; RequestError 5005 without Origin-Host/Origin-Realm."""
    avps = msg.avps
    auth = tuple(unsigned_of(a) for a in find_all(avps, AVP_AUTH_APPLICATION_ID))
    apps = set(auth) | {unsigned_of(a) for a in find_all(avps, AVP_ACCT_APPLICATION_ID)}
    vendor_apps = []
    for vsa in find_all(avps, AVP_VENDOR_SPECIFIC_APPLICATION_ID):
        members = children(vsa)
        apps |= {unsigned_of(a) for a in find_all(members, AVP_AUTH_APPLICATION_ID)}
        apps |= {unsigned_of(a) for a in find_all(members, AVP_ACCT_APPLICATION_ID)}
        vendor = unsigned(members, AVP_VENDOR_ID)
        auth_app = unsigned(members, AVP_AUTH_APPLICATION_ID)
        if vendor is not None and auth_app is not None:
            vendor_apps.append(VendorApplication(vendor, auth_app))
    addresses = []
    for a in find_all(avps, AVP_HOST_IP_ADDRESS):
        value = _value(a)
        addresses.append(str(value[1]) if isinstance(value, tuple) else str(value))
    state = unsigned(avps, AVP_ORIGIN_STATE_ID)
    return Capabilities(
        identity=Identity(required_text(avps, AVP_ORIGIN_HOST), required_text(avps, AVP_ORIGIN_REALM)),
        host_ip_addresses=tuple(addresses),
        auth_application_ids=auth,
        vendor_id=unsigned(avps, AVP_VENDOR_ID) or 0,
        product_name=text(avps, AVP_PRODUCT_NAME) or "",
        origin_state_id=state,
        applications=frozenset(apps),
        inband_security_ids=tuple(unsigned_of(a) for a in find_all(avps, AVP_INBAND_SECURITY_ID)),
        supported_vendor_ids=tuple(unsigned_of(a) for a in find_all(avps, AVP_SUPPORTED_VENDOR_ID)),
        vendor_applications=tuple(vendor_apps),
    )


def encode_dwr(identity: Identity, origin_state_id: int, hop_by_hop: int, end_to_end: int) -> bytes:
    header = request_header(CMD_DEVICE_WATCHDOG, APP_COMMON, hop_by_hop, end_to_end, proxiable=False)
    return encode(header, [*identity_avps(identity), avp(AVP_ORIGIN_STATE_ID, origin_state_id)])


def encode_dwa(request: Message, identity: Identity, origin_state_id: int) -> bytes:
    return encode_answer(request, identity, RESULT_SUCCESS, [avp(AVP_ORIGIN_STATE_ID, origin_state_id)])


def encode_dpr(identity: Identity, cause: int, hop_by_hop: int, end_to_end: int) -> bytes:
    header = request_header(CMD_DISCONNECT_PEER, APP_COMMON, hop_by_hop, end_to_end, proxiable=False)
    return encode(header, [*identity_avps(identity), avp(AVP_DISCONNECT_CAUSE, cause)])


def encode_dpa(request: Message, identity: Identity) -> bytes:
    return encode_answer(request, identity, RESULT_SUCCESS)


# --- identifiers ---------------------------------------------------------------------


class HopByHop:
    """Hop-by-hop ids for one connection: a counter from a random start (RFC 6733 §3)."""

    __slots__ = ("_next",)

    def __init__(self, urandom: Callable[[int], bytes] = os.urandom) -> None:
        self._next = int.from_bytes(urandom(4), "big")

    def __call__(self) -> int:
        value = self._next
        self._next = (value + 1) & 0xFFFFFFFF
        return value


class EndToEnd:
    """End-to-end ids unique for 4 minutes across restarts (RFC 6733 §3): the high
    12 bits are the low 12 bits of the clock, the low 20 bits a counter from a random
    start; when the counter wraps the clock is read again."""

    __slots__ = ("_clock", "_high", "_low", "_start")

    def __init__(self, clock: Callable[[], float] = time.time, urandom: Callable[[int], bytes] = os.urandom) -> None:
        self._clock = clock
        self._start = self._low = int.from_bytes(urandom(3), "big") & 0xFFFFF
        self._high = (int(clock()) & 0xFFF) << 20

    def __call__(self) -> int:
        value = self._high | self._low
        self._low = (self._low + 1) & 0xFFFFF
        if self._low == self._start:
            self._high = (int(self._clock()) & 0xFFF) << 20
        return value


class SessionIds:
    """``<Origin-Host>;<high32>;<low32>[;<optional>]`` (RFC 6733 §8.8): a 64-bit counter
    whose high half starts at the clock, so ids stay unique across restarts. Processes
    sharing one Origin-Host must pass distinct ``optional`` parts (e.g. their pid)."""

    __slots__ = ("_counter", "_prefix", "_suffix")

    def __init__(self, origin_host: str, optional: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self._prefix = f"{origin_host};"
        self._suffix = f";{optional}" if optional else ""
        self._counter = (int(clock()) & 0xFFFFFFFF) << 32

    def __call__(self) -> str:
        value = self._counter
        self._counter = (value + 1) & 0xFFFFFFFFFFFFFFFF
        return f"{self._prefix}{value >> 32};{value & 0xFFFFFFFF}{self._suffix}"
