"""The DISC dialect spoken by Kamailio's C auth_diameter module, byte for byte, pure.

See docs/legacy-auth-diameter-protocol.md (shared notes) §4-§5 and §10. This codec is
written by hand on purpose: its private AVPs 400-406 collide with NASREQ codes in
python-diameter's dictionary (401 decodes as the Grouped "Tunneling" and fails), and
compatibility needs the C module's NUL quirks, which no general codec reproduces.

Both sides live here: the plugin encodes requests and decodes answers, the reference
server decodes requests and encodes answers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from ..sip.credentials import Credentials
from ..sip.uri import SipUri
from .framing import HEADER_LEN

CMD_AA = 265
APP_NASREQ = 1
FLAG_REQUEST = 0x80
FLAG_MANDATORY = 0x40
FLAG_VENDOR = 0x80

AVP_USER_NAME = 1
AVP_SESSION_ID = 263
AVP_ORIGIN_HOST = 264
AVP_RESULT_CODE = 268
AVP_DESTINATION_REALM = 283
AVP_ORIGIN_REALM = 296
AVP_RESOURCE = 400
AVP_RESPONSE = 401
AVP_CHALLENGE = 402
AVP_METHOD = 403
AVP_SERVICE_TYPE = 404
AVP_USER_GROUP = 405
AVP_SIP_MSGID = 406

SERVICE_AUTH = b"6"
SERVICE_GROUP = b"8"

RESULT_SUCCESS = 2001
RESULT_AUTHENTICATION_REJECTED = 4001
RESULT_AUTHORIZATION_REJECTED = 5003
RESULT_UNABLE_TO_COMPLY = 5012

_HEADER = struct.Struct(">B3sB3sIII")
_AVP_WORDS = struct.Struct(">II")  # code, then flags and length


class LegacyError(ValueError):
    """A request cannot be built or a message cannot be decoded."""


# --- encoding ---------------------------------------------------------------------


_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # by data length mod 4


def _avp(code: int, data: bytes, flags: int = FLAG_MANDATORY) -> bytes:
    n = len(data)
    if not n:
        raise LegacyError(f"AVP {code} would be empty, which the dialect cannot carry")
    return ((code << 32) | (flags << 24) | (n + 8)).to_bytes(8, "big") + data + _PADDING[n & 3]


def _msgid_avp(msgid: int) -> bytes:
    """SIP-MSGID: Kamailio's per-process message id in x86-64 host order (B5), flags 0."""
    return _MSGID_HEAD + (msgid & 0xFFFFFFFF).to_bytes(4, "little")


_MSGID_HEAD = ((AVP_SIP_MSGID << 32) | 12).to_bytes(8, "big")
_SERVICE_AUTH_AVP = _avp(AVP_SERVICE_TYPE, SERVICE_AUTH)
_SERVICE_GROUP_AVP = _avp(AVP_SERVICE_TYPE, SERVICE_GROUP)


def encode_message(avps: list[bytes], *, request: bool, hop_by_hop: int = 0, end_to_end: int = 0) -> bytes:
    body = b"".join(avps)
    head = _REQUEST_HEAD if request else _ANSWER_HEAD
    ids = b"\0" * 8 if not (hop_by_hop or end_to_end) else _IDS.pack(hop_by_hop, end_to_end)
    return b"\x01" + (HEADER_LEN + len(body)).to_bytes(3, "big") + head + ids + body


# the header after version and length: flags, command, application (§4.1)
_REQUEST_HEAD = bytes([FLAG_REQUEST]) + CMD_AA.to_bytes(3, "big") + APP_NASREQ.to_bytes(4, "big")
_ANSWER_HEAD = b"\0" + CMD_AA.to_bytes(3, "big") + APP_NASREQ.to_bytes(4, "big")
_IDS = struct.Struct(">II")


@lru_cache(maxsize=4096)  # the same URIs come back request after request
def c_string_buffer(user: str, host: str, port: str) -> bytes:
    """The C module's zero-filled ``user@host:port`` buffer of length user+host+port+2.

    Its quirks are the bytes the server has always seen: a trailing NUL when no port
    was written, ``host\\0port\\0`` without a user, ``host\\0\\0`` without either.
    """
    u, h, p = user.encode(), host.encode(), port.encode()
    text = (u + b"@" + h) if u else h
    if p:
        text += (b":" if u else b"\0") + p
    return text.ljust(len(u) + len(h) + len(p) + 2, b"\0")


def auth_user_name(identity: SipUri, cred: Credentials | None) -> bytes:
    """User-Name of an authorize request (§4.3), with bug B1 fixed as in Kamailio HEAD."""
    if cred is None:
        return c_string_buffer(identity.user, identity.host, "")
    username = cred.username
    if "@" in username and len(username) > 2:
        return username.encode()
    user = username.partition(":")[2] if ":" in username else username
    return f"{user}@{cred.realm}".encode() if user else cred.realm.encode()


def encode_auth_request(ruri: SipUri, identity: SipUri, msgid: int, cred: Credentials | None, method: str) -> bytes:
    """Service '6' request: 400, 283, 404, 406, 1, then 401 and 403 with credentials."""
    avps = [
        _avp(AVP_RESOURCE, c_string_buffer(ruri.user, ruri.host, ruri.port)),
        _avp(AVP_DESTINATION_REALM, identity.host.encode()),
        _SERVICE_AUTH_AVP,
        _msgid_avp(msgid),
        _avp(AVP_USER_NAME, auth_user_name(identity, cred)),
    ]
    if cred is not None:
        avps.append(_avp(AVP_RESPONSE, cred.raw.encode()))
        avps.append(_avp(AVP_METHOD, method.encode()))
    return encode_message(avps, request=True)


def group_user_name(user: str, domain: str, use_domain: bool) -> bytes:
    """User-Name of a group check (§7); without a user, use_domain sends ``domain\\0``."""
    if not use_domain:
        return user.encode()
    return f"{user}@{domain}".encode() if user else domain.encode() + b"\0"


def encode_group_request(destination_realm: str, msgid: int, group: str, user_name: bytes) -> bytes:
    """Service '8' request: 283, 404, 406, 405, 1."""
    return encode_message(
        [
            _avp(AVP_DESTINATION_REALM, destination_realm.encode()),
            _SERVICE_GROUP_AVP,
            _msgid_avp(msgid),
            _avp(AVP_USER_GROUP, group.encode()),
            _avp(AVP_USER_NAME, user_name),
        ],
        request=True,
    )


def encode_answer(
    *,
    service: bytes,
    msgid: bytes,
    result_code: int,
    session_id: bytes,
    origin_host: bytes,
    origin_realm: bytes,
    challenge: bytes | None = None,
    hop_by_hop: int = 0,
    end_to_end: int = 0,
) -> bytes:
    """An answer in the shape DISC's client gave the module (§9): 404, 406 first."""
    avps = [
        _avp(AVP_SERVICE_TYPE, service),
        _avp(AVP_SIP_MSGID, msgid, flags=0),
        _avp(AVP_SESSION_ID, session_id),
        _avp(AVP_RESULT_CODE, result_code.to_bytes(4, "big")),
        _avp(AVP_ORIGIN_HOST, origin_host),
        _avp(AVP_ORIGIN_REALM, origin_realm),
    ]
    if challenge is not None:
        avps.append(_avp(AVP_CHALLENGE, challenge))
    return encode_message(avps, request=False, hop_by_hop=hop_by_hop, end_to_end=end_to_end)


# --- decoding ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded legacy message: header fields and AVPs in wire order."""

    is_request: bool
    command: int
    hop_by_hop: int
    end_to_end: int
    avps: tuple[tuple[int, int, bytes], ...]  # (code, vendor, data)

    def first(self, code: int) -> bytes | None:
        for c, vendor, data in self.avps:
            if c == code and vendor == 0:
                return data
        return None

    def last(self, code: int) -> bytes | None:
        found = None
        for c, vendor, data in self.avps:
            if c == code and vendor == 0:
                found = data
        return found


def _check_header(raw: bytes) -> None:
    if len(raw) < HEADER_LEN:
        raise LegacyError(f"message of {len(raw)} bytes is shorter than a header")
    if raw[0] != 1:
        raise LegacyError(f"unsupported version {raw[0]}")
    length = int.from_bytes(raw[1:4], "big")
    if length != len(raw):
        raise LegacyError(f"header says {length} bytes, message has {len(raw)}")


def _avps(raw: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(code, vendor, data) of each AVP; every length is checked against the buffer."""
    length = len(raw)
    off = HEADER_LEN
    while off < length:
        if length - off < 8:
            raise LegacyError(f"truncated AVP header at offset {off}")
        code, flags_len = _AVP_WORDS.unpack_from(raw, off)
        alen = flags_len & 0xFFFFFF
        head = 12 if flags_len & (FLAG_VENDOR << 24) else 8
        if alen < head or off + alen > length:
            raise LegacyError(f"AVP {code} at offset {off} has invalid length {alen}")
        vendor = int.from_bytes(raw[off + 8 : off + 12], "big") if head == 12 else 0
        yield code, vendor, raw[off + head : off + alen]
        off += (alen + 3) & ~3


def decode_message(raw: bytes) -> Message:
    """Strict decoding: every length is checked against the buffer, nothing is trusted."""
    _check_header(raw)
    avps = tuple(_avps(raw))
    _, _, flags, command_b, _app, hbh, e2e = _HEADER.unpack_from(raw)
    return Message(
        is_request=bool(flags & FLAG_REQUEST),
        command=int.from_bytes(command_b, "big"),
        hop_by_hop=hbh,
        end_to_end=e2e,
        avps=avps,
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """The fields of an answer that the C module acts on (§5.1)."""

    msgid: int
    service: bytes  # first byte of the first Service-Type
    result_code: int | None  # the last Result-Code; None when absent (bug B2)
    challenge: bytes | None


def decode_answer(raw: bytes) -> Answer:
    """One pass over the AVPs, taking what the C module reads: the first SIP-MSGID,
    Service-Type and Challenge and the last Result-Code, all with vendor 0 (§5.1)."""
    _check_header(raw)
    msgid = service = rc = challenge = None
    for code, vendor, data in _avps(raw):
        if vendor:
            continue
        if code == AVP_SIP_MSGID:
            if msgid is None:
                msgid = data
        elif code == AVP_SERVICE_TYPE:
            if service is None:
                service = data
        elif code == AVP_RESULT_CODE:
            rc = data
        elif code == AVP_CHALLENGE and challenge is None:
            challenge = data
    if msgid is None or len(msgid) != 4:
        raise LegacyError("answer has no 4-byte SIP-MSGID")
    if not service:
        raise LegacyError("answer has no Service-Type")
    if rc is not None and len(rc) != 4:
        raise LegacyError(f"Result-Code of {len(rc)} bytes")
    return Answer(
        msgid=int.from_bytes(msgid, "little"),
        service=service[:1],
        result_code=int.from_bytes(rc, "big") if rc is not None else None,
        challenge=challenge,
    )
