"""server/auth: LegacyAuthority's verdicts, as DISC's sipauth module gave them (§9)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.auth import LegacyAuthority, Verdict
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy

REALM = "example.com"
PASSWORD = "s3cret"
CHALLENGE_RE = re.compile(rb'Digest realm="([^"]*)", nonce="([0-9a-f]{48})", qop="auth"(, stale=true)?\r\n')


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "auth.sqlite"))
    s.add_user("alice", REALM, PASSWORD)
    s.add_group("alice", "8-group")
    s.add_group("alice@example.com", "voicemail")
    yield s
    s.close()


@pytest.fixture
def nonces(store: SqliteStore, clock: Clock) -> NonceFactory:
    return NonceFactory(store.nonce_secret(), lifetime=300, clock=clock)


@pytest.fixture
def authority(store: SqliteStore, nonces: NonceFactory) -> LegacyAuthority:
    return LegacyAuthority(store, nonces)


def request(body: str | None = None, method: str = "REGISTER", identity: str = "sip:alice@example.com") -> bytes:
    cred = None
    if body is not None:
        cred = parse_credentials(body)
        assert cred is not None
    return legacy.encode_auth_request(parse_uri("sip:example.com"), parse_uri(identity), 1, cred, method)


def decide(authority: LegacyAuthority, raw: bytes) -> Verdict:
    return authority.decide(legacy.decode_message(raw))


def challenge_nonce(v: Verdict) -> str:
    assert v.result_code == 4001
    assert v.challenge is not None
    m = CHALLENGE_RE.fullmatch(v.challenge)
    assert m, v.challenge
    return m.group(2).decode()


def credentials(
    nonce: str,
    username: str = "alice",
    password: str = PASSWORD,
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    realm: str = REALM,
    algorithm: str | None = None,
    qop: str | None = "auth",
) -> str:
    d = digest.DigestInput(
        method=method,
        uri=uri,
        nonce=nonce,
        algorithm=algorithm or "MD5",
        qop=qop or "",
        nc="00000001" if qop else "",
        cnonce="c0ffee" if qop else "",
    )
    resp = digest.response(digest.ha1(username, realm, password, algorithm or "MD5"), d)
    body = f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}"'
    if algorithm:
        body += f", algorithm={algorithm}"
    if qop:
        body += f', qop={qop}, nc=00000001, cnonce="c0ffee"'
    return body


def test_no_credentials_gives_4001_with_challenge(authority: LegacyAuthority) -> None:
    v = decide(authority, request())
    assert v.result_code == 4001
    assert v.challenge is not None
    m = CHALLENGE_RE.fullmatch(v.challenge)
    assert m
    assert m.group(1) == b"example.com"
    assert m.group(3) is None
    assert v.challenge.endswith(b'", qop="auth"\r\n')


def test_challenge_realm_is_destination_realm(authority: LegacyAuthority) -> None:
    v = decide(authority, request(identity="sip:alice@Other.Example:5060"))
    assert v.challenge is not None
    assert v.challenge.startswith(b'Digest realm="Other.Example", ')


@pytest.mark.parametrize("username", ["alice", "alice@example.com"])
def test_correct_response_is_2001(authority: LegacyAuthority, username: str) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce, username=username)))
    assert v.result_code == 2001
    assert v.challenge is None


def test_correct_response_without_qop_is_2001(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    assert decide(authority, request(credentials(nonce, qop=None))).result_code == 2001


def test_correct_response_md5_sess(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    body = credentials(nonce, algorithm="MD5-sess")
    # MD5-sess with the HA1 of MD5: the client side here computed H(HA1:nonce:cnonce) from the same HA1
    assert decide(authority, request(body)).result_code == 2001


def test_method_avp_is_used(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    body = credentials(nonce, method="INVITE")
    assert decide(authority, request(body, method="INVITE")).result_code == 2001
    v = decide(authority, request(body, method="REGISTER"))
    assert v.result_code == 4001


def test_wrong_password_gives_fresh_challenge(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce, password="wrong")))
    fresh = challenge_nonce(v)
    assert fresh != nonce
    assert v.challenge is not None
    assert b"stale" not in v.challenge


def test_unknown_user_is_5003(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce, username="mallory")))
    assert v.result_code == 5003
    assert v.challenge is None


def test_username_with_foreign_domain_is_5003(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce, username="alice@other.org")))
    assert v.result_code == 5003


def test_stale_nonce_gives_stale_true(authority: LegacyAuthority, clock: Clock) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    clock.now += 301
    v = decide(authority, request(credentials(nonce)))
    assert v.result_code == 4001
    assert v.challenge is not None
    m = CHALLENGE_RE.fullmatch(v.challenge)
    assert m
    assert m.group(3) == b", stale=true"
    assert m.group(2).decode() != nonce


def test_stale_wrong_password_is_still_stale(authority: LegacyAuthority, clock: Clock) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    clock.now += 301
    v = decide(authority, request(credentials(nonce, password="wrong")))
    assert v.challenge is not None
    assert v.challenge.endswith(b", stale=true\r\n")


def test_foreign_nonce_gives_4001(authority: LegacyAuthority, clock: Clock) -> None:
    foreign = NonceFactory(b"some other secret, 32 bytes long", clock=clock).make(REALM)
    v = decide(authority, request(credentials(foreign)))
    assert challenge_nonce(v) != foreign
    assert v.challenge is not None
    assert b"stale" not in v.challenge


@pytest.mark.parametrize("nonce", ["", "abc", "0" * 40, "g" * 48])
def test_garbage_nonce_gives_4001(authority: LegacyAuthority, nonce: str) -> None:
    assert decide(authority, request(credentials(nonce))).result_code == 4001


def test_nonce_for_another_realm_gives_4001(authority: LegacyAuthority, nonces: NonceFactory) -> None:
    v = decide(authority, request(credentials(nonces.make("other.org"))))
    assert v.result_code == 4001


def test_unsupported_qop_gives_4001(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    assert decide(authority, request(credentials(nonce, qop="auth-int"))).result_code == 4001


def test_unsupported_algorithm_gives_4001(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    body = credentials(nonce).replace(", qop=auth", ", algorithm=SHA-1, qop=auth")
    assert decide(authority, request(body)).result_code == 4001


def test_malformed_response_avp_gives_challenge(authority: LegacyAuthority) -> None:
    base = legacy.decode_message(request())
    for data in (b'Digest username="x', b"\xff\xfe", b"Basic abc"):
        msg = legacy.Message(True, 265, 0, 0, (*base.avps, (401, 0, data), (403, 0, b"REGISTER")))
        assert challenge_nonce(authority.decide(msg))


def test_group_member_2001(authority: LegacyAuthority) -> None:
    raw = legacy.encode_group_request("example.com", 1, "8-group", b"alice")
    assert decide(authority, raw).result_code == 2001


def test_group_non_member_4001(authority: LegacyAuthority) -> None:
    raw = legacy.encode_group_request("example.com", 1, "voicemail", b"alice")
    v = decide(authority, raw)
    assert v.result_code == 4001
    assert v.challenge is None


def test_group_trailing_nul_in_user_name_ignored(authority: LegacyAuthority) -> None:
    raw = legacy.encode_group_request("example.com", 1, "voicemail", b"alice@example.com\0")
    assert decide(authority, raw).result_code == 2001


def test_group_is_literal_and_exact(authority: LegacyAuthority) -> None:
    for grp in ("8-GROUP", "8-group ", "$fU"):
        assert decide(authority, legacy.encode_group_request("r", 1, grp, b"alice")).result_code == 4001


@pytest.mark.parametrize("service", [b"9", b"7", b"x"])
def test_unsupported_service_is_5012(authority: LegacyAuthority, service: bytes) -> None:
    msg = legacy.Message(True, 265, 0, 0, ((404, 0, service), (406, 0, b"\x01\0\0\0"), (1, 0, b"alice")))
    v = authority.decide(msg)
    assert v.result_code == 5012
    assert v.challenge is None


def test_missing_service_is_5012(authority: LegacyAuthority) -> None:
    assert authority.decide(legacy.Message(True, 265, 0, 0, ((406, 0, b"\x01\0\0\0"),))).result_code == 5012


@pytest.mark.parametrize(
    "realm", [b'exa"mple.com', b'example.com", stale=true', b"exa mple.com", b"example.com\r\nX: y", b"", b"ex\0am"]
)
def test_unsafe_destination_realm_is_5012(authority: LegacyAuthority, realm: bytes) -> None:
    base = legacy.decode_message(request())
    avps = tuple((c, v, realm if c == 283 else d) for c, v, d in base.avps)
    v = authority.decide(legacy.Message(True, 265, 0, 0, avps))
    assert v.result_code == 5012
    assert v.challenge is None


def test_missing_destination_realm_is_5012(authority: LegacyAuthority) -> None:
    base = legacy.decode_message(request())
    avps = tuple(a for a in base.avps if a[0] != 283)
    assert authority.decide(legacy.Message(True, 265, 0, 0, avps)).result_code == 5012
