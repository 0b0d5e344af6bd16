"""server/auth: the digest checks both dialects share (replay, qop, nc, uri, throttling),
LegacyAuthority's verdicts as DISC's sipauth module gave them (§9), and SipAuthority's
answers to the same guards."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clock

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.auth import DiameterRequest, DigestChecker, LegacyAuthority, SipAuthority, Verdict
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy, sip_app

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


def request(
    body: str | None = None,
    method: str = "REGISTER",
    identity: str = "sip:alice@example.com",
    ruri: str = "sip:example.com",
) -> bytes:
    cred = None
    if body is not None:
        cred = parse_credentials(body)
        assert cred is not None
    return legacy.encode_auth_request(parse_uri(ruri), parse_uri(identity), 1, cred, method)


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
    nc: str = "00000001",
) -> str:
    d = digest.DigestInput(
        method=method,
        uri=uri,
        nonce=nonce,
        algorithm=algorithm or "MD5",
        qop=qop or "",
        nc=nc if qop else "",
        cnonce="c0ffee" if qop else "",
    )
    resp = digest.response(digest.ha1(username, realm, password, algorithm or "MD5"), d)
    body = f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", response="{resp}"'
    if algorithm:
        body += f", algorithm={algorithm}"
    if qop:
        body += f', qop={qop}, nc={nc}, cnonce="c0ffee"'
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


def test_challenge_realm_is_destination_realm_in_lower_case(authority: LegacyAuthority) -> None:
    v = decide(authority, request(identity="sip:alice@Other.Example:5060"))
    assert v.challenge is not None
    assert v.challenge.startswith(b'Digest realm="other.example", ')


def test_mixed_case_domain_authenticates(authority: LegacyAuthority) -> None:
    """A UA registering as alice@Example.COM is challenged in realm example.com, which is
    what her HA1 was computed over, so the right password works (it was refused)."""
    nonce = challenge_nonce(decide(authority, request(identity="sip:alice@Example.COM")))
    v = decide(authority, request(credentials(nonce), identity="sip:alice@Example.COM"))
    assert v.result_code == 2001


@pytest.mark.parametrize("username", ["alice", "alice@example.com"])
def test_correct_response_is_2001(authority: LegacyAuthority, username: str) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce, username=username)))
    assert v.result_code == 2001
    assert v.challenge is None


def test_correct_response_without_qop_is_challenged(authority: LegacyAuthority) -> None:
    """qop="auth" was offered: a response without it (RFC 2069 style) has no nonce-count
    to guard against replay, so it gets a fresh challenge (it was accepted)."""
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce, qop=None)))
    assert v.result_code == 4001 and "no qop" in v.reason


def test_algorithm_not_offered_is_challenged(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    # MD5-sess can be computed from the MD5 HA1, but it was not offered
    v = decide(authority, request(credentials(nonce, algorithm="MD5-sess")))
    assert v.result_code == 4001 and "algorithm" in v.reason
    assert decide(authority, request(credentials(nonce, algorithm="md5"))).result_code == 2001


def test_replayed_response_is_refused_with_stale(authority: LegacyAuthority) -> None:
    """The same nonce with the same nc again: 4001 with stale=true (the digest is right, so
    a real UA retries with the new nonce without asking its user); it was 2001 each time."""
    nonce = challenge_nonce(decide(authority, request()))
    raw = request(credentials(nonce))
    assert decide(authority, raw).result_code == 2001
    again = decide(authority, raw)
    assert again.challenge is not None and again.challenge.endswith(b", stale=true\r\n")
    assert "replayed" in again.reason


def test_nonce_count_must_grow(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    assert decide(authority, request(credentials(nonce, nc="00000002"))).result_code == 2001
    assert decide(authority, request(credentials(nonce, nc="00000001"))).challenge is not None
    assert decide(authority, request(credentials(nonce, nc="00000002"))).challenge is not None
    assert decide(authority, request(credentials(nonce, nc="0000000A"))).result_code == 2001


def test_replay_is_seen_by_another_process_sharing_the_file(
    authority: LegacyAuthority, tmp_path: Path, clock: Clock
) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    raw = request(credentials(nonce))
    assert decide(authority, raw).result_code == 2001
    other_store = SqliteStore(str(tmp_path / "auth.sqlite"))
    other = LegacyAuthority(other_store, NonceFactory(other_store.nonce_secret(), clock=clock))
    assert b"stale=true" in (decide(other, raw).challenge or b"")
    other_store.close()


@pytest.mark.parametrize("nc", ["zzzz", "0001", "000000001", "00000000", "0000000g", ""])
def test_malformed_nonce_count_is_challenged(authority: LegacyAuthority, nc: str) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    body = credentials(nonce, nc="00000001").replace("nc=00000001", f"nc={nc}" if nc else "x=y")
    v = decide(authority, request(body))
    assert v.result_code == 4001 and "nonce-count" in v.reason


def test_missing_cnonce_is_challenged(authority: LegacyAuthority) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    v = decide(authority, request(credentials(nonce).replace('cnonce="c0ffee"', 'opaque="x"')))
    assert v.result_code == 4001 and "cnonce" in v.reason


@pytest.mark.parametrize(
    ("ruri", "uri", "ok"),
    [
        ("sip:bob@example.com", "sip:bob@example.com", True),
        ("sip:bob@example.com;transport=udp", "sip:bob@EXAMPLE.com;transport=udp", True),
        ("sip:bob@example.com:5080", "sip:bob@example.com:5080", True),
        ("sip:example.com:5080", "sip:example.com:5080", True),
        ("sip:bob@[2001:db8::1]:5062", "sip:bob@[2001:db8::1]:5062", True),
        ("tel:+4930123", "tel:+4930123", True),
        ("sip:bob@example.com", "sip:carol@example.com", False),
        ("sip:bob@example.com", "sip:bob@example.org", False),
        ("sip:bob@example.com:5080", "sip:bob@example.com", False),
        ("sip:example.com", "sip:bob@example.com", False),
        ("sip:bob@example.com", "*", False),
    ],
)
def test_digest_uri_must_be_the_request_uri(authority: LegacyAuthority, ruri: str, uri: str, ok: bool) -> None:
    """A captured INVITE replayed with another Request-URI (to call someone else) is
    refused: the digest uri is compared with the Resource the request carries."""
    nonce = challenge_nonce(decide(authority, request(method="INVITE", ruri=ruri)))
    v = decide(authority, request(credentials(nonce, method="INVITE", uri=uri), method="INVITE", ruri=ruri))
    assert (v.result_code == 2001) is ok, v.reason
    if not ok:
        assert "digest uri" in v.reason and v.challenge is not None


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


def test_stale_only_for_a_correct_response(authority: LegacyAuthority, clock: Clock) -> None:
    """RFC 7616 §3.3: stale=true says the digest was right, so a UA retries without asking
    its user. A wrong password with an expired nonce gets a plain challenge (it got stale)."""
    nonce = challenge_nonce(decide(authority, request()))
    clock.now += 301
    v = decide(authority, request(credentials(nonce, password="wrong")))
    assert v.challenge is not None
    assert b"stale" not in v.challenge and "wrong response" in v.reason


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


# --- brute-force throttling -----------------------------------------------------------


def guess(authority: LegacyAuthority, password: str) -> Verdict:
    nonce = challenge_nonce(decide(authority, request()))
    return decide(authority, request(credentials(nonce, password=password)))


def test_wrong_guesses_are_throttled_then_forgiven(
    authority: LegacyAuthority, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Five wrong responses are free; each one after blocks alice for a doubling delay,
    during which even her right password is answered as wrong (without being checked,
    so a guess made then cannot succeed). The block ends, and the right password works.
    Before: 300 wrong guesses took 0.06 s and the right one then succeeded at once."""
    for _ in range(5):
        assert guess(authority, "wrong").reason.startswith("wrong response")
    with caplog.at_level("WARNING"):
        assert guess(authority, "wrong").reason.startswith("wrong response")
    assert "throttling 'alice'@'example.com': 6 wrong responses in a row" in caplog.text
    blocked = guess(authority, PASSWORD)
    assert blocked.result_code == 4001 and blocked.challenge is not None and "throttled" in blocked.reason
    clock.now += 1.1
    assert guess(authority, PASSWORD).result_code == 2001
    for _ in range(6):
        guess(authority, "wrong")  # the count started again after the success: blocked at the 6th
    assert "throttled" in guess(authority, PASSWORD).reason


def test_a_long_guessing_run_blocks_for_at_most_a_minute(authority: LegacyAuthority, clock: Clock) -> None:
    for _ in range(40):
        clock.now += 61  # every guess lands after the block: counted, and the delay doubles to its ceiling
        guess(authority, "wrong")
    assert "throttled" in guess(authority, PASSWORD).reason
    clock.now += 60.5
    assert guess(authority, PASSWORD).result_code == 2001


def test_throttle_is_shared_by_processes_on_one_database(store: SqliteStore, tmp_path: Path, clock: Clock) -> None:
    """The count lives in the store: a guesser cannot spread guesses over server processes
    (or instances on one PostgreSQL) to dodge it."""
    one = LegacyAuthority(store, NonceFactory(store.nonce_secret(), clock=clock))
    other_store = SqliteStore(str(tmp_path / "auth.sqlite"))
    two = LegacyAuthority(other_store, NonceFactory(other_store.nonce_secret(), clock=clock))
    for i in range(6):
        guess(one if i % 2 else two, "wrong")
    assert "throttled" in guess(two, PASSWORD).reason
    assert "throttled" in guess(one, PASSWORD).reason
    other_store.close()


def test_unknown_users_are_not_throttled_but_can_be_hidden(store: SqliteStore, clock: Clock) -> None:
    nonces = NonceFactory(store.nonce_secret(), clock=clock)
    shown = LegacyAuthority(store, nonces)
    nonce = challenge_nonce(decide(shown, request()))
    assert decide(shown, request(credentials(nonce, username="mallory"))).result_code == 5003
    hidden = LegacyAuthority(store, nonces, hide_unknown_users=True)
    v = decide(hidden, request(credentials(nonce, username="mallory")))
    assert v.result_code == 4001 and v.challenge is not None and b"stale" not in v.challenge


def test_expired_counts_and_old_failures_are_purged(
    store: SqliteStore, authority: LegacyAuthority, clock: Clock
) -> None:
    nonce = challenge_nonce(decide(authority, request()))
    assert decide(authority, request(credentials(nonce))).result_code == 2001
    guess(authority, "wrong")
    assert store._rows("SELECT COUNT(*) FROM nonce_counts") == [(1,)]
    assert store._rows("SELECT COUNT(*) FROM auth_failures") == [(1,)]
    clock.now += 300 + 300 + 901  # past the nonce's expiry and its grace, and past forget_after
    guess(authority, "wrong")  # a request that sweeps: only its own new failure is left
    assert store._rows("SELECT COUNT(*) FROM nonce_counts") == [(0,)]
    assert store._rows("SELECT failures FROM auth_failures") == [(1,)]


# --- RFC 4740 (SipAuthority): the same guards ------------------------------------------


def mar(
    cred: sip_app.DigestResponse | None, method: str = "REGISTER", aor: str = "sip:alice@example.com"
) -> sip_app.MultimediaAuthRequest:
    return sip_app.MultimediaAuthRequest(
        session_id="k;1;1",
        origin_host="w1.kamailio.example.org",
        origin_realm="example.org",
        destination_realm="example.org",
        sip_aor=aor,
        sip_method=method,
        user_name=cred.username if cred else "alice@example.com",
        credentials=cred,
    )


def mar_credentials(
    nonce: str, username: str = "alice", method: str = "REGISTER", uri: str = "sip:example.com", nc: str = "00000001"
) -> sip_app.DigestResponse:
    d = digest.DigestInput(method=method, uri=uri, nonce=nonce, qop="auth", nc=nc, cnonce="abc")
    return sip_app.DigestResponse(
        username=username,
        realm=REALM,
        nonce=nonce,
        uri=uri,
        response=digest.response(digest.ha1(username, REALM, PASSWORD), d),
        cnonce="abc",
        qop="auth",
        nonce_count=nc,
        method=method,
    )


@pytest.fixture
def sip_authority(store: SqliteStore, nonces: NonceFactory) -> SipAuthority:
    store.add_user("mallory", REALM, PASSWORD)
    return SipAuthority(store, nonces)


def mar_nonce(authority: SipAuthority) -> str:
    answer = authority.multimedia_auth(mar(None))
    assert answer.challenge is not None
    return answer.challenge.nonce


def test_register_of_another_users_address_is_5033(sip_authority: SipAuthority) -> None:
    """mallory's own (valid) credentials in a REGISTER for alice's address: refused with
    IDENTITIES_DONT_MATCH, which the plugin answers 403 (it was 2006: call hijacking)."""
    nonce = mar_nonce(sip_authority)
    answer = sip_authority.multimedia_auth(mar(mar_credentials(nonce, username="mallory")))
    assert answer.result_code == 5033 and answer.challenge is None
    own = sip_authority.multimedia_auth(mar(mar_credentials(nonce, username="mallory"), aor="sip:mallory@Example.com"))
    assert own.result_code == 2006
    assert (
        sip_authority.multimedia_auth(
            mar(mar_credentials(nonce, username="alice@example.com", nc="00000002"))
        ).result_code
        == 2006
    )


def test_mar_replay_is_stale(sip_authority: SipAuthority) -> None:
    nonce = mar_nonce(sip_authority)
    request = mar(mar_credentials(nonce))
    assert sip_authority.multimedia_auth(request).result_code == 2006
    again = sip_authority.multimedia_auth(request)
    assert again.result_code == 2008 and again.challenge is not None and again.challenge.stale


def test_mar_digest_uri_must_name_the_request_uri(sip_authority: SipAuthority) -> None:
    """For requests other than REGISTER, SIP-AOR is the Request-URI (RFC 4740 §8.7)."""
    nonce = mar_nonce(sip_authority)
    bob = mar_credentials(nonce, method="INVITE", uri="sip:bob@example.com:5080;transport=udp")
    assert sip_authority.multimedia_auth(mar(bob, "INVITE", "sip:bob@example.com")).result_code == 2006
    carol = mar_credentials(nonce, method="INVITE", uri="sip:bob@example.com", nc="00000002")
    answer = sip_authority.multimedia_auth(mar(carol, "INVITE", "sip:carol@example.com"))
    assert answer.result_code == 2008 and answer.challenge is not None and not answer.challenge.stale


def test_mar_unknown_user_hidden_is_4001(store: SqliteStore, nonces: NonceFactory) -> None:
    hidden = SipAuthority(store, nonces, hide_unknown_users=True)
    nonce = mar_nonce(hidden)
    cred = mar_credentials(nonce, username="nobody")
    answer = hidden.multimedia_auth(mar(cred, aor="sip:nobody@example.com"))
    assert (answer.result_code, answer.error_message) == (4001, "authentication rejected")
    wrong = dataclasses.replace(mar_credentials(nonce), response="0" * 32)
    assert hidden.multimedia_auth(mar(wrong)).error_message == "authentication rejected"


def test_uri_check_can_be_turned_off(store: SqliteStore, nonces: NonceFactory) -> None:
    """For a front end that rewrites Request-URIs (at the cost of the replay protection above)."""
    authority = LegacyAuthority(store, nonces, checker=DigestChecker(store, nonces, check_uri=False))
    ruri = "sip:bob@example.com"
    nonce = challenge_nonce(decide(authority, request(method="INVITE", ruri=ruri)))
    body = credentials(nonce, method="INVITE", uri="sip:127.0.0.1:5060")
    assert decide(authority, request(body, method="INVITE", ruri=ruri)).result_code == 2001


def test_a_relays_copy_of_an_accepted_mar_is_accepted_again(sip_authority: SipAuthority) -> None:
    """freeDiameter re-sends the MARs a dead server left unanswered to another one, T flag
    set: if the dead one had recorded the count, that copy must not look like a replay
    (sipp lost flows in the relay's kill-under-load test). Another request with the same
    credentials still does."""
    nonce = mar_nonce(sip_authority)
    request = mar(mar_credentials(nonce))
    first = DiameterRequest("w1.kamailio.example.org;4242")
    assert sip_authority.multimedia_auth(request, first).result_code == 2006
    copy = DiameterRequest("w1.kamailio.example.org;4242", copy=True)
    assert sip_authority.multimedia_auth(request, copy).result_code == 2006
    for other in (DiameterRequest("w1.kamailio.example.org;4243", copy=True), first, None):
        answer = sip_authority.multimedia_auth(request, other)
        assert answer.result_code == 2008 and answer.challenge is not None and answer.challenge.stale
