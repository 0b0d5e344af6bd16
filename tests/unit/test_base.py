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


# --- vendor AVPs in the lean codec ----------------------------------------------------

TGPP = 10415


def test_vendor_avps_are_python_diameters_bytes() -> None:
    """V flag, 12-byte header with the Vendor-Id, padding: as python-diameter encodes them
    (3GPP Public-Identity 601, M+V; SIP-Number-Auth-Items 607, an Unsigned32)."""
    assert (
        base.pack_text(601, "sip:alice@example.com", vendor=TGPP)
        == Message(
            base.request_header(303, 0, 1, 1, proxiable=True), [base.Avp.new(601, TGPP, value="sip:alice@example.com")]
        ).as_bytes()[20:]
    )
    assert base.pack_u32(607, 1, vendor=TGPP) == base.Avp.new(607, TGPP, value=1).as_bytes()
    assert base.pack_avp(635, b"", 0, vendor=TGPP) == base.Avp(635, TGPP, b"", base.AVP_FLAG_VENDOR).as_bytes()
    assert base.pack_text(601, "x", vendor=TGPP)[4] == 0xC0
    assert base.pack_text(601, "x", vendor=0) == base.pack_text(601, "x")  # vendor 0 is the IETF header


def test_lean_avps_look_up_by_code_and_vendor() -> None:
    raw = (
        base.pack_text(601, "3gpp", vendor=TGPP)
        + base.pack_text(601, "ietf")
        + base.pack_text(601, "other vendor", vendor=9)
        + base.pack_text(601, "3gpp again", vendor=TGPP)
        + base.pack_avp(612, base.pack_u32(613, 7, vendor=TGPP), vendor=TGPP)
    )
    avps = base.LeanAvps.parse(raw, 0, len(raw))
    assert [(c, f, v) for c, f, v, _ in avps.items] == [
        (601, 0xC0, TGPP),
        (601, 0x40, 0),
        (601, 0xC0, 9),
        (601, 0xC0, TGPP),
        (612, 0xC0, TGPP),
    ]
    assert avps.text(601) == "ietf"
    assert avps.text(601, TGPP) == "3gpp"
    assert avps.text(601, 9) == "other vendor"
    assert avps.all(601, TGPP) == [b"3gpp", b"3gpp again"]
    assert avps.text(602, TGPP) is None and avps.groups(612) == []
    [item] = avps.groups(612, TGPP)
    assert item.unsigned(613, TGPP) == 7 and item.unsigned(613) is None
    with pytest.raises(RequestError) as err:
        avps.required_text(602, TGPP)
    failed = err.value.failed_avp
    assert err.value.result_code == 5005 and str(err.value) == "AVP 602/10415 is missing"
    assert failed is not None and (failed.code, failed.vendor_id, failed.flags) == (602, TGPP, 0xC0)
    with pytest.raises(RequestError, match="AVP 601/9 is not 32 bits") as err:
        avps.required_unsigned(601, 9)
    assert err.value.result_code == 5004


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(struct.pack(">IB", 601, 0xC0) + (11).to_bytes(3, "big") + b"\0\0\0", id="vendor-header-cut"),
        pytest.param(base.pack_text(601, "abcd", vendor=TGPP)[:-4], id="vendor-data-cut"),
    ],
)
def test_lean_vendor_avps_that_do_not_fit_are_decode_errors(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        base.LeanAvps.parse(raw, 0, len(raw))


def test_unknown_mandatory_knows_vendor_avps_by_code_and_vendor() -> None:
    recognised = {264, (601, TGPP), (612, TGPP), (613, TGPP)}
    grouped = {(612, TGPP)}
    inner = base.pack_u32(613, 1, vendor=TGPP) + base.pack_u32(614, 2, vendor=TGPP)
    body = (
        base.pack_text(264, "h") + base.pack_text(601, "sip:a@b", vendor=TGPP) + base.pack_avp(612, inner, vendor=TGPP)
    )
    found = base.lean_unknown_mandatory(base.LeanAvps.parse(body, 0, len(body)), recognised, grouped)
    assert found is not None and (found.code, found.vendor_id, found.flags) == (612, TGPP, 0xC0)
    assert found.payload == base.pack_u32(614, 2, vendor=TGPP)  # the Failed-AVP: the group with the culprit only
    msg = base.decode(raw_message(body, command=303, app=16777216), grouped)
    found = base.unknown_mandatory(msg.avps, recognised, grouped)
    assert found is not None and (found.code, found.vendor_id) == (612, TGPP)
    assert found.payload == base.pack_u32(614, 2, vendor=TGPP)
    # 601 from another vendor is another AVP
    other = base.pack_text(601, "x", vendor=9)
    assert base.lean_unknown_mandatory(base.LeanAvps.parse(other, 0, len(other)), recognised, grouped) is not None


def test_decode_checks_vendor_groups_it_is_told_of() -> None:
    liar = struct.pack(">IB", 613, 0xC0) + (99).to_bytes(3, "big") + struct.pack(">I", TGPP)
    raw = raw_message(base.pack_avp(612, liar, vendor=TGPP), command=303, app=16777216)
    base.decode(raw)  # opaque unless named
    with pytest.raises(DecodeError):
        base.decode(raw, {(612, TGPP)})


def test_experimental_result_is_python_diameters_bytes_and_reads_back() -> None:
    expected = base.avp_group(297, [base.avp(266, TGPP), base.avp(298, 5001)]).as_bytes()
    assert base.pack_experimental_result(TGPP, 5001) == expected
    raw = base.pack_experimental_result(9, 1) + expected
    avps = base.LeanAvps.parse(raw, 0, len(raw))
    assert base.experimental_result(avps, TGPP) == 5001
    assert base.experimental_result(avps, 4) is None
    no_code = base.pack_avp(297, base.pack_u32(266, TGPP))
    with pytest.raises(RequestError):
        base.experimental_result(base.LeanAvps.parse(no_code, 0, len(no_code)), TGPP)


def test_lean_answer_with_experimental_result_instead_of_result_code() -> None:
    request = base.decode_lean(raw_message(base.pack_text(263, "s;1"), command=303, app=16777216, flags=0xC0))
    raw = base.lean_answer(request, ME, None, b"", experimental=(TGPP, 5001))
    assert [c for c, _, _ in walk(raw)] == [263, 297, 264, 296]
    assert raw[4] == 0x40
    msg = base.decode_lean(raw)
    assert msg.avps.unsigned(268) is None and base.experimental_result(msg.avps, TGPP) == 5001


CX = base.VendorApplication(TGPP, 16777216)


def test_cer_with_a_vendor_application_is_python_diameters_bytes() -> None:
    caps = Capabilities(
        PEER, ("127.0.0.1",), origin_state_id=7, supported_vendor_ids=(TGPP,), vendor_applications=(CX,)
    )
    raw = base.encode_cer(caps, 1, 2)
    assert [c for c, _, _ in walk(raw)] == [264, 296, 257, 266, 269, 278, 265, 260]
    vsai = base.avp_group(260, [base.avp(266, TGPP), base.avp(258, 16777216)])
    avps = [*base.identity_avps(PEER), base.avp(257, "127.0.0.1"), base.avp(266, 0)]
    avps += [base.avp(269, "kamailio_auth_diameter", mandatory=False), base.avp(278, 7), base.avp(265, TGPP), vsai]
    assert raw == base.encode(base.request_header(257, 0, 1, 2, proxiable=False), avps)
    assert vsai.as_bytes() == base.vendor_application_avp(CX)
    back = base.decode_capabilities(base.decode(raw))
    assert back.vendor_applications == (CX,) and back.supported_vendor_ids == (TGPP,)
    assert back.applications == frozenset({16777216}) and back.auth_application_ids == ()


def test_cer_with_both_kinds_of_application() -> None:
    caps = Capabilities(PEER, ("127.0.0.1",), (6,), supported_vendor_ids=(TGPP,), vendor_applications=(CX,))
    raw = base.encode_cer(caps, 1, 2)
    assert [c for c, _, _ in walk(raw)] == [264, 296, 257, 266, 269, 265, 258, 260]
    back = base.decode_capabilities(base.decode(raw))
    assert back.applications == frozenset({6, 16777216})
    assert (back.auth_application_ids, back.vendor_applications) == ((6,), (CX,))
