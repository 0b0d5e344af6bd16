"""server/store: users as HA1 only, groups, the persisted nonce secret, nonce counts and
failure counts; the file's permissions."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.server.store import SqliteStore, StoreError, UserHashes

PASSWORD = "Zq7-unique-passw0rd-xyzzy"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "auth.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(db))
    yield s
    s.close()


def test_add_user_stores_both_hashes(store: SqliteStore) -> None:
    """... and their SHA-256 twins (RFC 7616), for proxies given HA1 (--ha1-peer)."""
    store.add_user("alice", "example.com", PASSWORD)
    assert store.user_hashes("alice", "example.com") == UserHashes(
        ha1=digest.ha1("alice", "example.com", PASSWORD),
        ha1b=digest.ha1("alice@example.com", "example.com", PASSWORD),
        ha1_sha256=digest.ha1("alice", "example.com", PASSWORD, "SHA-256"),
        ha1b_sha256=digest.ha1("alice@example.com", "example.com", PASSWORD, "SHA-256"),
    )


def test_password_never_reaches_the_file(store: SqliteStore, db: Path) -> None:
    store.add_user("alice", "example.com", PASSWORD)
    store.add_user("alice", "example.com", PASSWORD + "2")  # replace: the old row must not linger in clear either
    store.close()
    data = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))
    assert b"alice" in data  # the file really holds the user
    assert PASSWORD.encode() not in data
    assert digest.ha1("alice", "example.com", PASSWORD + "2").encode() in data


def test_lookup_is_exact(store: SqliteStore) -> None:
    store.add_user("alice", "example.com", PASSWORD)
    assert store.user_hashes("alice", "other.com") is None
    assert store.user_hashes("bob", "example.com") is None
    assert store.user_hashes("Alice", "example.com") is None
    assert store.user_hashes("alice@example.com", "example.com") is None


def test_add_replaces_password(store: SqliteStore) -> None:
    store.add_user("alice", "example.com", "one")
    store.add_user("alice", "example.com", "two")
    hashes = store.user_hashes("alice", "example.com")
    assert hashes is not None
    assert hashes.ha1 == digest.ha1("alice", "example.com", "two")
    assert hashes.ha1b_sha256 == digest.ha1("alice@example.com", "example.com", "two", "SHA-256")
    assert store.users() == [("alice", "example.com")]


def test_list_and_delete_users(store: SqliteStore) -> None:
    store.add_user("bob", "b.org", "pw")
    store.add_user("alice", "b.org", "pw")
    store.add_user("zed", "a.org", "pw")
    assert store.users() == [("zed", "a.org"), ("alice", "b.org"), ("bob", "b.org")]
    store.delete_user("alice", "b.org")
    assert store.users() == [("zed", "a.org"), ("bob", "b.org")]
    assert store.user_hashes("alice", "b.org") is None


def test_delete_unknown_user_raises(store: SqliteStore) -> None:
    with pytest.raises(StoreError):
        store.delete_user("nobody", "example.com")


@pytest.mark.parametrize(
    ("username", "realm"),
    [
        ("", "example.com"),
        ("alice", ""),
        ("alice@example.com", "example.com"),
        ("sip:alice", "example.com"),
        (" alice", "example.com"),
        ("alice ", "example.com"),
        ('al"ice', "example.com"),
        ("al\nice", "example.com"),
        ("al\rice", "example.com"),
        ("al\0ice", "example.com"),
        ("alice", " example.com"),
        ("alice", 'exa"mple.com'),
        ("alice", "example.com\r\n"),
        ("alice", "exa\0mple.com"),
    ],
)
def test_bad_user_names_rejected(store: SqliteStore, username: str, realm: str) -> None:
    with pytest.raises(StoreError):
        store.add_user(username, realm, "pw")
    assert store.users() == []


def test_add_user_hashes_keeps_a_user_unless_told_to_replace(store: SqliteStore) -> None:
    """user import: hashes given as they are (hex in lower case, realm in lower case);
    a user already there is not overwritten unless asked."""
    one = UserHashes(digest.ha1("alice", "example.com", "one"), digest.ha1("alice@example.com", "example.com", "one"))
    two = UserHashes(digest.ha1("alice", "example.com", "two"), digest.ha1("alice@example.com", "example.com", "two"))
    assert store.add_user_hashes("alice", "Example.com", one.ha1.upper(), one.ha1b, replace=False)
    assert store.user_hashes("alice", "example.com") == one
    assert not store.add_user_hashes("alice", "example.com", two.ha1, two.ha1b, replace=False)
    assert store.user_hashes("alice", "example.com") == one
    assert store.add_user_hashes("alice", "example.com", two.ha1, two.ha1b, replace=True)
    assert store.user_hashes("alice", "example.com") == two
    store.add_user("carol", "example.com", "old")  # SHA-256 hashes of the old password must not outlive it
    assert store.add_user_hashes("carol", "example.com", two.ha1, two.ha1b, replace=True)
    hashes = store.user_hashes("carol", "example.com")
    assert hashes is not None and (hashes.ha1_sha256, hashes.ha1b_sha256) == (None, None)
    store.delete_user("carol", "example.com")
    for bad in ("", "0" * 31, "0" * 64, "g" * 32):
        with pytest.raises(StoreError, match="is not an MD5 hash"):
            store.add_user_hashes("bob", "example.com", bad, two.ha1b, replace=False)
    with pytest.raises(StoreError, match="must be the user part only"):
        store.add_user_hashes("bob@example.com", "example.com", two.ha1, two.ha1b, replace=False)
    assert store.users() == [("alice", "example.com")]


def test_a_transaction_takes_effect_whole_or_not_at_all(store: SqliteStore) -> None:
    with store.transaction():
        store.add_user("alice", "example.com", "pw")
        store.add_user("bob", "example.com", "pw")
    with pytest.raises(StoreError), store.transaction():
        store.add_user("carol", "example.com", "pw")
        store.delete_user("alice", "example.com")
        store.add_user("dave", "example.com", "")
    assert store.users() == [("alice", "example.com"), ("bob", "example.com")]


def test_empty_password_rejected(store: SqliteStore) -> None:
    with pytest.raises(StoreError):
        store.add_user("alice", "example.com", "")


def test_groups(store: SqliteStore) -> None:
    store.add_group("alice", "voicemail")
    store.add_group("alice@example.com", "voicemail")
    store.add_group("alice", "voicemail")  # idempotent
    store.add_group("bob", "admins")
    assert store.in_group("alice", "voicemail")
    assert store.in_group("alice@example.com", "voicemail")
    assert not store.in_group("alice", "admins")
    assert not store.in_group("Alice", "voicemail")
    assert store.groups() == [("bob", "admins"), ("alice", "voicemail"), ("alice@example.com", "voicemail")]
    store.delete_group("alice", "voicemail")
    assert not store.in_group("alice", "voicemail")
    with pytest.raises(StoreError):
        store.delete_group("alice", "voicemail")


def test_user_groups_for_the_group_check(store: SqliteStore) -> None:
    store.add_user("alice", "example.com", PASSWORD)
    store.add_user("bob", "example.com", PASSWORD)
    store.add_group("alice", "voicemail")
    store.add_group("alice", "admins")
    store.add_group("alice@example.com", "intl")
    store.add_group("example.com", "domain-wide")  # use_domain without a user part
    assert store.user_groups("alice") == ["admins", "voicemail"]
    assert store.user_groups("alice@example.com") == ["intl"]
    assert store.user_groups("example.com") == ["domain-wide"]
    assert store.user_groups("bob") == []
    assert store.user_groups("bob@example.com") == []
    assert store.user_groups("bob@other.org") is None
    assert store.user_groups("mallory") is None


@pytest.mark.parametrize(("name", "grp"), [("", "g"), ("a", ""), (" a", "g"), ("a", "g\n"), ('a"', "g"), ("a\0", "g")])
def test_bad_group_names_rejected(store: SqliteStore, name: str, grp: str) -> None:
    with pytest.raises(StoreError):
        store.add_group(name, grp)
    assert store.groups() == []


def test_nonce_secret_is_stable_and_persisted(db: Path) -> None:
    first = SqliteStore(str(db))
    secret = first.nonce_secret()
    assert len(secret) >= 16
    assert first.nonce_secret() == secret
    first.close()
    second = SqliteStore(str(db))
    assert second.nonce_secret() == secret
    second.close()


def test_nonce_secret_differs_between_databases(tmp_path: Path) -> None:
    a = SqliteStore(str(tmp_path / "a.sqlite"))
    b = SqliteStore(str(tmp_path / "b.sqlite"))
    assert a.nonce_secret() != b.nonce_secret()
    a.close()
    b.close()


def test_users_persist_across_opens(db: Path) -> None:
    s = SqliteStore(str(db))
    s.add_user("alice", "example.com", PASSWORD)
    s.add_group("alice", "g")
    s.close()
    s = SqliteStore(str(db))
    assert s.users() == [("alice", "example.com")]
    assert s.in_group("alice", "g")
    s.close()


def test_unopenable_database_is_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        SqliteStore(str(tmp_path / "missing-dir" / "x.sqlite"))


def test_not_a_database_is_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not an sqlite file" * 100)
    with pytest.raises(StoreError):
        SqliteStore(str(path))


def test_new_database_is_private(tmp_path: Path) -> None:
    """It holds password equivalents and the nonce secret: 0600, whatever the umask (it
    was created -rw-r--r--), and its WAL files follow the database's mode."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "new.sqlite"
        store = SqliteStore(str(path), server=True)
        store.add_user("alice", "example.com", "pw")
        assert store.use_nonce("n" * 48, 1, 2_000_000_000)
        for p in tmp_path.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        store.close()
    finally:
        os.umask(old)


def test_world_readable_database_is_refused(db: Path) -> None:
    SqliteStore(str(db)).close()
    db.chmod(0o644)
    with pytest.raises(StoreError, match=rf"database {db} is accessible to every user .* chmod 600 {db}"):
        SqliteStore(str(db))


def test_group_readable_database_is_a_warning(db: Path) -> None:
    SqliteStore(str(db)).close()
    db.chmod(0o640)
    store = SqliteStore(str(db))
    assert store.warning and "accessible to its group (mode 0640)" in store.warning
    store.close()
    db.chmod(0o600)
    store = SqliteStore(str(db))
    assert store.warning is None
    store.close()


def test_realms_are_stored_in_lower_case(store: SqliteStore) -> None:
    store.add_user("alice", "Example.COM", PASSWORD)
    assert store.users() == [("alice", "example.com")]
    hashes = store.user_hashes("alice", "EXAMPLE.com")
    assert hashes is not None and hashes.ha1 == digest.ha1("alice", "example.com", PASSWORD)
    store.add_group("alice@Example.COM", "voicemail")
    assert store.in_group("alice@example.COM", "voicemail")
    store.delete_user("alice", "EXAMPLE.COM")
    assert store.users() == []


def test_nonce_counts_must_grow(store: SqliteStore) -> None:
    assert store.use_nonce("a" * 48, 1, 100)
    assert not store.use_nonce("a" * 48, 1, 100)
    assert store.use_nonce("a" * 48, 7, 100)
    assert not store.use_nonce("a" * 48, 3, 100)
    assert store.use_nonce("b" * 48, 1, 100)


def test_failures_count_up_and_are_forgotten(store: SqliteStore) -> None:
    store.add_user("alice", "example.com", PASSWORD)
    assert [store.record_failure("alice", "example.com", 1000.0 + i, 0.0) for i in range(3)] == [1, 2, 3]
    store.block("alice", "example.com", 1010.0)
    hashes = store.user_hashes("alice", "example.com")
    assert hashes is not None and (hashes.failures, hashes.blocked_until) == (3, 1010.0)
    assert store.record_failure("alice", "example.com", 5000.0, 4000.0) == 1  # the last one was before 4000
    store.clear_failures("alice", "example.com")
    hashes = store.user_hashes("alice", "example.com")
    assert hashes is not None and (hashes.failures, hashes.blocked_until) == (0, 0.0)


def test_a_copy_of_the_request_that_used_a_count_may_use_it_again(store: SqliteStore) -> None:
    """A relay's re-sent copy (T flag) of a request whose server recorded the count and
    died before answering: the same Origin-Host and end-to-end id, so no replay."""
    assert store.use_nonce("c" * 48, 1, 100, "w1.k.example.com;77")
    assert store.use_nonce("c" * 48, 1, 100, "w1.k.example.com;77", copy=True)
    assert not store.use_nonce("c" * 48, 1, 100, "w1.k.example.com;77")  # not marked a copy
    assert not store.use_nonce("c" * 48, 1, 100, "w2.k.example.com;77", copy=True)  # another request
    assert not store.use_nonce("c" * 48, 1, 100, "", copy=True)


OLD_USERS = """CREATE TABLE users (
    username TEXT NOT NULL,
    realm    TEXT NOT NULL,
    ha1      TEXT NOT NULL,
    ha1b     TEXT NOT NULL,
    PRIMARY KEY (username, realm)
)"""


def test_a_database_from_before_sha_256_is_given_the_columns(db: Path) -> None:
    """A file made by an earlier release (users without the SHA-256 columns): opened, it
    gains them; its users keep working, with MD5 only, and a new password brings both."""
    old = sqlite3.connect(db)
    old.execute(OLD_USERS)
    md5 = (digest.ha1("alice", "example.com", "pw"), digest.ha1("alice@example.com", "example.com", "pw"))
    old.execute("INSERT INTO users VALUES ('alice', 'example.com', ?, ?)", md5)
    old.commit()
    old.close()
    os.chmod(db, 0o600)
    s = SqliteStore(str(db), server=True)
    assert s.user_hashes("alice", "example.com") == UserHashes(*md5)
    s.add_user("bob", "example.com", "pw")
    hashes = s.user_hashes("bob", "example.com")
    assert hashes is not None and hashes.ha1_sha256 == digest.ha1("bob", "example.com", "pw", "SHA-256")
    s.close()
    again = SqliteStore(str(db))  # a second open finds nothing to add
    assert [row[1] for row in again._db.execute("PRAGMA table_info(users)")] == [
        "username",
        "realm",
        "ha1",
        "ha1b",
        "ha1_sha256",
        "ha1b_sha256",
    ]
    again.close()
