"""wire/sip_app: RFC 4740 MAR/MAA and SAR/SAA, both directions, down to the AVP flags."""

from __future__ import annotations

import struct

import pytest
from diameter.message import Message

from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import DecodeError, Identity, RequestError
from kamailio_auth_diameter.wire.digest_avps import DigestHa1
from kamailio_auth_diameter.wire.sip_app import (
    DigestChallenge,
    DigestResponse,
    MultimediaAuthAnswer,
    MultimediaAuthRequest,
    ServerAssignmentAnswer,
    ServerAssignmentRequest,
    UserData,
)

ME = Identity("aaa.example.org", "example.org")

CREDENTIALS = DigestResponse(
    username="alice",
    realm="example.com",
    nonce="n" * 48,
    uri="sip:example.com",
    response="0123456789abcdef0123456789abcdef",
    algorithm="MD5",
    cnonce="c0ffee",
    qop="auth",
    nonce_count="00000001",
    method="REGISTER",
    opaque="op",
)
MAR = MultimediaAuthRequest(
    session_id="kamailio.example.org;1;2",
    origin_host="kamailio.example.org",
    origin_realm="example.org",
    destination_realm="example.org",
    sip_aor="sip:alice@example.com",
    sip_method="REGISTER",
    user_name="alice",
    server_uri="sip:kamailio.example.org",
    destination_host="aaa.example.org",
    credentials=CREDENTIALS,
)
SAR = ServerAssignmentRequest(
    session_id="kamailio.example.org;1;3",
    origin_host="kamailio.example.org",
    origin_realm="example.org",
    destination_realm="example.org",
    assignment_type=sip_app.ASSIGNMENT_NO_ASSIGNMENT,
    user_name="alice",
    supported_user_data_types=("groups",),
    sip_aors=("sip:alice@example.com",),
)


def lean(msg: Message) -> base.LeanMessage:
    """The server half reads lean messages; these tests build them with python-diameter."""
    return base.decode_lean(msg.as_bytes())


def tree(raw: bytes, start: int = 20, end: int | None = None) -> list[tuple[int, int, int, object]]:
    """(code, flags, vendor, payload or children) read independently of the codec."""
    out, pos, end = [], start, len(raw) if end is None else end
    while pos < end:
        code, flags_len = struct.unpack(">II", raw[pos : pos + 8])
        flags, length = flags_len >> 24, flags_len & 0xFFFFFF
        head = 12 if flags & 0x80 else 8
        vendor = struct.unpack(">I", raw[pos + 8 : pos + 12])[0] if head == 12 else 0
        data: object = raw[pos + head : pos + length]
        if code in sip_app.GROUPED:
            data = tree(raw, pos + head, pos + length)
        out.append((code, flags, vendor, data))
        pos += (length + 3) & ~3
    return out


def flatten(nodes: list[tuple[int, int, int, object]]) -> list[tuple[int, int, int]]:
    out = []
    for code, flags, vendor, data in nodes:
        out.append((code, flags, vendor))
        if isinstance(data, list):
            out += flatten(data)
    return out


def test_mar_round_trip() -> None:
    raw = sip_app.encode_mar(MAR, 0x10, 0x20)
    assert raw[4] == 0xC0  # R + P
    assert int.from_bytes(raw[5:8], "big") == 286
    assert int.from_bytes(raw[8:12], "big") == 6
    msg = base.decode(raw, sip_app.GROUPED)
    assert sip_app.decode_mar(lean(msg)) == MAR
    assert sip_app.encode_mar(MAR, 1, 2, retransmit=True)[4] == 0xD0  # T for a failover re-send


def test_mar_without_credentials_round_trip() -> None:
    plain = MultimediaAuthRequest("s;1;1", "k.example.org", "example.org", "example.org", "sip:bob@x.org", "INVITE")
    raw = sip_app.encode_mar(plain, 1, 2)
    assert [c for c, _, _, _ in tree(raw)] == [263, 258, 277, 264, 296, 283, 122, 393]
    assert sip_app.decode_mar(lean(base.decode(raw, sip_app.GROUPED))) == plain


def test_mar_avp_codes_flags_and_vendor() -> None:
    nodes = tree(sip_app.encode_mar(MAR, 1, 2))
    assert nodes[0][0] == 263  # Session-Id first
    flat = flatten(nodes)
    expected = {1, 122, 371, 376, 377, 380, 382, 393, 103, 104, 105, 108, 109, 110, 111, 113, 114, 115, 116}
    assert expected <= {c for c, _, _ in flat}
    # RFC 4740 §9 and the Digest-* AVPs: M set, V clear, so no Vendor-Id field
    assert all(flags == 0x40 and vendor == 0 for _, flags, vendor in flat)
    item = next(data for code, _, _, data in nodes if code == 376)
    assert isinstance(item, list)
    assert (item[0][0], item[0][3]) == (377, b"\0\0\0\0")  # DIGEST
    authorization = next(d for c, _, _, d in item if c == 380)
    assert isinstance(authorization, list)
    assert [c for c, _, _, _ in authorization] == [115, 104, 105, 109, 103, 111, 113, 116, 110, 114, 108]


def test_maa_round_trip_with_challenge() -> None:
    request = base.decode(sip_app.encode_mar(MAR, 0x10, 0x20), sip_app.GROUPED)
    challenge = DigestChallenge(realm="example.com", nonce="abc", stale=True, opaque="o", domain="sip:example.com")
    raw = sip_app.encode_maa(lean(request), ME, MultimediaAuthAnswer(1001, challenge))
    assert raw[4] == 0x40  # answer, P copied
    nodes = tree(raw)
    assert [c for c, _, _, _ in nodes] == [263, 268, 264, 296, 258, 277, 382, 376]
    flat = flatten(nodes)
    assert [c for c, _, _ in flat][-9:] == [377, 379, 104, 105, 119, 116, 120, 111, 110]
    assert all(flags == 0x40 and vendor == 0 for _, flags, vendor in flat)
    info, answer = sip_app.decode_maa(raw)
    assert (info.hop_by_hop, info.end_to_end, info.session_id) == (0x10, 0x20, MAR.session_id)
    assert (info.origin_host, info.origin_realm) == ("aaa.example.org", "example.org")
    assert answer == MultimediaAuthAnswer(1001, challenge)


def test_maa_success_and_error_message() -> None:
    request = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    assert sip_app.decode_maa(sip_app.encode_maa(lean(request), ME, MultimediaAuthAnswer(2001)))[
        1
    ] == MultimediaAuthAnswer(2001)
    answer = MultimediaAuthAnswer(5032, error_message="unknown user")
    assert sip_app.decode_maa(sip_app.encode_maa(lean(request), ME, answer))[1] == answer


MD5_HA1 = DigestHa1("MD5", "0123456789abcdef" * 2, "example.com", "auth")
SHA_HA1 = DigestHa1("SHA-256", "fedcba9876543210" * 4, "example.com", "auth")


def test_maa_with_ha1s_is_flow_b_one_numbered_item_per_algorithm() -> None:
    request = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    challenge = DigestChallenge(realm="example.com", nonce="n" * 48, algorithm="SHA-256")
    answer = MultimediaAuthAnswer(1001, challenge, ha1s=(SHA_HA1, MD5_HA1))
    raw = sip_app.encode_maa(lean(request), ME, answer)
    nodes = tree(raw)
    assert [c for c, _, _, _ in nodes] == [263, 268, 264, 296, 258, 277, 382, 376, 376]
    assert nodes[6][3] == (2).to_bytes(4, "big")  # SIP-Number-Auth-Items
    items = [d for c, _, _, d in nodes if c == 376]
    for number, item, h in zip((1, 2), items, (SHA_HA1, MD5_HA1), strict=True):
        assert isinstance(item, list)
        assert [(c, d) for c, _, _, d in item[:2]] == [(377, b"\0\0\0\0"), (378, number.to_bytes(4, "big"))]
        authenticate = item[2][3]
        assert isinstance(authenticate, list)
        assert [(c, d) for c, _, _, d in authenticate] == [
            (104, b"example.com"),
            (105, b"n" * 48),
            (111, h.algorithm.encode()),
            (110, b"auth"),
            (121, h.ha1.encode()),
        ]
    assert all(flags == 0x40 and vendor == 0 for _, flags, vendor in flatten(nodes))
    assert sip_app.decode_maa(raw)[1] == answer


def test_flow_b_answer_is_python_diameters_bytes() -> None:
    request = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    challenge = DigestChallenge(realm="example.com", nonce="n" * 48, opaque="o", algorithm="SHA-256")
    items = []
    for number, h in enumerate((SHA_HA1, MD5_HA1), 1):
        values = [(104, h.realm), (105, "n" * 48), (116, "o"), (111, h.algorithm), (110, h.qop), (121, h.ha1)]
        authenticate = base.avp_group(379, [base.avp(code, value) for code, value in values])
        items.append(base.avp_group(376, [base.avp(377, 0), base.avp(378, number), authenticate]))
    expected = base.encode_answer(request, ME, 2008, [*sip_app.session_avps(), base.avp(382, 2), *items])
    answer = MultimediaAuthAnswer(2008, challenge, ha1s=(SHA_HA1, MD5_HA1))
    assert sip_app.encode_maa(lean(request), ME, answer) == expected


def test_ha1s_need_a_challenge_to_travel_in() -> None:
    request = lean(base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED))
    with pytest.raises(ValueError, match="needs a challenge"):
        sip_app.encode_maa(request, ME, MultimediaAuthAnswer(2001, ha1s=(MD5_HA1,)))


def flow_b_maa(*authenticates: list[tuple[int, str]]) -> bytes:
    """An MAA from someone else's server: one SIP-Auth-Data-Item per list of Digest-* values."""
    request = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    items = [
        base.avp_group(376, [base.avp(377, 0), base.avp_group(379, [base.avp(c, v) for c, v in values])])
        for values in authenticates
    ]
    return base.encode_answer(request, ME, 1001, [*sip_app.session_avps(), *items])


def test_flow_b_decoding_normalises_and_defaults() -> None:
    raw = flow_b_maa(
        [(104, "example.com"), (105, "n1"), (121, "ABCDEF0123456789" * 2)],  # no algorithm, no qop
        [(104, "example.com"), (105, "n2")],  # Flow A's item: no HA1
        [(104, "example.com"), (105, "n3"), (111, "sha-256"), (110, "auth"), (121, "A" * 64)],
        [(104, "example.com"), (105, "n4"), (111, "SHA-512-256"), (121, "zz")],  # not ours to use: left out
        [(104, "example.com"), (105, "n5"), (111, "MD5-sess"), (121, "0" * 32)],
    )
    _, answer = sip_app.decode_maa(raw)
    assert answer.challenge == DigestChallenge("example.com", "n1", qop=None, algorithm=None)
    assert answer.ha1s == (
        DigestHa1("MD5", "abcdef0123456789" * 2, "example.com", "auth"),
        DigestHa1("SHA-256", "a" * 64, "example.com", "auth"),
    )


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([(111, "MD5"), (121, "0" * 31)], id="md5-short"),
        pytest.param([(111, "MD5"), (121, "0" * 64)], id="md5-with-a-sha-256-length"),
        pytest.param([(111, "SHA-256"), (121, "0" * 32)], id="sha-256-with-an-md5-length"),
        pytest.param([(121, "g" * 32)], id="not-hex"),
        pytest.param([(121, "0x" + "0" * 30)], id="hex-prefix"),
        pytest.param([(121, " " + "0" * 31)], id="space"),
    ],
)
def test_flow_b_ha1_that_is_not_its_algorithms_hex_is_a_decode_error(values: list[tuple[int, str]]) -> None:
    with pytest.raises(DecodeError, match=r"not (32|64) hex digits"):
        sip_app.decode_maa(flow_b_maa([(104, "example.com"), (105, "n"), *values]))


def test_flow_b_ha1_without_realm_is_a_bad_answer() -> None:
    with pytest.raises(RequestError):
        sip_app.decode_maa(flow_b_maa([(105, "n"), (121, "0" * 32)]))


def test_credentials_params_use_header_names() -> None:
    assert CREDENTIALS.params() == {
        "username": "alice",
        "realm": "example.com",
        "nonce": "n" * 48,
        "uri": "sip:example.com",
        "response": "0123456789abcdef0123456789abcdef",
        "algorithm": "MD5",
        "cnonce": "c0ffee",
        "qop": "auth",
        "nc": "00000001",
        "opaque": "op",
    }
    minimal = DigestResponse("a", "r", "n", "u", "x")
    assert set(minimal.params()) == {"username", "realm", "nonce", "uri", "response"}


def test_sar_saa_round_trip_and_groups() -> None:
    raw = sip_app.encode_sar(SAR, 5, 6)
    assert int.from_bytes(raw[5:8], "big") == 284
    request = base.decode(raw, sip_app.GROUPED)
    assert sip_app.decode_sar(lean(request)) == SAR
    data = sip_app.groups_user_data(["voicemail", "ünïcode"])
    assert data == UserData("groups", "voicemail\nünïcode\n".encode())
    saa = sip_app.encode_saa(lean(request), ME, ServerAssignmentAnswer(2001, (data,)))
    flat = flatten(tree(saa))
    assert [c for c, _, _ in flat][-3:] == [389, 390, 391]
    assert all(flags == 0x40 and vendor == 0 for _, flags, vendor in flat)
    info, answer = sip_app.decode_saa(saa)
    assert info.hop_by_hop == 5
    assert answer == ServerAssignmentAnswer(2001, (data,))
    assert sip_app.groups_of(answer.user_data) == ["voicemail", "ünïcode"]
    assert sip_app.groups_of([UserData("other", b"x")]) is None
    assert sip_app.groups_of([UserData("groups", b"")]) == []


def mar_without(code: int) -> Message:
    msg = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    return Message(msg.header, [a for a in msg.avps if a.code != code])


@pytest.mark.parametrize("code", [263, 258, 277, 264, 296, 283, 122, 393])
def test_mar_missing_mandatory_avp_is_5005(code: int) -> None:
    with pytest.raises(RequestError) as err:
        sip_app.decode_mar(lean(mar_without(code)))
    assert err.value.result_code == 5005
    assert err.value.failed_avp is not None and err.value.failed_avp.code == code


def with_item(members: list) -> Message:
    msg = mar_without(376)
    msg.avps.append(base.avp_group(376, members))
    return msg


def test_authorization_missing_digest_response_is_5005() -> None:
    authorization = base.avp_group(380, [base.avp(c, "x") for c in (115, 104, 105, 109)])
    with pytest.raises(RequestError) as err:
        sip_app.decode_mar(lean(with_item([base.avp(377, 0), authorization])))
    assert (err.value.result_code, err.value.failed_avp.code) == (5005, 103)  # type: ignore[union-attr]


def test_item_without_scheme_is_5005_other_scheme_5037() -> None:
    with pytest.raises(RequestError) as err:
        sip_app.decode_mar(lean(with_item([])))
    assert err.value.result_code == 5005
    with pytest.raises(RequestError) as err:
        sip_app.decode_mar(lean(with_item([base.avp(377, 1)])))
    assert err.value.result_code == 5037


def test_item_without_authorization_means_no_credentials() -> None:
    assert sip_app.decode_mar(lean(with_item([base.avp(377, 0)]))).credentials is None


def test_two_auth_data_items_are_5009() -> None:
    msg = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    msg.avps.append(base.avp_group(376, [base.avp(377, 0)]))
    with pytest.raises(RequestError) as err:
        sip_app.decode_mar(lean(msg))
    assert err.value.result_code == 5009


def test_non_utf8_method_is_5004() -> None:
    msg = mar_without(393)
    bad = base.avp(393, "x")
    bad.payload = b"\xff"
    msg.avps.append(bad)
    with pytest.raises(RequestError) as err:
        sip_app.decode_mar(lean(msg))
    assert err.value.result_code == 5004


def test_hostile_answers() -> None:
    request = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    raw = sip_app.encode_maa(lean(request), ME, MultimediaAuthAnswer(1001, DigestChallenge("r", "n")))
    with pytest.raises(DecodeError):
        sip_app.decode_maa(raw[:-4])
    with pytest.raises(DecodeError):
        sip_app.decode_maa(sip_app.encode_mar(MAR, 1, 2))  # a request is not an answer
    no_result = Message(request.header, [a for a in base.decode(raw, sip_app.GROUPED).avps if a.code != 268])
    no_result.header.is_request = False
    with pytest.raises(RequestError):
        sip_app.decode_maa(no_result.as_bytes())
    # a grouped AVP whose inner length lies: the stream is broken, not just the answer
    broken = bytearray(raw)
    pos = raw.index(bytes.fromhex("0000017b40"))  # SIP-Authenticate header
    broken[pos + 8 + 5 : pos + 8 + 8] = (999).to_bytes(3, "big")
    with pytest.raises(DecodeError):
        sip_app.decode_maa(bytes(broken))


# --- the lean codec's bytes are python-diameter's ------------------------------------


def _pd_request(command: int, retransmit: bool, avps: list) -> bytes:
    """The same request encoded by python-diameter, AVPs typed by its dictionary."""
    return base.encode(base.request_header(command, 6, 11, 22, proxiable=True, retransmit=retransmit), avps)


def _pd_head(origin: str, destination_host: str | None) -> list:
    out = [
        base.avp(263, "w1.k.example.com;1;2"),
        base.avp(258, 6),
        base.avp(277, 1),
        base.avp(264, origin.encode()),
        base.avp(296, b"example.com"),
        base.avp(283, b"aaa.example.com"),
    ]
    if destination_host is not None:
        out.append(base.avp(293, destination_host.encode()))
    return out


@pytest.mark.parametrize("with_credentials", [False, True])
@pytest.mark.parametrize("retransmit", [False, True])
def test_lean_mar_is_byte_identical_to_python_diameter(with_credentials: bool, retransmit: bool) -> None:
    cred = DigestResponse(
        "alice", "example.com", "n" * 47, "sip:example.com", "r" * 32, "MD5", "cn", "auth", "00000001", "INVITE", "op"
    )
    req = MultimediaAuthRequest(
        "w1.k.example.com;1;2",
        "w1.k.example.com",
        "example.com",
        "aaa.example.com",
        "sip:bob@example.com",
        "INVITE",
        user_name="alice",
        destination_host="aaa1.example.com",
        credentials=cred if with_credentials else None,
    )
    avps = _pd_head("w1.k.example.com", "aaa1.example.com")
    avps += [base.avp(122, "sip:bob@example.com"), base.avp(393, "INVITE"), base.avp(1, "alice")]
    if with_credentials:
        values = [
            (115, "alice"), (104, "example.com"), (105, "n" * 47), (109, "sip:example.com"), (103, "r" * 32),
            (111, "MD5"), (113, "cn"), (116, "op"), (110, "auth"), (114, "00000001"), (108, "INVITE"),
        ]  # fmt: skip
        authorization = base.avp_group(380, [base.avp(code, value) for code, value in values])
        avps += [base.avp(382, 1), base.avp_group(376, [base.avp(377, 0), authorization])]
    assert sip_app.encode_mar(req, 11, 22, retransmit) == _pd_request(286, retransmit, avps)


def test_lean_sar_is_byte_identical_to_python_diameter() -> None:
    req = ServerAssignmentRequest(
        "w1.k.example.com;1;2",
        "w1.k.example.com",
        "example.com",
        "aaa.example.com",
        0,
        user_name="alice@example.com",
        supported_user_data_types=("groups",),
        sip_aors=("sip:alice@example.com",),
    )
    avps = _pd_head("w1.k.example.com", None)
    avps += [base.avp(375, 0), base.avp(392, 0), base.avp(1, "alice@example.com"), base.avp(388, "groups")]
    avps.append(base.avp(122, "sip:alice@example.com"))
    assert sip_app.encode_sar(req, 11, 22) == _pd_request(284, False, avps)


def test_lean_decoder_skips_vendor_avps_and_checks_groups() -> None:
    msg = base.decode(sip_app.encode_mar(MAR, 1, 2), sip_app.GROUPED)
    answer = sip_app.encode_maa(
        lean(msg), Identity("aaa.example.com", "example.com"), sip_app.MultimediaAuthAnswer(2006)
    )
    vendor = struct.pack(">IBxxxI", 376, 0x80, 10415) + b"junk"  # 3GPP's own 376, not a SIP-Auth-Data-Item
    vendor = vendor[:5] + len(vendor).to_bytes(3, "big") + vendor[8:]
    raw = answer + vendor
    raw = raw[:1] + len(raw).to_bytes(3, "big") + raw[4:]
    info, maa = sip_app.decode_maa(raw)
    assert maa.result_code == 2006 and maa.challenge is None and info.origin_host == "aaa.example.com"
    overrun = struct.pack(">IB", 377, 0x40) + (16).to_bytes(3, "big") + b"\0\0\0\0"  # says 16, has 12
    broken = base.pack_avp(376, overrun)
    raw = answer + broken
    raw = raw[:1] + len(raw).to_bytes(3, "big") + raw[4:]
    with pytest.raises(base.DecodeError):
        sip_app.decode_maa(raw)


def test_lean_answers_are_byte_identical_to_python_diameter() -> None:
    proxy_info = base.avp_group(284, [base.avp(280, b"relay.example.com"), base.avp(33, b"state")])
    request = base.decode(sip_app.encode_mar(MAR, 7, 8), sip_app.GROUPED)
    request = base.decode(base.encode(request.header, [*request.avps, proxy_info]), sip_app.GROUPED)
    challenge = DigestChallenge("example.com", "n" * 48, opaque="o", stale=True, domain="sip:example.com")
    authenticate = base.avp_group(
        379,
        [
            base.avp(104, "example.com"), base.avp(105, "n" * 48), base.avp(119, "sip:example.com"),
            base.avp(116, "o"), base.avp(120, "true"), base.avp(111, "MD5"), base.avp(110, "auth"),
        ],
    )  # fmt: skip
    body = [*sip_app.session_avps(), base.avp(382, 1), base.avp_group(376, [base.avp(377, 0), authenticate])]
    expected = base.encode_answer(request, ME, 1001, body, error_message="try again")
    answer = MultimediaAuthAnswer(1001, challenge, error_message="try again")
    assert sip_app.encode_maa(lean(request), ME, answer) == expected
    groups = base.avp_group(389, [base.avp(390, "groups"), base.avp(391, b"voicemail\n")])
    sar = base.decode(sip_app.encode_sar(SAR, 9, 10), sip_app.GROUPED)
    expected = base.encode_answer(sar, ME, 2001, [*sip_app.session_avps(), groups])
    saa = ServerAssignmentAnswer(2001, (UserData("groups", b"voicemail\n"),))
    assert sip_app.encode_saa(lean(sar), ME, saa) == expected
