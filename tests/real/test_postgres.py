"""The PostgreSQL store with a PostgreSQL of the test's own: management through the CLI,
two reference-server processes sharing one database (nonces, users and groups
across them), and the database going away and coming back while they serve.

PostgreSQL is required here: when it cannot be started the fixture errors, it
never skips.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.server.store import UserHashes
from kamailio_auth_diameter.server.store_pg import PostgresStore
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy
from tests.harness import Postgres, ReferenceServer, server_cli
from tests.unit import test_store as contract

REALM = "example.com"
NONCE_RE = re.compile(rb'nonce="([0-9a-f]+)"')


@pytest.fixture
def store(postgres: Postgres) -> Iterator[PostgresStore]:
    """A store on an emptied database: the tests below share one server."""
    s = PostgresStore(postgres.url)
    for user, realm in s.users():
        s.delete_user(user, realm)
    for name, group in s.groups():
        s.delete_group(name, group)
    s.purge(expired_before=2**40, forget_before=2**40)
    yield s
    s.close()


@pytest.mark.parametrize(
    "case",
    [
        contract.test_add_user_stores_both_hashes,
        contract.test_lookup_is_exact,
        contract.test_add_replaces_password,
        contract.test_add_user_hashes_keeps_a_user_unless_told_to_replace,
        contract.test_a_transaction_takes_effect_whole_or_not_at_all,
        contract.test_list_and_delete_users,
        contract.test_delete_unknown_user_raises,
        contract.test_empty_password_rejected,
        contract.test_groups,
        contract.test_user_groups_for_the_group_check,
        contract.test_realms_are_stored_in_lower_case,
        contract.test_nonce_counts_must_grow,
        contract.test_failures_count_up_and_are_forgotten,
        contract.test_a_copy_of_the_request_that_used_a_count_may_use_it_again,
    ],
    ids=lambda f: f.__name__,
)
def test_same_semantics_as_sqlite(store: PostgresStore, case: Callable[[PostgresStore], None]) -> None:
    case(store)


def test_a_database_from_before_sha_256_is_given_the_columns(postgres: Postgres) -> None:
    """A database whose users table an earlier release made: opening it adds the SHA-256
    columns (once, whoever opens it first), and its users keep working with MD5 only."""
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS before_sha256")
        admin.execute("CREATE DATABASE before_sha256")
    url = postgres.url.rsplit("/", 1)[0] + "/before_sha256"
    md5 = (digest.ha1("alice", REALM, "pw"), digest.ha1(f"alice@{REALM}", REALM, "pw"))
    with psycopg.connect(url, autocommit=True) as old:
        old.execute(contract.OLD_USERS)
        old.execute("INSERT INTO users VALUES ('alice', %s, %s, %s)", (REALM, *md5))
    a, b = PostgresStore(url), PostgresStore(url)
    assert a.user_hashes("alice", REALM) == UserHashes(*md5)
    b.add_user("bob", REALM, "pw")
    hashes = a.user_hashes("bob", REALM)
    assert hashes is not None and hashes.ha1b_sha256 == digest.ha1(f"bob@{REALM}", REALM, "pw", "SHA-256")
    a.close()
    b.close()


def test_nonce_secret_is_created_once_and_shared(postgres: Postgres) -> None:
    a, b = PostgresStore(postgres.url), PostgresStore(postgres.url)
    assert len(a.nonce_secret()) == 32
    assert a.nonce_secret() == b.nonce_secret()
    a.close()
    b.close()


def test_cli_manages_users_and_groups_with_sqlite_messages(
    postgres: Postgres, store: PostgresStore, tmp_path: Path
) -> None:
    def ok(*args: str, stdin: str | None = None) -> str:
        r = server_cli(postgres.url, *args, stdin=stdin)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def refused(*args: str, stdin: str | None = None) -> str:
        """Refused on PostgreSQL with the very message SQLite gives."""
        on_pg = server_cli(postgres.url, *args, stdin=stdin)
        on_sqlite = server_cli(tmp_path / "same.db", *args, stdin=stdin)
        assert on_pg.returncode == on_sqlite.returncode == 1
        assert on_pg.stderr == on_sqlite.stderr
        return on_pg.stderr

    ok("user", "add", "dave", REALM, stdin="pw1\n")
    ok("user", "add", "erin", REALM, "-", stdin="pw2\n")
    assert ok("user", "list") == f"dave\t{REALM}\nerin\t{REALM}\n"
    assert store.user_hashes("erin", REALM) == UserHashes(
        digest.ha1("erin", REALM, "pw2"),
        digest.ha1(f"erin@{REALM}", REALM, "pw2"),
        ha1_sha256=digest.ha1("erin", REALM, "pw2", "SHA-256"),
        ha1b_sha256=digest.ha1(f"erin@{REALM}", REALM, "pw2", "SHA-256"),
    )
    ok("user", "del", "dave", REALM)
    assert refused("user", "del", "dave", REALM) == f"error: no user 'dave' in realm '{REALM}'\n"
    assert "must be the user part only" in refused("user", "add", "dave@example.com", REALM, stdin="pw\n")
    ok("group", "add", "erin", "voicemail")
    assert ok("group", "list") == "erin\tvoicemail\n"
    ok("group", "del", "erin", "voicemail")
    assert refused("group", "del", "erin", "voicemail") == "error: 'erin' is not in group 'voicemail'\n"
    bad = server_cli("postgresql://postgres@127.0.0.1:1/nowhere", "user", "list")
    assert bad.returncode == 1 and bad.stderr.startswith("error: cannot open database postgresql://127.0.0.1:1/")


# --- two servers, one database ---------------------------------------------------------


class LegacyClient:
    """One persistent connection to a server's legacy listener, as a Kamailio worker keeps."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._msgid = 0

    def ask(self, raw_for_msgid: Callable[[int], bytes]) -> legacy.Answer:
        self._msgid += 1
        self._sock.sendall(raw_for_msgid(self._msgid))
        buf = b""
        while len(buf) < 4 or len(buf) < int.from_bytes(buf[1:4], "big"):
            chunk = self._sock.recv(65536)
            assert chunk, "the server closed the connection"
            buf += chunk
        answer = legacy.decode_answer(buf)
        assert answer.msgid == self._msgid
        return answer

    def challenge(self) -> str:
        answer = self.ask(lambda msgid: _auth_request(msgid, None))
        assert answer.result_code == 4001 and answer.challenge is not None
        m = NONCE_RE.search(answer.challenge)
        assert m
        return m.group(1).decode()

    def authenticate(self, user: str, password: str, nonce: str, nc: int = 1) -> int | None:
        return self.ask(lambda msgid: _auth_request(msgid, _credentials(user, password, nonce, nc))).result_code

    def replayed(self, user: str, password: str, nonce: str, nc: int = 1) -> bool:
        """Refused as a replay: 4001 with a stale=true challenge."""
        answer = self.ask(lambda msgid: _auth_request(msgid, _credentials(user, password, nonce, nc)))
        return answer.result_code == 4001 and answer.challenge is not None and b"stale=true" in answer.challenge

    def in_group(self, user: str, group: str) -> int | None:
        return self.ask(lambda msgid: legacy.encode_group_request(REALM, msgid, group, user.encode())).result_code

    def close(self) -> None:
        self._sock.close()


def _credentials(user: str, password: str, nonce: str, nc: int = 1) -> str:
    d = digest.DigestInput(
        method="REGISTER", uri="sip:example.com", nonce=nonce, qop="auth", nc=f"{nc:08x}", cnonce="c0ffee"
    )
    response = digest.response(digest.ha1(user, REALM, password), d)
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="sip:example.com", '
        f'response="{response}", qop=auth, nc={nc:08x}, cnonce="c0ffee"'
    )


def _auth_request(msgid: int, body: str | None) -> bytes:
    cred = parse_credentials(body) if body is not None else None
    identity = parse_uri("sip:alice@example.com")
    return legacy.encode_auth_request(parse_uri("sip:example.com"), identity, msgid, cred, "REGISTER")


@pytest.fixture(scope="module")
def servers(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ReferenceServer, ...]]:
    tmp = tmp_path_factory.mktemp("shared")
    a = ReferenceServer(db=postgres.url, log_path=tmp / "a.log", extra=("-v",))
    b = ReferenceServer(db=postgres.url, log_path=tmp / "b.log", extra=("-v",))
    a.add_user("alice", REALM, "secret")
    a.add_group("alice", "voicemail")
    a.start()
    try:
        b.start()
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_nonces_users_and_groups_are_shared(servers: tuple[ReferenceServer, ...]) -> None:
    a, b = (LegacyClient(s.port) for s in servers)
    assert a.authenticate("alice", "secret", b.challenge()) == 2001
    assert b.authenticate("alice", "secret", a.challenge()) == 2001
    assert b.authenticate("alice", "wrong", a.challenge()) == 4001
    assert a.in_group("alice", "voicemail") == b.in_group("alice", "voicemail") == 2001
    # a user and a group added while both serve: seen by both at once
    assert a.authenticate("frank", "pw", a.challenge()) == 5003
    servers[0].add_user("frank", REALM, "pw")
    servers[1].add_group("frank", "admins")
    assert b.authenticate("frank", "pw", a.challenge()) == 2001
    assert a.authenticate("frank", "pw", b.challenge()) == 2001
    assert a.in_group("frank", "admins") == b.in_group("frank", "admins") == 2001
    assert a.in_group("frank", "voicemail") == 4001
    a.close()
    b.close()


def test_replays_and_guesses_are_counted_across_instances(servers: tuple[ReferenceServer, ...]) -> None:
    """A response accepted by one instance is a replay for the other (4001 stale=true; it
    was 2001 on both), and wrong guesses spread over both instances throttle the user."""
    a, b = (LegacyClient(s.port) for s in servers)
    nonce = a.challenge()
    assert a.authenticate("alice", "secret", nonce) == 2001
    assert b.replayed("alice", "secret", nonce) and a.replayed("alice", "secret", nonce)
    assert b.authenticate("alice", "secret", nonce, nc=2) == 2001
    for i in range(6):
        assert (a if i % 2 else b).authenticate("alice", "wrong", a.challenge()) == 4001
    assert a.authenticate("alice", "secret", b.challenge()) == 4001  # throttled: not even checked
    assert (
        "throttling 'alice'@'example.com'"
        in Path(servers[0].log_path).read_text() + Path(servers[1].log_path).read_text()
    )
    time.sleep(1.1)
    assert b.authenticate("alice", "secret", a.challenge()) == 2001
    a.close()
    b.close()


def test_database_away_is_5012_then_recovers(postgres: Postgres, servers: tuple[ReferenceServer, ...]) -> None:
    a = LegacyClient(servers[0].port)
    nonce = a.challenge()
    nc = iter(range(1, 1000))
    assert a.authenticate("alice", "secret", nonce, next(nc)) == 2001
    postgres.stop()
    try:
        assert a.authenticate("alice", "secret", nonce, next(nc)) == 5012
        assert a.in_group("alice", "voicemail") == 5012
        assert a.challenge()  # needs no lookup: still served
    finally:
        postgres.start()
    deadline = time.monotonic() + 15
    while (code := a.authenticate("alice", "secret", nonce, next(nc))) != 2001 and time.monotonic() < deadline:
        assert code == 5012
        time.sleep(0.2)
    assert code == 2001  # on the same connection: neither it nor the server was harmed
    assert LegacyClient(servers[1].port).authenticate("alice", "secret", nonce, next(nc)) == 2001
    a.close()
    assert all(s.proc is not None and s.proc.poll() is None for s in servers)
    log = Path(servers[0].log_path).read_text()
    assert "store failed, answering 5012" in log and "Traceback" not in log
