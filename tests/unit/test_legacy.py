"""wire/legacy: the DISC dialect of the C module, byte for byte (§4, §5, §10 of the shared notes)."""

from __future__ import annotations

import struct

import pytest

from kamailio_auth_diameter.authorize import Result
from kamailio_auth_diameter.backend import legacy as legacy_backend
from kamailio_auth_diameter.sip.credentials import Credentials, parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy
from kamailio_auth_diameter.wire.legacy import Answer, LegacyError

# §4.5: INVITE, R-URI sip:bob@example.com:5080, From sip:alice@example.com, no credentials, msg->id 1.
WORKED_EXAMPLE = bytes.fromhex(
    "01000078 80000109 00000001 00000000 00000000"  # header, length 120
    "00000190 4000001c 626f62406578616d706c652e636f6d3a35303830"  # Resource "bob@example.com:5080"
    "0000011b 40000013 6578616d706c652e636f6d 00"  # Destination-Realm "example.com" + 1 pad
    "00000194 40000009 36 000000"  # Service-Type '6' + 3 pad
    "00000196 0000000c 01000000"  # SIP-MSGID 1, little-endian, flags 0
    "00000001 4000001a 616c696365406578616d706c652e636f6d 00 0000"  # User-Name + NUL + 2 pad
)


# --- independent helpers: a hand-written AVP walker and builder -------------------


def walk(raw: bytes) -> list[tuple[int, int, bytes]]:
    """(code, flags, data) of each AVP; asserts the padding is zeros and lengths exclude it."""
    assert raw[0] == 1
    assert int.from_bytes(raw[1:4], "big") == len(raw)
    assert len(raw) % 4 == 0
    out = []
    off = 20
    while off < len(raw):
        code, flags = struct.unpack_from(">IB", raw, off)
        length = int.from_bytes(raw[off + 5 : off + 8], "big")
        assert not flags & 0x80, "the dialect never sets the V bit"
        data = raw[off + 8 : off + length]
        pad = -length % 4
        assert raw[off + length : off + length + pad] == b"\0" * pad
        out.append((code, flags, data))
        off += length + pad
    assert off == len(raw)
    return out


def avp(code: int, data: bytes, flags: int = 0x40, vendor: int | None = None, length: int | None = None) -> bytes:
    head_len = 12 if vendor is not None else 8
    if vendor is not None:
        flags |= 0x80
    n = head_len + len(data) if length is None else length
    head = struct.pack(">IB", code, flags) + n.to_bytes(3, "big")
    if vendor is not None:
        head += vendor.to_bytes(4, "big")
    return head + data + b"\0" * (-len(data) % 4)


def message(*avps: bytes, version: int = 1, flags: int = 0x00, command: int = 265, length: int | None = None) -> bytes:
    body = b"".join(avps)
    n = 20 + len(body) if length is None else length
    return (
        bytes([version])
        + n.to_bytes(3, "big")
        + bytes([flags])
        + command.to_bytes(3, "big")
        + struct.pack(">III", 1, 0, 0)
        + body
    )


MSGID1 = avp(406, b"\x01\0\0\0", flags=0)
SVC6 = avp(404, b"6")
RC2001 = avp(268, (2001).to_bytes(4, "big"))
RC4001 = avp(268, (4001).to_bytes(4, "big"))
CHALLENGE = b'Digest realm="example.com", nonce="abc"\r\n'


def cred(body: str) -> Credentials:
    c = parse_credentials(body)
    assert c is not None
    return c


def auth_request(
    ruri: str = "sip:bob@example.com:5080",
    identity: str = "sip:alice@example.com",
    msgid: int = 1,
    credentials: Credentials | None = None,
    method: str = "INVITE",
) -> bytes:
    return legacy.encode_auth_request(parse_uri(ruri), parse_uri(identity), msgid, credentials, method)


# --- requests -----------------------------------------------------------------------


def test_worked_example_is_byte_exact() -> None:
    raw = auth_request()
    assert len(raw) == 120
    assert raw.hex() == WORKED_EXAMPLE.hex()


def test_request_header() -> None:
    raw = auth_request()
    assert raw[:1] == b"\x01"
    assert raw[4] == 0x80
    assert raw[5:8] == b"\x00\x01\x09"
    assert raw[8:20] == bytes.fromhex("00000001 00000000 00000000")


@pytest.mark.parametrize(
    ("ruri", "resource"),
    [
        ("sip:bob@example.com:5080", b"bob@example.com:5080"),
        ("sip:bob@example.com;transport=udp", b"bob@example.com\0"),
        ("sip:example.com:5080", b"example.com\x005080\0"),
        ("sip:example.com", b"example.com\0\0"),
        ("sip:bob@[2001:db8::1]:5062", b"bob@[2001:db8::1]:5062"),
        ("sip:bob:pw@example.com?subject=x", b"bob@example.com\0"),
        ("tel:+123", b"+123@\0"),  # the number as user, an empty host
        ("tel:+4930123456;phone-context=x", b"+4930123456@\0"),
    ],
)
def test_resource_rows(ruri: str, resource: bytes) -> None:
    code, flags, data = walk(auth_request(ruri=ruri))[0]
    assert (code, flags, data) == (400, 0x40, resource)


def test_c_string_buffer_lengths() -> None:
    assert legacy.c_string_buffer("bob", "example.com", "5080") == b"bob@example.com:5080"
    assert legacy.c_string_buffer("", "example.com", "") == b"example.com\0\0"


def test_destination_realm_is_identity_host_case_kept() -> None:
    avps = walk(auth_request(identity="sip:alice@Example.COM:5070"))
    assert avps[1] == (283, 0x40, b"Example.COM")


def _user_name(raw: bytes) -> bytes:
    avps = walk(raw)
    assert avps[4][0] == 1
    return avps[4][2]


@pytest.mark.parametrize("with_credentials", [False, True])
def test_tel_identity_cannot_be_encoded(with_credentials: bool) -> None:
    # Destination-Realm is the identity host, empty for tel:; the C module fails there too
    c = cred('Digest username="a", nonce="n"') if with_credentials else None
    with pytest.raises(LegacyError, match="283"):
        auth_request(identity="tel:+123", credentials=c)


def test_user_name_without_credentials_has_one_nul() -> None:
    assert _user_name(auth_request()) == b"alice@example.com\0"


def test_user_name_without_credentials_or_user_has_two_nuls() -> None:
    assert _user_name(auth_request(identity="sip:example.com")) == b"example.com\0\0"


def test_user_name_ignores_identity_port() -> None:
    assert _user_name(auth_request(identity="sip:alice@example.com:5070")) == b"alice@example.com\0"


@pytest.mark.parametrize("username", ["sip:alice@dom.org", "alice@other.org", "alice@example.com"])
def test_user_name_with_domain_is_sent_raw(username: str) -> None:
    c = cred(f'Digest username="{username}", realm="example.com", nonce="n", uri="sip:x", response="r"')
    assert _user_name(auth_request(credentials=c)) == username.encode()


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("alice", b"alice@example.com"),  # B1 fixed as in Kamailio HEAD
        ("sip:alice", b"alice@example.com"),
        ("sips:alice", b"alice@example.com"),
        ("", b"example.com"),
        ("sip:", b"example.com"),
    ],
)
def test_user_name_b1_fix(username: str, expected: bytes) -> None:
    c = cred(f'Digest username="{username}", realm="example.com", nonce="n", uri="sip:x", response="r"')
    assert _user_name(auth_request(credentials=c)) == expected


def test_auth_user_name_uses_credentials_realm_not_identity() -> None:
    c = cred('Digest username="alice", realm="EXAMPLE.com"')
    assert legacy.auth_user_name(parse_uri("sip:alice@example.com"), c) == b"alice@EXAMPLE.com"


def test_credentials_append_response_and_method_in_order() -> None:
    body = 'Digest username="alice", realm="example.com", nonce="n", uri="sip:bob@example.com", response="r"'
    avps = walk(auth_request(credentials=cred(body), method="REGISTER"))
    assert [a[0] for a in avps] == [400, 283, 404, 406, 1, 401, 403]
    assert avps[5] == (401, 0x40, body.encode())
    assert avps[6] == (403, 0x40, b"REGISTER")


def test_without_credentials_no_response_or_method() -> None:
    assert [a[0] for a in walk(auth_request())] == [400, 283, 404, 406, 1]


def test_flags_are_0x40_except_sip_msgid() -> None:
    body = 'Digest username="alice", realm="example.com"'
    raws = [
        auth_request(credentials=cred(body)),
        legacy.encode_group_request("example.com", 7, "voicemail", b"alice"),
    ]
    for raw in raws:
        for code, flags, _ in walk(raw):
            assert flags == (0x00 if code == 406 else 0x40), code


@pytest.mark.parametrize(
    ("msgid", "wire"),
    [(1, b"\x01\0\0\0"), (0x01020304, b"\x04\x03\x02\x01"), (2**32 + 5, b"\x05\0\0\0"), (0, b"\0\0\0\0")],
)
def test_sip_msgid_is_little_endian(msgid: int, wire: bytes) -> None:
    assert walk(auth_request(msgid=msgid))[3] == (406, 0, wire)
    assert walk(legacy.encode_group_request("r", msgid, "g", b"u"))[2] == (406, 0, wire)


def test_padding_and_lengths() -> None:
    for n in range(1, 9):
        raw = legacy.encode_group_request("r" * n, 1, "g" * n, b"u" * n)
        avps = walk(raw)  # checks zero padding and that lengths exclude it
        assert avps[0][2] == b"r" * n


def test_group_request_order_and_content() -> None:
    raw = legacy.encode_group_request("example.com", 3, "$fU", b"alice")
    assert raw[4] == 0x80
    assert walk(raw) == [
        (283, 0x40, b"example.com"),
        (404, 0x40, b"8"),
        (406, 0x00, b"\x03\0\0\0"),
        (405, 0x40, b"$fU"),
        (1, 0x40, b"alice"),
    ]


@pytest.mark.parametrize(
    ("user", "domain", "use_domain", "expected"),
    [
        ("alice", "example.com", False, b"alice"),
        ("alice", "example.com", True, b"alice@example.com"),
        ("", "example.com", True, b"example.com\0"),
        ("", "example.com", False, b""),
    ],
)
def test_group_user_name(user: str, domain: str, use_domain: bool, expected: bytes) -> None:
    assert legacy.group_user_name(user, domain, use_domain) == expected


def test_group_user_name_without_user_on_the_wire() -> None:
    raw = legacy.encode_group_request("example.com", 1, "g", legacy.group_user_name("", "example.com", True))
    assert walk(raw)[4] == (1, 0x40, b"example.com\0")


@pytest.mark.parametrize(
    ("realm", "group", "user_name"),
    [("", "g", b"u"), ("r", "", b"u"), ("r", "g", b"")],
)
def test_empty_avp_cannot_be_encoded(realm: str, group: str, user_name: bytes) -> None:
    with pytest.raises(LegacyError):
        legacy.encode_group_request(realm, 1, group, user_name)


def test_empty_method_cannot_be_encoded() -> None:
    with pytest.raises(LegacyError):
        auth_request(credentials=cred('Digest username="a", realm="example.com"'), method="")


def test_requests_decode_as_requests() -> None:
    msg = legacy.decode_message(auth_request())
    assert msg.is_request
    assert msg.command == 265
    assert [a[0] for a in msg.avps] == [400, 283, 404, 406, 1]
    assert msg.first(1) == b"alice@example.com\0"


# --- answers ------------------------------------------------------------------------


def test_answer_round_trip_in_disc_shape() -> None:
    raw = legacy.encode_answer(
        service=b"6",
        msgid=b"\x2a\0\0\0",
        result_code=4001,
        session_id=b"aaa;1;1",
        origin_host=b"aaa.test",
        origin_realm=b"test",
        challenge=CHALLENGE,
        hop_by_hop=0x11223344,
        end_to_end=0x55667788,
    )
    avps = walk(raw)
    assert [a[0] for a in avps] == [404, 406, 263, 268, 264, 296, 402]
    assert raw[4] & 0x80 == 0
    assert raw[5:8] == b"\x00\x01\x09"
    msg = legacy.decode_message(raw)
    assert not msg.is_request
    assert (msg.hop_by_hop, msg.end_to_end) == (0x11223344, 0x55667788)
    assert legacy.decode_answer(raw) == Answer(msgid=42, service=b"6", result_code=4001, challenge=CHALLENGE)


def test_answer_without_challenge_round_trip() -> None:
    raw = legacy.encode_answer(
        service=b"8", msgid=b"\x01\x02\x03\x04", result_code=2001, session_id=b"s", origin_host=b"h", origin_realm=b"r"
    )
    assert legacy.decode_answer(raw) == Answer(msgid=0x04030201, service=b"8", result_code=2001, challenge=None)


def test_minimal_answer() -> None:
    assert legacy.decode_answer(message(SVC6, MSGID1, RC2001)) == Answer(1, b"6", 2001, None)


def test_avp_order_does_not_matter() -> None:
    assert legacy.decode_answer(message(RC2001, MSGID1, SVC6)) == Answer(1, b"6", 2001, None)


def test_missing_result_code_is_server_error_not_a_crash() -> None:  # bug B2
    answer = legacy.decode_answer(message(SVC6, MSGID1))
    assert answer.result_code is None
    assert legacy_backend.verdict(answer) is Result.SERVER_ERROR


def test_last_result_code_wins() -> None:
    assert legacy.decode_answer(message(SVC6, MSGID1, RC4001, RC2001)).result_code == 2001
    assert legacy.decode_answer(message(SVC6, MSGID1, RC2001, RC4001)).result_code == 4001


def test_first_msgid_service_and_challenge_win() -> None:
    raw = message(
        avp(404, b"8"), SVC6, MSGID1, avp(406, b"\x02\0\0\0", flags=0), RC4001, avp(402, b"first"), avp(402, b"second")
    )
    assert legacy.decode_answer(raw) == Answer(1, b"8", 4001, b"first")


def test_service_type_keeps_only_first_byte() -> None:
    assert legacy.decode_answer(message(avp(404, b"6xyz"), MSGID1, RC2001)).service == b"6"


def test_vendor_bit_with_vendor_zero_still_matches() -> None:
    raw = message(avp(404, b"6", vendor=0), avp(406, b"\x01\0\0\0", vendor=0), avp(268, b"\0\0\x07\xd1", vendor=0))
    assert legacy.decode_answer(raw) == Answer(1, b"6", 2001, None)


def test_vendor_specific_avps_are_ignored() -> None:
    raw = message(SVC6, MSGID1, RC4001, avp(268, (2001).to_bytes(4, "big"), vendor=10415))
    assert legacy.decode_answer(raw).result_code == 4001
    raw = message(SVC6, avp(406, b"\x01\0\0\0", vendor=9))
    with pytest.raises(LegacyError):
        legacy.decode_answer(raw)


def test_request_bit_and_other_command_are_accepted() -> None:  # B19: never checked
    raw = message(SVC6, MSGID1, RC2001, flags=0x80, command=999)
    assert legacy.decode_answer(raw).result_code == 2001


def test_unknown_avps_are_skipped() -> None:
    raw = message(avp(263, b"session;1"), SVC6, avp(9999, b"x" * 33, flags=0), MSGID1, RC2001)
    assert legacy.decode_answer(raw) == Answer(1, b"6", 2001, None)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(message(SVC6, RC2001), id="missing SIP-MSGID"),
        pytest.param(message(MSGID1, RC2001), id="missing Service-Type"),
        pytest.param(message(SVC6, avp(406, b"\x01\0", flags=0), RC2001), id="short SIP-MSGID"),
        pytest.param(message(SVC6, avp(406, b"\x01\0\0\0\0\0\0\0", flags=0), RC2001), id="long SIP-MSGID"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"\x07\xd1")), id="2-byte Result-Code"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"\0\0\0\0\0\0\x07\xd1")), id="8-byte Result-Code"),
        pytest.param(message(SVC6, MSGID1, RC2001, avp(268, b"\x07\xd1")), id="last Result-Code malformed"),
        pytest.param(message(SVC6, MSGID1, RC2001, version=2), id="version 2"),
        pytest.param(message(SVC6, MSGID1, RC2001, version=0), id="version 0"),
        pytest.param(message(SVC6, MSGID1, RC2001, length=20 + 12 + 12 + 12 + 4), id="header length too long"),
        pytest.param(message(SVC6, MSGID1, RC2001, length=20 + 12 + 12 + 8), id="header length too short"),
        pytest.param(message(SVC6, MSGID1, RC2001)[:19], id="shorter than a header"),
        pytest.param(b"", id="empty"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"\0\0\x07\xd1", length=7)), id="AVP length below header"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"\0\0\x07\xd1", length=0)), id="AVP length 0"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"\0\0\x07\xd1", length=13)), id="AVP length beyond message"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"\0\0\x07\xd1", length=0xFFFFFF)), id="AVP length huge"),
        pytest.param(message(SVC6, MSGID1, RC2001, b"\0\0\x01\x0c"), id="truncated AVP header (4 bytes)"),
        pytest.param(message(SVC6, MSGID1, RC2001, b"\0\0\x01\x0c\x40\0\0\x0c"[:7] + b"\0"), id="8 byte tail"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"", vendor=0, length=11)), id="V bit, length below 12"),
        pytest.param(message(SVC6, MSGID1, RC2001, avp(1, b"", flags=0xC0, length=8)), id="V bit, no vendor id"),
    ],
)
def test_hostile_answers_raise_legacy_error(raw: bytes) -> None:
    with pytest.raises(LegacyError):
        legacy.decode_answer(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(message(SVC6, avp(406, b"", flags=0), RC2001), id="empty SIP-MSGID"),
        pytest.param(message(avp(404, b""), MSGID1, RC2001), id="empty Service-Type"),
        pytest.param(message(SVC6, MSGID1, avp(268, b"")), id="empty Result-Code"),
    ],
)
def test_zero_length_essential_avps_raise(raw: bytes) -> None:
    with pytest.raises(LegacyError):
        legacy.decode_answer(raw)


def test_zero_length_challenge_is_not_a_usable_challenge() -> None:
    from kamailio_auth_diameter import authorize, outcome

    answer = legacy.decode_answer(message(SVC6, MSGID1, RC4001, avp(402, b"")))
    result = legacy_backend.verdict(answer)
    # whatever the codec makes of it, the UA must get a 500, never an empty 401 header
    assert authorize.result_outcome(result, answer.challenge, proxy=False) is outcome.SERVER_ERROR


def test_zero_length_unrelated_avp_is_tolerated() -> None:
    # The C module fails the whole answer (§5.1); B12 leaves it open, and this codec
    # chose to skip an empty AVP it does not use.
    raw = message(SVC6, avp(263, b""), MSGID1, RC2001)
    assert legacy.decode_answer(raw) == Answer(1, b"6", 2001, None)


def test_decode_message_keeps_vendor_and_order() -> None:
    msg = legacy.decode_message(message(avp(1, b"a", vendor=5), avp(1, b"b"), avp(1, b"c")))
    assert msg.avps == ((1, 5, b"a"), (1, 0, b"b"), (1, 0, b"c"))
    assert msg.first(1) == b"b"
    assert msg.last(1) == b"c"
    assert msg.first(2) is None
    assert msg.last(2) is None


# --- §5.2 result mapping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rc", "service", "challenge", "expected"),
    [
        (2001, b"6", None, Result.AUTHORIZED),
        (2001, b"8", None, Result.AUTHORIZED),
        (2001, b"6", CHALLENGE, Result.AUTHORIZED),
        (4001, b"6", CHALLENGE, Result.CHALLENGE),
        (4001, b"6", None, Result.SERVER_ERROR),
        (4001, b"8", CHALLENGE, Result.NOT_AUTHORIZED),
        (4001, b"8", None, Result.NOT_AUTHORIZED),
        (4001, b"9", None, Result.NOT_AUTHORIZED),
        (5003, b"6", None, Result.NOT_AUTHORIZED),
        (5003, b"6", CHALLENGE, Result.NOT_AUTHORIZED),
        (5003, b"8", None, Result.NOT_AUTHORIZED),
        (5012, b"6", CHALLENGE, Result.SERVER_ERROR),
        (4002, b"6", CHALLENGE, Result.SERVER_ERROR),
        (1001, b"6", None, Result.SERVER_ERROR),
        (2002, b"6", None, Result.SERVER_ERROR),
        (0, b"6", None, Result.SERVER_ERROR),
        (0xFFFFFFFF, b"6", None, Result.SERVER_ERROR),
        (None, b"6", CHALLENGE, Result.SERVER_ERROR),
    ],
)
def test_auth_result_mapping(rc: int | None, service: bytes, challenge: bytes | None, expected: Result) -> None:
    assert legacy_backend.verdict(Answer(msgid=1, service=service, result_code=rc, challenge=challenge)) is expected


def test_auth_result_through_the_decoder() -> None:
    raw = message(avp(404, b"8"), MSGID1, RC4001, avp(402, CHALLENGE))  # '8' answer to an auth request: 403
    assert legacy_backend.verdict(legacy.decode_answer(raw)) is Result.NOT_AUTHORIZED
