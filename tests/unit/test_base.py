"""wire/base: strict decoding, answers, peer messages and identifiers (RFC 6733)."""

from __future__ import annotations

import struct

import pytest
from diameter.message import Message

from kamailio_auth_diameter.wire import base
from kamailio_auth_diameter.wire.base import Capabilities, DecodeError, Identity, RequestError

ME = Identity("aaa.example.org", "example.org")
PEER = Identity("kamailio.example.org", "example.org")


def raw_avp(code: int, data: bytes, flags: int = 0x40, vendor: int | None = None, length: int | None = None) -> bytes:
    head = 12 if vendor is not None else 8
    n = head + len(data) if length is None else length
    out = struct.pack(">IB", code, flags | (0x80 if vendor is not None else 0)) + n.to_bytes(3, "big")
    if vendor is not None:
        out += struct.pack(">I", vendor)
    return out + data + b"\0" * (-len(data) % 4)


def raw_message(avps: bytes, command: int = 280, flags: int = 0x80, app: int = 0, length: int | None = None) -> bytes:
    n = 20 + len(avps) if length is None else length
    return (
        bytes([1])
        + n.to_bytes(3, "big")
        + bytes([flags])
        + command.to_bytes(3, "big")
        + struct.pack(">III", app, 0x11, 0x22)
        + avps
    )


def walk(raw: bytes, start: int = 20) -> list[tuple[int, int, int]]:
    """(code, flags, vendor) of the top-level AVPs, read independently of the codec."""
    out, pos = [], start
    while pos < len(raw):
        code, flags_len = struct.unpack(">II", raw[pos : pos + 8])
        flags, length = flags_len >> 24, flags_len & 0xFFFFFF
        vendor = struct.unpack(">I", raw[pos + 8 : pos + 12])[0] if flags & 0x80 else 0
        out.append((code, flags, vendor))
        pos += (length + 3) & ~3
    return out


CAPS = Capabilities(PEER, ("127.0.0.1",), auth_application_ids=(6,), origin_state_id=7)


def test_cer_round_trip_and_bytes() -> None:
    raw = base.encode_cer(CAPS, 0x01020304, 0x05060708)
    assert raw[4] == 0x80  # R only: CER is not proxiable
    assert int.from_bytes(raw[5:8], "big") == 257
    assert raw[8:20] == bytes.fromhex("000000000102030405060708")
    avps = walk(raw)
    assert [c for c, _, _ in avps] == [264, 296, 257, 266, 269, 278, 258]
    assert dict((c, f) for c, f, _ in avps)[269] == 0x00  # Product-Name: M MUST NOT (§5.3.7)
    assert all(f == 0x40 for c, f, _ in avps if c != 269)
    caps = base.decode_capabilities(base.decode(raw))
    assert caps.identity == PEER
    assert caps.host_ip_addresses == ("127.0.0.1",)
    assert caps.applications == frozenset({6})
    assert caps.origin_state_id == 7
    assert caps.product_name == "kamailio_auth_diameter"


def test_capabilities_collects_vendor_specific_and_acct_ids() -> None:
    vsa = base.avp_group(260, [base.avp(266, 10415), base.avp(258, 16777216)])
    msg = Message(
        base.request_header(257, 0, 1, 1, proxiable=False),
        [*base.identity_avps(PEER), vsa, base.avp(259, 3), base.avp(299, 1)],
    )
    caps = base.decode_capabilities(base.decode(msg.as_bytes()))
    assert caps.applications == frozenset({16777216, 3})
    assert caps.inband_security_ids == (1,)


def test_cer_without_origin_host_is_5005_with_failed_avp() -> None:
    msg = Message(base.request_header(257, 0, 1, 1, proxiable=False), [base.avp(296, b"example.org")])
    with pytest.raises(RequestError) as err:
        base.decode_capabilities(base.decode(msg.as_bytes()))
    assert err.value.result_code == 5005
    assert err.value.failed_avp is not None
    assert err.value.failed_avp.code == 264


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(raw_message(b"")[:19], id="short-header"),
        pytest.param(raw_message(raw_avp(264, b"host"))[:-4], id="truncated"),
        pytest.param(raw_message(raw_avp(264, b"host"), length=40), id="header-length-lies"),
        pytest.param(b"\x02" + raw_message(b"")[1:], id="version-2"),
        pytest.param(raw_message(raw_avp(264, b"host", length=4)), id="avp-length-below-header"),
        pytest.param(raw_message(raw_avp(264, b"host", length=200)), id="avp-length-past-end"),
        pytest.param(raw_message(raw_avp(264, b"host", vendor=9, length=10)), id="vendor-avp-too-short"),
        pytest.param(raw_message(raw_avp(264, b"host") + b"\0\0\0\0"), id="stray-bytes"),
        pytest.param(raw_message(raw_avp(284, raw_avp(280, b"x", length=99))), id="bad-grouped-inside"),
        pytest.param(raw_message(b"\0" * 70000, length=0xFFFFFF), id="huge"),
    ],
)
def test_hostile_bytes_are_decode_errors(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        base.decode(raw)


def test_unaligned_length_is_a_decode_error() -> None:
    raw = raw_message(raw_avp(264, b"host"))
    with pytest.raises(DecodeError):
        base.decode(raw + b"\0\0")


def test_unknown_mandatory_finds_top_level_vendor_and_nested() -> None:
    plain = base.decode(raw_message(raw_avp(264, b"h") + raw_avp(9999, b"x", flags=0)))
    assert base.unknown_mandatory(plain.avps, base.RECOGNISED, base.GROUPED) is None
    top = base.decode(raw_message(raw_avp(264, b"h") + raw_avp(9999, b"x")))
    found = base.unknown_mandatory(top.avps, base.RECOGNISED, base.GROUPED)
    assert found is not None and found.code == 9999
    vendor = base.decode(raw_message(raw_avp(264, b"h", vendor=10415)))
    found = base.unknown_mandatory(vendor.avps, base.RECOGNISED, base.GROUPED)
    assert found is not None and (found.code, found.vendor_id) == (264, 10415)
    nested = base.decode(raw_message(raw_avp(284, raw_avp(280, b"p") + raw_avp(9999, b"x"))))
    found = base.unknown_mandatory(nested.avps, base.RECOGNISED, base.GROUPED)
    assert found is not None and found.code == 284
    assert [a.code for a in found.value] == [9999]


def test_values_that_do_not_decode_are_5004() -> None:
    msg = base.decode(raw_message(raw_avp(263, b"\xff\xfe") + raw_avp(258, b"\0\0")))
    with pytest.raises(RequestError) as err:
        base.text(msg.avps, 263)
    assert err.value.result_code == 5004
    with pytest.raises(RequestError) as err:
        base.unsigned(msg.avps, 258)
    assert err.value.result_code == 5004


def request_with_session() -> Message:
    header = base.request_header(286, 6, 0xAAAA, 0xBBBB, proxiable=True)
    proxy_info = base.avp_group(284, [base.avp(280, b"relay.example.org"), base.avp(33, b"state")])
    return base.decode(
        base.encode(header, [base.avp(264, b"h"), base.avp(263, "h;1;2"), proxy_info, base.avp(282, b"relay")])
    )


def test_answer_echoes_ids_session_first_and_proxy_info() -> None:
    raw = base.encode_answer(request_with_session(), ME, 2001, [base.avp(258, 6)])
    assert raw[4] == 0x40  # R cleared, P kept, E clear
    assert raw[12:20] == bytes.fromhex("0000aaaa0000bbbb")
    codes = [c for c, _, _ in walk(raw)]
    assert codes == [263, 268, 264, 296, 258, 284]
    msg = base.decode(raw)
    assert base.text(msg.avps, 263) == "h;1;2"
    assert base.text(msg.avps, 264) == "aaa.example.org"
    info = base.answer_info(base.decode_lean(raw))
    assert (info.hop_by_hop, info.end_to_end, info.session_id, info.error) == (0xAAAA, 0xBBBB, "h;1;2", False)


def test_protocol_errors_set_the_e_bit_and_carry_failed_avp() -> None:
    err = RequestError(3001, "no such command")
    raw = base.encode_error(request_with_session(), ME, err)
    assert raw[4] == 0x60  # P + E
    assert base.answer_info(base.decode_lean(raw)).error_message == "no such command"
    missing = base.missing(122)
    raw = base.encode_error(request_with_session(), ME, missing)
    assert raw[4] == 0x40  # 5xxx: no E bit
    msg = base.decode(raw)
    failed = base.find(msg.avps, 279)
    assert failed is not None
    assert [(a.code, a.payload) for a in failed.value] == [(122, b"\0\0\0\0")]


def test_dwr_dwa_dpr_dpa() -> None:
    dwr = base.decode(base.encode_dwr(PEER, 9, 1, 2))
    assert (dwr.header.command_code, dwr.header.command_flags) == (280, 0x80)
    assert base.unsigned(dwr.avps, 278) == 9
    dwa = base.decode(base.encode_dwa(dwr, ME, 5))
    assert (dwa.header.command_flags, base.unsigned(dwa.avps, 268), base.unsigned(dwa.avps, 278)) == (0, 2001, 5)
    dpr = base.decode(base.encode_dpr(ME, base.DISCONNECT_REBOOTING, 3, 4))
    assert (dpr.header.command_code, base.unsigned(dpr.avps, 273)) == (282, 0)
    dpa = base.decode(base.encode_dpa(dpr, PEER))
    assert base.text(dpa.avps, 264) == "kamailio.example.org"
    assert dpa.header.hop_by_hop_identifier == 3


def test_answer_info_rejects_requests() -> None:
    with pytest.raises(DecodeError):
        base.answer_info(base.decode_lean(base.encode_dwr(PEER, 9, 1, 2)))


def test_hop_by_hop_counts_from_a_random_start_and_wraps() -> None:
    hbh = base.HopByHop(urandom=lambda n: b"\xff" * n)
    assert [hbh(), hbh(), hbh()] == [0xFFFFFFFF, 0, 1]


def test_end_to_end_high_bits_are_the_clock() -> None:
    now = [float(0x12345)]
    e2e = base.EndToEnd(clock=lambda: now[0], urandom=lambda n: b"\x0f\xff\xfe")
    assert e2e() == (0x345 << 20) | 0xFFFFE
    assert e2e() == (0x345 << 20) | 0xFFFFF
    now[0] = 0x99999
    assert e2e() == (0x345 << 20)  # the clock is read again only when the counter wraps
    seen = {e2e() for _ in range(0xFFFFD)}
    assert len(seen) == 0xFFFFD
    assert e2e() >> 20 == 0x999


def test_session_ids() -> None:
    ids = base.SessionIds("kamailio.example.org", "4711", clock=lambda: 1_700_000_000)
    assert ids() == "kamailio.example.org;1700000000;0;4711"
    assert ids() == "kamailio.example.org;1700000000;1;4711"
    assert base.SessionIds("h", clock=lambda: 5)() == "h;5;0"
