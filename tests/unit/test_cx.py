"""wire/cx: 3GPP Cx MAR/MAA for "SIP Digest", both directions, checked against python-diameter's bytes."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from diameter.message import Message
from diameter.message.avp import Avp

from kamailio_auth_diameter.wire import base, cx
from kamailio_auth_diameter.wire.base import DecodeError, Identity, RequestError
from kamailio_auth_diameter.wire.cx import MultimediaAuthAnswer, MultimediaAuthRequest
from kamailio_auth_diameter.wire.digest_avps import DigestHa1

TGPP = cx.VENDOR_3GPP
HSS = Identity("hss.example.com", "example.com")
MAR = MultimediaAuthRequest(
    session_id="w1.proxy.example.com;1;2",
    origin_host="w1.proxy.example.com",
    origin_realm="proxy.example.com",
    destination_realm="example.com",
    user_name="alice",
    public_identity="sip:alice@example.com",
    server_name="sip:proxy.example.com",
)
MD5_HA1 = DigestHa1("MD5", "0123456789abcdef" * 2, "example.com", "auth")
SHA_HA1 = DigestHa1("SHA-256", "fedcba9876543210" * 4, "example.com", "auth")


def tgpp(code: int, value: object) -> Avp:
    """A 3GPP AVP as python-diameter's dictionary types and flags it (M and V)."""
    return Avp.new(code, TGPP, value=value)


def tgpp_v_only(code: int, data: bytes) -> Avp:
    """SIP-Digest-Authenticate's Alternate-Digest-* (662/663, V only): not in python-diameter's dictionary."""
    return Avp(code, TGPP, data, base.AVP_FLAG_VENDOR)


def pd_mar(req: MultimediaAuthRequest, retransmit: bool = False) -> bytes:
    """The same MAR built with python-diameter, AVP by AVP in TS 29.229's order."""
    vsai = base.avp_group(260, [base.avp(266, TGPP), base.avp(258, cx.APP_CX)])
    avps = [base.avp(263, req.session_id), vsai, base.avp(277, 1)]
    avps += [base.avp(264, req.origin_host.encode()), base.avp(296, req.origin_realm.encode())]
    avps.append(base.avp(283, req.destination_realm.encode()))
    if req.destination_host is not None:
        avps.append(base.avp(293, req.destination_host.encode()))
    avps += [base.avp(1, req.user_name), tgpp(601, req.public_identity)]
    avps += [tgpp(612, [tgpp(608, req.scheme)]), tgpp(607, 1), tgpp(602, req.server_name)]
    header = base.request_header(303, cx.APP_CX, 11, 22, proxiable=True, retransmit=retransmit)
    return base.encode(header, avps)


@pytest.mark.parametrize("retransmit", [False, True])
@pytest.mark.parametrize("destination_host", [None, "hss1.example.com"])
def test_lean_mar_is_byte_identical_to_python_diameter(retransmit: bool, destination_host: str | None) -> None:
    req = dataclasses.replace(MAR, destination_host=destination_host)
    raw = cx.encode_mar(req, 11, 22, retransmit)
    assert raw == pd_mar(req, retransmit)
    assert raw[4] == (0xD0 if retransmit else 0xC0)
    assert (int.from_bytes(raw[5:8], "big"), int.from_bytes(raw[8:12], "big")) == (303, 16777216)
    assert cx.decode_mar(base.decode_lean(raw)) == req


def test_mar_flags_and_vendors() -> None:
    msg = base.decode_lean(cx.encode_mar(MAR, 1, 2))
    assert [(c, f, v) for c, f, v, _ in msg.avps.items] == [
        (263, 0x40, 0),
        (260, 0x40, 0),
        (277, 0x40, 0),
        (264, 0x40, 0),
        (296, 0x40, 0),
        (283, 0x40, 0),
        (1, 0x40, 0),
        (601, 0xC0, TGPP),
        (612, 0xC0, TGPP),
        (607, 0xC0, TGPP),
        (602, 0xC0, TGPP),
    ]
    assert base.lean_unknown_mandatory(msg.avps, cx.RECOGNISED, cx.GROUPED) is None


def mar_without(code: int, vendor: int = 0) -> base.LeanMessage:
    msg = base.decode(cx.encode_mar(MAR, 1, 2), cx.GROUPED)
    return base.decode_lean(
        Message(msg.header, [a for a in msg.avps if (a.code, a.vendor_id) != (code, vendor)]).as_bytes()
    )


@pytest.mark.parametrize(
    ("code", "vendor"),
    [
        (263, 0),
        (260, 0),
        (277, 0),
        (264, 0),
        (296, 0),
        (283, 0),
        (1, 0),
        (601, TGPP),
        (612, TGPP),
        (607, TGPP),
        (602, TGPP),
    ],
)
def test_mar_missing_mandatory_avp_is_5005(code: int, vendor: int) -> None:
    with pytest.raises(RequestError) as err:
        cx.decode_mar(mar_without(code, vendor))
    assert err.value.result_code == 5005
    failed = err.value.failed_avp
    assert failed is not None and (failed.code, failed.vendor_id) == (code, vendor)


def mar_with_items(*items: bytes) -> base.LeanMessage:
    raw = cx.encode_mar(MAR, 1, 2)
    without = mar_without(612, TGPP)
    body = b"".join(base.pack_avp(c, d, f & ~base.AVP_FLAG_VENDOR, v) for c, f, v, d in without.avps.items)
    body += b"".join(base.pack_avp(612, item, vendor=TGPP) for item in items)
    return base.decode_lean(base.pack_message(raw[4], 303, cx.APP_CX, 1, 2, body))


def test_mar_scheme_is_read_not_judged_and_must_be_there() -> None:
    aka = base.pack_text(608, "Digest-AKAv1-MD5", vendor=TGPP)
    assert cx.decode_mar(mar_with_items(aka)).scheme == "Digest-AKAv1-MD5"
    with pytest.raises(RequestError) as err:
        cx.decode_mar(mar_with_items(base.pack_text(608, "SIP Digest")))  # IETF 608 is another AVP
    assert err.value.result_code == 5005
    with pytest.raises(RequestError) as err:
        cx.decode_mar(mar_with_items(aka, aka))
    assert err.value.result_code == 5009


def test_an_unknown_vendor_avp_with_m_in_a_mar_is_found() -> None:
    msg = base.decode(cx.encode_mar(MAR, 1, 2), cx.GROUPED)
    msg.avps.append(Avp(601, 4491, b"x", base.AVP_FLAG_MANDATORY))  # CableLabs' 601 is not 3GPP's
    found = base.lean_unknown_mandatory(base.decode_lean(msg.as_bytes()).avps, cx.RECOGNISED, cx.GROUPED)
    assert found is not None and (found.code, found.vendor_id) == (601, 4491)


# --- MAA ---------------------------------------------------------------------------------


def request() -> base.LeanMessage:
    return base.decode_lean(cx.encode_mar(MAR, 7, 8))


def pd_maa(result: list[Avp], ha1_item: Avp | None = None) -> bytes:
    """The MAA python-diameter's encode_answer makes of the same AVPs."""
    msg = base.decode(cx.encode_mar(MAR, 7, 8), cx.GROUPED)
    body = [*cx.session_avps(), base.avp(1, "alice"), tgpp(601, "sip:alice@example.com")]
    if ha1_item is not None:
        body += [tgpp(607, 1), ha1_item]
    answer = base.decode(base.encode_answer(msg, HSS, 2001, body))
    avps = [a for a in answer.avps if a.code != 268]
    return base.encode(answer.header, [avps[0], *result, *avps[1:]])


def pd_item(*digest: Avp) -> Avp:
    authenticate = Avp.new(635, TGPP, value=list(digest), is_mandatory=False)
    return tgpp(612, [tgpp(613, 1), tgpp(608, "SIP Digest"), authenticate])


def test_maa_with_md5_and_sha_256_is_byte_identical_to_python_diameter() -> None:
    answer = MultimediaAuthAnswer(result_code=2001, ha1s=(SHA_HA1, MD5_HA1))
    raw = cx.encode_maa(request(), HSS, answer)
    item = pd_item(
        base.avp(104, "example.com"),
        base.avp(111, "MD5"),
        base.avp(110, "auth"),
        base.avp(121, MD5_HA1.ha1),
        tgpp_v_only(662, b"SHA-256"),
        tgpp_v_only(663, SHA_HA1.ha1.encode()),
    )
    assert raw == pd_maa([base.avp(268, 2001)], item)
    info, back = cx.decode_maa(raw)
    assert (info.hop_by_hop, info.end_to_end, info.origin_host) == (7, 8, "hss.example.com")
    assert back == MultimediaAuthAnswer(result_code=2001, ha1s=(MD5_HA1, SHA_HA1))  # main one first


def test_maa_with_md5_only() -> None:
    raw = cx.encode_maa(request(), HSS, MultimediaAuthAnswer(result_code=2001, ha1s=(MD5_HA1,)))
    item = pd_item(
        base.avp(104, "example.com"), base.avp(111, "MD5"), base.avp(110, "auth"), base.avp(121, MD5_HA1.ha1)
    )
    assert raw == pd_maa([base.avp(268, 2001)], item)
    assert cx.decode_maa(raw)[1].ha1s == (MD5_HA1,)


@pytest.mark.parametrize("code", [cx.USER_UNKNOWN, cx.IDENTITIES_DONT_MATCH, cx.AUTH_SCHEME_NOT_SUPPORTED])
def test_maa_with_experimental_result_instead_of_result_code(code: int) -> None:
    raw = cx.encode_maa(request(), HSS, MultimediaAuthAnswer(experimental_result=code, error_message="no"))
    experimental = base.avp_group(297, [base.avp(266, TGPP), base.avp(298, code)])
    expected = base.decode(pd_maa([experimental]))
    expected.avps.append(base.avp(281, "no", mandatory=False))
    assert raw == expected.as_bytes()
    assert raw[4] == 0x40  # no E bit: 5xxx
    assert cx.decode_maa(raw)[1] == MultimediaAuthAnswer(experimental_result=code, error_message="no")


def test_maa_with_a_protocol_error_sets_the_e_bit() -> None:
    raw = cx.encode_maa(request(), HSS, MultimediaAuthAnswer(result_code=3002))
    assert raw[4] & base.FLAG_ERROR
    assert cx.decode_maa(raw)[1] == MultimediaAuthAnswer(result_code=3002)


@pytest.mark.parametrize(
    "answer",
    [
        MultimediaAuthAnswer(),
        MultimediaAuthAnswer(2001, ha1s=(SHA_HA1, SHA_HA1)),
        MultimediaAuthAnswer(2001, ha1s=(MD5_HA1, MD5_HA1)),
        MultimediaAuthAnswer(2001, ha1s=(MD5_HA1, SHA_HA1, MD5_HA1)),
        MultimediaAuthAnswer(2001, ha1s=(MD5_HA1, DigestHa1("SHA-256", "0" * 64, "other.com", "auth"))),
    ],
)
def test_what_one_maa_cannot_say_is_a_value_error(answer: MultimediaAuthAnswer) -> None:
    with pytest.raises(ValueError):
        cx.encode_maa(request(), HSS, answer)


def test_maa_with_sha_256_only_has_no_alternate() -> None:
    raw = cx.encode_maa(request(), HSS, MultimediaAuthAnswer(2001, ha1s=(SHA_HA1,)))
    assert cx.decode_maa(raw)[1].ha1s == (SHA_HA1,)
    assert struct.pack(">I", 662) not in raw[20:]


def hss_maa(*digest: Avp, result: Avp | None = None) -> bytes:
    """An MAA from someone else's HSS, built by python-diameter."""
    return pd_maa([result or base.avp(268, 2001)], pd_item(*digest))


def test_fhoss_style_answer_without_algorithm_and_qop() -> None:
    raw = hss_maa(base.avp(104, "example.com"), base.avp(121, "ABCDEF0123456789" * 2))
    assert cx.decode_maa(raw)[1].ha1s == (DigestHa1("MD5", "abcdef0123456789" * 2, "example.com", "auth"),)


def test_digest_avps_under_the_3gpp_vendor_are_read_too() -> None:
    raw = hss_maa(
        Avp(104, TGPP, b"example.com", 0xC0),
        Avp(111, TGPP, b"md5", 0xC0),
        Avp(110, TGPP, b"auth", 0xC0),
        Avp(121, TGPP, MD5_HA1.ha1.encode(), 0xC0),
    )
    assert cx.decode_maa(raw)[1].ha1s == (MD5_HA1,)


def test_an_alternate_we_cannot_use_is_left_out() -> None:
    raw = hss_maa(
        base.avp(104, "example.com"),
        base.avp(121, MD5_HA1.ha1),
        tgpp_v_only(662, b"SHA-512-256"),
        tgpp_v_only(663, b"00"),
    )
    assert cx.decode_maa(raw)[1].ha1s == (MD5_HA1,)


@pytest.mark.parametrize(
    ("digest", "error"),
    [
        pytest.param([base.avp(121, MD5_HA1.ha1)], RequestError, id="no-realm"),
        pytest.param([base.avp(104, "example.com")], RequestError, id="no-ha1"),
        pytest.param([base.avp(104, "r"), base.avp(121, "0" * 31)], DecodeError, id="short-ha1"),
        pytest.param([base.avp(104, "r"), base.avp(121, "x" * 32)], DecodeError, id="not-hex"),
        pytest.param(
            [base.avp(104, "r"), base.avp(121, "0" * 32), tgpp_v_only(662, b"SHA-256"), tgpp_v_only(663, b"0" * 32)],
            DecodeError,
            id="alternate-of-md5-length",
        ),
        pytest.param(
            [base.avp(104, "r"), base.avp(121, "0" * 32), tgpp_v_only(662, b"SHA-256")],
            RequestError,
            id="alternate-algorithm-without-ha1",
        ),
        pytest.param(
            [base.avp(104, "r"), base.avp(121, "0" * 32), tgpp_v_only(663, b"0" * 64)],
            RequestError,
            id="alternate-ha1-without-algorithm",
        ),
        pytest.param([Avp(104, TGPP, b"\xff", 0xC0), base.avp(121, "0" * 32)], RequestError, id="realm-not-utf8"),
    ],
)
def test_a_bad_sip_digest_authenticate_spoils_the_answer(digest: list[Avp], error: type[Exception]) -> None:
    with pytest.raises(error):
        cx.decode_maa(hss_maa(*digest))


def test_results_that_are_not_ours_to_read() -> None:
    etsi = base.avp_group(297, [base.avp(266, 13019), base.avp(298, 5001)])
    with pytest.raises(RequestError):  # neither Result-Code nor a 3GPP Experimental-Result
        cx.decode_maa(pd_maa([etsi]))
    both = cx.decode_maa(pd_maa([base.avp(268, 5012), etsi]))[1]
    assert (both.result_code, both.experimental_result) == (5012, None)


def test_items_of_other_schemes_and_ietf_612_are_not_read() -> None:
    aka = tgpp(612, [tgpp(608, "Digest-AKAv1-MD5"), tgpp(609, b"\0" * 32)])
    ietf = Avp(612, 0, b"junk", base.AVP_FLAG_MANDATORY)
    raw = pd_maa([base.avp(268, 2001), aka, ietf])
    assert cx.decode_maa(raw)[1] == MultimediaAuthAnswer(result_code=2001)


def test_session_avps_are_the_lean_ones() -> None:
    assert b"".join(a.as_bytes() for a in cx.session_avps()) == cx._SESSION_AVPS
