"""backend/verify: the proxy checks digests itself with HA1s from a (fake) source, our own
nonces, the replay guard and the HA1 cache, in the shared-tables contract's memory form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest, group, outcome, settings
from kamailio_auth_diameter.authorize import AuthContext
from kamailio_auth_diameter.backend.contract import Environment
from kamailio_auth_diameter.backend.ha1_source import FAILED, UNKNOWN, Fetched
from kamailio_auth_diameter.backend.shared import MemoryTables, TableError
from kamailio_auth_diameter.backend.verify import VerifyBackend, read_secret
from kamailio_auth_diameter.settings import SettingsError
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri

REALM = "example.com"
RURI = "sip:example.com"


def ha1s(password: str) -> dict[str, str]:
    return {a: digest.ha1("alice", REALM, password, a) for a in ("SHA-256", "MD5")}


class Source:
    """Answers fetches from ``users``, counting them."""

    def __init__(self) -> None:
        self.users: dict[str, Fetched] = {"alice": Fetched(ha1s("secret"))}
        self.fetches = 0
        self.fail = False

    def configure(self, s: settings.Settings, deadline: float) -> None:
        pass

    def close(self, deadline: float | None) -> None:
        pass

    def fetch(self, ctx: AuthContext, username: str, start: float) -> Fetched:
        self.fetches += 1
        return FAILED if self.fail else self.users.get(username, UNKNOWN)

    def is_user_in(self, ctx: object, group_name: str, start: float) -> int:
        return group.USER_IN


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(secret: str):
    clock = Clock()
    logs: list[str] = []
    source = Source()
    tables = MemoryTables(clock)
    env = Environment(clock=clock, log=logs.append)
    b = VerifyBackend(env, source, tables, clock)
    b.configure(
        settings.parse({"protocol": "rfc4740-ha1", "nonce_secret_file": secret, "digest_algorithms": "SHA-256,MD5"}),
        0.0,
    )
    return b, source, clock, logs


def challenge_params(o: outcome.Outcome) -> list[dict[str, str]]:
    return [dict(re.findall(r'(\w+)="?([^",]*)"?', line)) for line in o.header.strip().split("\r\n")]


def answer(
    o: outcome.Outcome,
    password: str = "secret",
    nc: int = 1,
    uri: str = RURI,
    algorithm: str | None = None,
    method: str = "REGISTER",
    qop: str | None = "auth",
) -> str:
    p = (
        challenge_params(o)[0]
        if algorithm is None
        else next(c for c in challenge_params(o) if c["algorithm"] == algorithm)
    )
    algorithm = p["algorithm"]
    d = digest.DigestInput(method, uri, p["nonce"], algorithm, qop or "", f"{nc:08x}" if qop else "", "cn0")
    response = digest.response(digest.ha1("alice", REALM, password, algorithm), d)
    tail = f', qop={qop}, nc={nc:08x}, cnonce="cn0"' if qop else ""
    return (
        f'Digest username="alice", realm="{REALM}", nonce="{p["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}{tail}'
    )


def ctx(cred: str | None = None, method: str = "REGISTER") -> AuthContext:
    return AuthContext(
        method=method,
        ruri=parse_uri(RURI),
        identity=parse_uri("sip:alice@example.com"),
        credentials=parse_credentials(cred) if cred else None,
        realm=REALM,
    )


def test_a_request_without_credentials_is_challenged_for_each_algorithm_without_asking(world) -> None:
    b, source, _, _ = world
    o = b.authorize(ctx(), False, 1, 0.0)
    assert (o.code, o.label, source.fetches) == (401, "challenged", 0)
    assert [c["algorithm"] for c in challenge_params(o)] == ["SHA-256", "MD5"]
    assert all(c["qop"] == "auth" and c["realm"] == REALM for c in challenge_params(o))
    assert b.authorize(ctx(), True, 1, 0.0).header.startswith("Proxy-Authenticate: Digest ")


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_a_correct_response_passes_and_the_next_one_needs_no_fetch(world, algorithm: str) -> None:
    b, source, _, _ = world
    first = b.authorize(ctx(), False, 1, 0.0)
    assert b.authorize(ctx(answer(first, algorithm=algorithm)), False, 2, 0.0) is outcome.PASS
    assert source.fetches == 1
    second = b.authorize(ctx(), False, 3, 0.0)
    assert b.authorize(ctx(answer(second, algorithm=algorithm)), False, 4, 0.0) is outcome.PASS
    assert source.fetches == 1


def test_a_replayed_nonce_count_is_refused_with_stale(world) -> None:
    b, _, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    cred = answer(c)
    assert b.authorize(ctx(cred), False, 2, 0.0) is outcome.PASS
    replay = b.authorize(ctx(cred), False, 3, 0.0)
    assert (replay.code, replay.label) == (401, "stale") and "stale=true" in replay.header
    assert "replayed" in replay.note
    assert b.authorize(ctx(answer(c, nc=2)), False, 4, 0.0) is outcome.PASS


def test_a_digest_uri_that_is_not_the_request_uri_is_refused_without_asking(world) -> None:
    b, source, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    o = b.authorize(ctx(answer(c, uri="sip:bob@example.com")), False, 2, 0.0)
    assert (o.code, o.label, source.fetches) == (401, "refused", 0)


def test_no_qop_is_refused(world) -> None:
    b, source, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    o = b.authorize(ctx(answer(c, qop=None)), False, 2, 0.0)
    assert (o.code, o.label, source.fetches) == (401, "refused", 0)


def test_an_expired_nonce_with_the_right_password_is_stale_and_a_wrong_one_is_not(world) -> None:
    b, _, clock, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    clock.now += 301
    stale = b.authorize(ctx(answer(c)), False, 2, 0.0)
    assert (stale.code, stale.label) == (401, "stale") and "stale=true" in stale.header
    wrong = b.authorize(ctx(answer(c, password="guess")), False, 3, 0.0)
    assert (wrong.code, wrong.label) == (401, "refused") and "stale" not in wrong.header
    assert b.authorize(ctx(answer(stale)), False, 4, 0.0) is outcome.PASS


def test_a_changed_password_takes_effect_on_the_next_request(world) -> None:
    b, source, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    assert b.authorize(ctx(answer(c)), False, 2, 0.0) is outcome.PASS
    source.users["alice"] = Fetched(ha1s("new"))
    c = b.authorize(ctx(), False, 3, 0.0)
    assert b.authorize(ctx(answer(c, password="new")), False, 4, 0.0) is outcome.PASS
    assert source.fetches == 2
    c = b.authorize(ctx(), False, 5, 0.0)
    old = b.authorize(ctx(answer(c)), False, 6, 0.0)
    assert (old.code, old.label, source.fetches) == (401, "refused", 3)


def test_an_unknown_user_is_403_and_dropped_from_the_cache(world) -> None:
    b, source, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    assert b.authorize(ctx(answer(c)), False, 2, 0.0) is outcome.PASS
    del source.users["alice"]
    c = b.authorize(ctx(), False, 3, 0.0)
    o = b.authorize(ctx(answer(c, password="other")), False, 4, 0.0)
    assert (o.code, o.label) == (403, "refused")
    c = b.authorize(ctx(), False, 5, 0.0)
    assert b.authorize(ctx(answer(c)), False, 6, 0.0).code == 403
    assert source.fetches == 3


def test_a_failed_fetch_is_500(world) -> None:
    b, source, _, _ = world
    source.fail = True
    c = b.authorize(ctx(), False, 1, 0.0)
    assert b.authorize(ctx(answer(c)), False, 2, 0.0) is outcome.SERVER_ERROR


def test_a_user_with_only_an_md5_ha1_is_challenged_for_md5_only(world) -> None:
    b, source, _, _ = world
    source.users["alice"] = Fetched({"MD5": ha1s("secret")["MD5"]})
    c = b.authorize(ctx(), False, 1, 0.0)
    o = b.authorize(ctx(answer(c, algorithm="SHA-256")), False, 2, 0.0)
    assert (o.code, [p["algorithm"] for p in challenge_params(o)]) == (401, ["MD5"])
    assert b.authorize(ctx(answer(o)), False, 3, 0.0) is outcome.PASS


def test_a_nonce_signed_with_another_secret_is_refused(world, tmp_path: Path) -> None:
    b, source, clock, _ = world
    other_path = tmp_path / "other.key"
    other_path.write_bytes(b"x" * 48)
    other_path.chmod(0o600)
    other = VerifyBackend(Environment(clock=clock, log=print), source, MemoryTables(clock), clock)
    other.configure(settings.parse({"protocol": "rfc4740-ha1", "nonce_secret_file": str(other_path)}), 0.0)
    c = other.authorize(ctx(), False, 1, 0.0)
    o = b.authorize(ctx(answer(c)), False, 2, 0.0)
    assert (o.code, o.label, source.fetches) == (401, "refused", 0)


def test_the_secret_file_is_required_long_and_private(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="nonce_secret_file: required"):
        read_secret("")
    with pytest.raises(SettingsError, match="cannot read"):
        read_secret(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_bytes(b"x" * 31)
    short.chmod(0o600)
    with pytest.raises(SettingsError, match="fewer than 32"):
        read_secret(str(short))
    short.write_bytes(b"x" * 32)
    short.chmod(0o644)
    with pytest.raises(SettingsError, match="every user"):
        read_secret(str(short))
    short.chmod(0o600)
    assert read_secret(str(short)) == b"x" * 32


def test_a_nonce_count_that_cannot_be_recorded_is_500_not_a_pass(world, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared memory full: accepting the response would let its replay through later."""
    b, _, _, logs = world

    def full(key: str, ident: str, nc: int, lifetime: int, claimed: bool) -> bool:
        raise TableError("htable 'authdia_nc' could not record a nonce-count (shared memory full?)")

    c = b.authorize(ctx(), False, 1, 0.0)
    monkeypatch.setattr(b._tables, "advance_nc", full)
    assert b.authorize(ctx(answer(c)), False, 2, 0.0) is outcome.SERVER_ERROR
    assert "could not record" in logs[-1]


def test_a_nonce_whose_slot_another_nonce_took_is_stale_never_accepted(world) -> None:
    """The replay guard is bounded: a newer nonce may take an older one's slot, and then
    the older one cannot be told used or unused, so it is refused as stale."""
    b, _, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    nonce = challenge_params(c)[0]["nonce"]
    b._tables.claim(f"s{nonce[12:16]}", "f" * 16, 60)  # as a later challenge landing on the same slot
    o = b.authorize(ctx(answer(c)), False, 2, 0.0)
    assert (o.code, o.label) == (401, "stale") and "stale=true" in o.header
    assert b.authorize(ctx(answer(o)), False, 3, 0.0) is outcome.PASS


def test_our_nonces_count_in_slots_and_the_table_stays_bounded(world) -> None:
    b, _, _, _ = world
    for i in range(300):
        c = b.authorize(ctx(), False, 2 * i, 0.0)
        assert b.authorize(ctx(answer(c)), False, 2 * i + 1, 0.0) is outcome.PASS
    keys = list(b._tables._nc)
    assert all(re.fullmatch(r"s[0-9a-f]{4}", k) for k in keys) and len(keys) <= 300


def test_a_nonce_of_another_kamailio_with_the_same_secret_is_accepted_once(world, secret: str) -> None:
    b, source, clock, _ = world
    other = VerifyBackend(Environment(clock=clock, log=print, instance="beef"), source, MemoryTables(clock), clock)
    other.configure(settings.parse({"protocol": "cx", "nonce_secret_file": secret}), 0.0)
    c = other.authorize(ctx(), False, 1, 0.0)
    cred = answer(c)
    assert b.authorize(ctx(cred), False, 2, 0.0) is outcome.PASS
    assert b.authorize(ctx(cred), False, 3, 0.0).label == "stale"
    assert b.authorize(ctx(answer(c, nc=2)), False, 4, 0.0) is outcome.PASS


def test_a_nonce_made_before_this_kamailio_started_is_stale_never_accepted(world, secret: str) -> None:
    """A restart empties the replay guard (shared memory), and this Kamailio's earlier
    nonces then look like another host's: none made before the start may count as a
    first use. The UA's retry with a fresh nonce passes."""
    _, source, clock, _ = world
    settled = settings.parse({"protocol": "cx", "nonce_secret_file": secret})
    before = VerifyBackend(Environment(clock=clock, log=print, instance="aaaa"), source, MemoryTables(clock), clock)
    before.configure(settled, 0.0)
    c = before.authorize(ctx(), False, 1, 0.0)
    assert before.authorize(ctx(answer(c)), False, 2, 0.0) is outcome.PASS
    clock.now += 1
    env = Environment(clock=clock, log=print, instance="bbbb", started=clock.now)
    after = VerifyBackend(env, source, MemoryTables(clock), clock)
    after.configure(settled, 0.0)
    replay = after.authorize(ctx(answer(c)), False, 3, 0.0)
    assert (replay.code, replay.label) == (401, "stale") and "stale=true" in replay.header
    assert after.authorize(ctx(answer(replay)), False, 4, 0.0) is outcome.PASS
    fresh = before.authorize(ctx(), False, 5, 0.0)  # another host's, made since: a first use here
    assert after.authorize(ctx(answer(fresh)), False, 6, 0.0) is outcome.PASS


def test_slots_are_taken_in_turn_so_a_fresh_nonce_keeps_its_own(world) -> None:
    """Many challenges between a challenge and its answer (other UAs) do not take its slot
    until SLOTS of them went out."""
    b, _, _, _ = world
    c = b.authorize(ctx(), False, 1, 0.0)
    slots = {challenge_params(b.authorize(ctx(), False, 2 + i, 0.0))[0]["nonce"][12:16] for i in range(2000)}
    assert len(slots) == 2000  # at random, 2,000 of 65,536 would almost surely repeat one
    assert b.authorize(ctx(answer(c)), False, 5000, 0.0) is outcome.PASS
