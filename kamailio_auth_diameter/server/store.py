"""Users (as HA1, never a password), groups, the nonce secret and the state that
guards against replay and guessing, in SQLite or PostgreSQL.

Each user row keeps two hashes, like Kamailio's subscriber table: ``ha1`` for
UAs that send ``username="alice"`` and ``ha1b`` for ``username="alice@realm"``;
a user added with a password also has their SHA-256 twins (``ha1_sha256``,
``ha1b_sha256``, RFC 7616), which the server gives to proxies that check digests
themselves. Users imported by their MD5 hashes, and rows written before these
columns existed, have none (NULL): they get MD5 only. A database made before is
given the columns when it is opened (:data:`ADDED_COLUMNS`).
Realms are kept in lower case (a domain is case-insensitive, and HA1 is computed
over the realm string the challenge names, which is the lower-case one).
The nonce secret lives in the database so that every server instance sharing it
accepts the others' nonces; for the same reason so do the nonce counts (the last
``nc`` accepted for each nonce, so a replayed response is refused by whichever
instance it reaches) and the count of wrong responses per user (brute-force
throttling that a guesser cannot dodge by spreading guesses over instances).

:class:`SqlStore` holds everything both databases share: the schema, every
statement (written once, in the ``INSERT ... ON CONFLICT`` dialect that SQLite
>= 3.24 and PostgreSQL both speak, with ``?`` placeholders), the validation and its
error messages. A subclass only connects and runs a statement: :class:`SqliteStore`
here, :class:`~.store_pg.PostgresStore` in its own module so that the driver is
imported only when a ``postgresql://`` URL is used (:func:`open_store`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..digest import ha1
from ..secret_file import InsecureFile, check, create_private

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
    username TEXT NOT NULL,
    realm    TEXT NOT NULL,
    ha1      TEXT NOT NULL,
    ha1b     TEXT NOT NULL,
    ha1_sha256  TEXT,
    ha1b_sha256 TEXT,
    PRIMARY KEY (username, realm)
)""",
    """CREATE TABLE IF NOT EXISTS groups (
    name  TEXT NOT NULL,
    grp   TEXT NOT NULL,
    PRIMARY KEY (name, grp)
)""",
    """CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS nonce_counts (
    nonce      TEXT PRIMARY KEY,
    nc         BIGINT NOT NULL,
    expires    BIGINT NOT NULL,
    request_id TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS nonce_counts_expires ON nonce_counts (expires)",
    """CREATE TABLE IF NOT EXISTS auth_failures (
    username      TEXT NOT NULL,
    realm         TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    last_failure  DOUBLE PRECISION NOT NULL,
    blocked_until DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (username, realm)
)""",
)

# Columns a table gained after databases had been made without them: (table, column, type).
# Opening a database adds the ones it lacks (nullable: the rows it has keep working).
ADDED_COLUMNS = (("users", "ha1_sha256", "TEXT"), ("users", "ha1b_sha256", "TEXT"))

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
BUSY_TIMEOUT = 1.0  # seconds an SQLite statement waits for another process's write


class StoreError(Exception):
    """A management command cannot be carried out; the message says why."""


class StoreUnavailable(StoreError):
    """The database did not answer (down, unreachable, timed out): this request
    fails, a later one may succeed. The decisions answer 5012 for it."""


@dataclass(frozen=True, slots=True)
class UserHashes:
    """A user's hashes, and where the brute-force throttle stands for them."""

    ha1: str
    ha1b: str
    failures: int = 0  # wrong responses in a row
    blocked_until: float = 0.0  # wall-clock time before which responses are not checked
    ha1_sha256: str | None = None  # the SHA-256 twins; None for a user known by MD5 hashes only
    ha1b_sha256: str | None = None


def _member(name: str) -> str:
    """A group member's name with its domain (after '@') in lower case, as stored."""
    user, at, domain = name.partition("@")
    return f"{user}@{domain.lower()}" if at else name


def _check_name(what: str, value: str) -> str:
    if not value or any(c in value for c in '\r\n\0"') or value != value.strip():
        raise StoreError(f"{what} {value!r} is empty or has quotes, spaces around it or control characters")
    return value


def check_user(username: str, realm: str) -> tuple[str, str]:
    """The user's key as stored (the realm in lower case); StoreError if either part
    cannot be a user of ours. Shared by ``user add`` and ``user import``, so that an
    imported user is looked up exactly like an added one."""
    _check_name("username", username)
    realm = _check_name("realm", realm).lower()
    if "@" in username or ":" in username:
        raise StoreError(f"username {username!r} must be the user part only (no '@' or ':')")
    return username, realm


_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


def check_ha1(what: str, value: str) -> str:
    """An MD5 HA1 as 32 hex digits, returned in lower case: the response is computed
    over HA1's hex text, which the UA writes in lower case (RFC 2617 §3.1.3)."""
    if not _MD5_HEX.fullmatch(value):
        raise StoreError(f"{what} {value!r} is not an MD5 hash (32 hex digits)")
    return value.lower()


class SqlStore:
    """The store's meaning, whatever the database; subclasses provide :meth:`_rows` and :meth:`_count`."""

    where: str  # the database, for messages and the log: never a password
    warning: str | None = None  # something the operator should hear about at start-up

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query (``?`` placeholders); StoreUnavailable if the database fails."""
        raise NotImplementedError

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement (``?`` placeholders) and return its row count; StoreUnavailable if the database fails."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- server side ----------------------------------------------------------------

    def nonce_secret(self) -> bytes:
        """The shared nonce secret, created on first use. Two instances starting at
        once on an empty database both insert; ON CONFLICT keeps the first, and both
        read back the same one."""
        query = "SELECT value FROM meta WHERE key = 'nonce_secret'"
        rows = self._rows(query)
        if not rows:
            self._count(
                "INSERT INTO meta (key, value) VALUES ('nonce_secret', ?) ON CONFLICT (key) DO NOTHING",
                (os.urandom(32).hex(),),
            )
            rows = self._rows(query)
        return bytes.fromhex(rows[0][0])

    def user_hashes(self, username: str, realm: str) -> UserHashes | None:
        """One indexed read: the hashes and the user's throttle state together."""
        rows = self._rows(
            "SELECT u.ha1, u.ha1b, COALESCE(f.failures, 0), COALESCE(f.blocked_until, 0), u.ha1_sha256, u.ha1b_sha256"
            " FROM users u"
            " LEFT JOIN auth_failures f ON f.username = u.username AND f.realm = u.realm"
            " WHERE u.username = ? AND u.realm = ?",
            (username, realm.lower()),
        )
        return UserHashes(*rows[0]) if rows else None

    def use_nonce(self, nonce: str, nc: int, expires: int, request_id: str = "", copy: bool = False) -> bool:
        """Record that ``nonce`` was answered with nonce-count ``nc`` by the Diameter
        request ``request_id``; False if it was already answered with this count or a
        higher one (a replay). One atomic statement, so two instances racing with the
        same response cannot both win.

        ``copy``: the request is a re-sent copy (the T flag): it is no replay if its
        count was recorded by the very request it copies (same ``request_id``, Origin-Host
        and end-to-end id), which a server that died before answering may have done.
        """
        if self._count(
            "INSERT INTO nonce_counts (nonce, nc, expires, request_id) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (nonce) DO UPDATE SET nc = excluded.nc, request_id = excluded.request_id"
            " WHERE nonce_counts.nc < excluded.nc",
            (nonce, nc, expires, request_id),
        ):
            return True
        if not (copy and request_id):
            return False
        query = "SELECT 1 FROM nonce_counts WHERE nonce = ? AND nc = ? AND request_id = ?"
        return bool(self._rows(query, (nonce, nc, request_id)))

    def record_failure(self, username: str, realm: str, now: float, forget_before: float) -> int:
        """Count one more wrong response for the user and return the count; a count
        whose last failure is older than ``forget_before`` starts again at 1."""
        rows = self._rows(
            "INSERT INTO auth_failures (username, realm, failures, last_failure, blocked_until) VALUES (?, ?, 1, ?, 0)"
            " ON CONFLICT (username, realm) DO UPDATE SET failures = CASE WHEN auth_failures.last_failure < ?"
            " THEN 1 ELSE auth_failures.failures + 1 END, last_failure = excluded.last_failure RETURNING failures",
            (username, realm, now, forget_before),
        )
        return int(rows[0][0])

    def block(self, username: str, realm: str, until: float) -> None:
        self._count(
            "UPDATE auth_failures SET blocked_until = ? WHERE username = ? AND realm = ?", (until, username, realm)
        )

    def clear_failures(self, username: str, realm: str) -> None:
        self._count("DELETE FROM auth_failures WHERE username = ? AND realm = ?", (username, realm))

    def purge(self, expired_before: float, forget_before: float) -> None:
        """Drop the counts of nonces that expired before ``expired_before`` (an expired
        nonce is refused before its count is read) and the failures last seen before
        ``forget_before`` (their blocks ended long before: see ThrottlePolicy)."""
        self._count("DELETE FROM nonce_counts WHERE expires < ?", (int(expired_before),))
        self._count("DELETE FROM auth_failures WHERE last_failure < ?", (forget_before,))

    def in_group(self, name: str, group: str) -> bool:
        return bool(self._rows("SELECT 1 FROM groups WHERE name = ? AND grp = ?", (_member(name), group)))

    def user_groups(self, name: str) -> list[str] | None:
        """The groups of a member named as in the groups table (``alice`` or
        ``alice@example.com``), sorted; None if the name is neither a group member nor
        a user (``alice`` in any realm, ``alice@example.com`` in that realm)."""
        name = _member(name)
        groups = [g for (g,) in self._rows("SELECT grp FROM groups WHERE name = ? ORDER BY grp", (name,))]
        if groups:
            return groups
        user, at, realm = name.partition("@")
        if at:
            rows = self._rows("SELECT 1 FROM users WHERE username = ? AND realm = ?", (user, realm))
        else:
            rows = self._rows("SELECT 1 FROM users WHERE username = ? LIMIT 1", (user,))
        return [] if rows else None

    # --- management -----------------------------------------------------------------

    def add_user(self, username: str, realm: str, password: str) -> None:
        username, realm = check_user(username, realm)
        if not password:
            raise StoreError("password is empty")
        with_domain = f"{username}@{realm}"
        self._count(
            "INSERT INTO users (username, realm, ha1, ha1b, ha1_sha256, ha1b_sha256) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (username, realm) DO UPDATE SET ha1 = excluded.ha1, ha1b = excluded.ha1b,"
            " ha1_sha256 = excluded.ha1_sha256, ha1b_sha256 = excluded.ha1b_sha256",
            (
                username,
                realm,
                ha1(username, realm, password),
                ha1(with_domain, realm, password),
                ha1(username, realm, password, "SHA-256"),
                ha1(with_domain, realm, password, "SHA-256"),
            ),
        )

    def add_user_hashes(self, username: str, realm: str, ha1: str, ha1b: str, *, replace: bool) -> bool:
        """A user given by their hashes (``user import``), for UAs that send ``alice``
        (``ha1``) and ``alice@realm`` (``ha1b``). A user already there keeps theirs unless
        ``replace``; True if the row was written. One statement, so an add racing with
        another command cannot overwrite it unnoticed. A replaced user loses their SHA-256
        hashes: they came from the old password."""
        username, realm = check_user(username, realm)
        conflict = (
            "DO UPDATE SET ha1 = excluded.ha1, ha1b = excluded.ha1b, ha1_sha256 = NULL, ha1b_sha256 = NULL"
            if replace
            else "DO NOTHING"
        )
        return (
            self._count(
                f"INSERT INTO users (username, realm, ha1, ha1b) VALUES (?, ?, ?, ?) ON CONFLICT (username, realm) "
                f"{conflict}",
                (username, realm, check_ha1("ha1", ha1), check_ha1("ha1b", ha1b)),
            )
            > 0
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The statements inside take effect together or not at all: an import of many
        users is one commit (SQLite syncs the disk once, not once a row), and one that
        fails half-way leaves the users as they were."""
        self._count("BEGIN")
        try:
            yield
        except BaseException:
            with contextlib.suppress(StoreError):
                self._count("ROLLBACK")
            raise
        self._count("COMMIT")

    def delete_user(self, username: str, realm: str) -> None:
        if self._count("DELETE FROM users WHERE username = ? AND realm = ?", (username, realm.lower())) == 0:
            raise StoreError(f"no user {username!r} in realm {realm!r}")

    def users(self) -> list[tuple[str, str]]:
        return self._rows("SELECT username, realm FROM users ORDER BY realm, username")

    def add_group(self, name: str, group: str) -> None:
        self._count(
            "INSERT INTO groups (name, grp) VALUES (?, ?) ON CONFLICT (name, grp) DO NOTHING",
            (_member(_check_name("name", name)), _check_name("group", group)),
        )

    def delete_group(self, name: str, group: str) -> None:
        if self._count("DELETE FROM groups WHERE name = ? AND grp = ?", (_member(name), group)) == 0:
            raise StoreError(f"{name!r} is not in group {group!r}")

    def groups(self) -> list[tuple[str, str]]:
        return self._rows("SELECT name, grp FROM groups ORDER BY grp, name")


class SqliteStore(SqlStore):
    """A local file: one server host (several ``--processes`` share it through the file).

    The file holds password equivalents (HA1) and the nonce secret, so a new one is
    created 0600 and an existing one that every user of the machine can read is
    refused (see :mod:`..secret_file`); ``warning`` says so when its group can.

    WAL journal: the server writes on every successful authentication (the nonce
    count), and in WAL mode those commits do not wait for the disk (synchronous
    NORMAL) and do not block readers in the other server processes. A power cut may
    lose the last few nonce counts, which only reopens replays of responses already
    seen within the nonce lifetime. Management commands keep full durability.
    """

    def __init__(self, path: str, *, server: bool = False) -> None:
        self.where = path
        try:
            create_private(path)
            self.warning = check(path, "database")
            for suffix in ("-wal", "-shm"):
                check(path + suffix, "database file")
        except InsecureFile as exc:
            raise StoreError(str(exc)) from None
        except OSError as exc:
            raise StoreError(f"cannot open database {path}: {exc.strerror}") from None
        try:
            # a locked database (another process writing) stalls the event loop: bound it
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT)
            self._db.execute("PRAGMA journal_mode=WAL")
            if server:
                self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in SCHEMA:
                self._db.execute(statement)
            self._add_columns()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None

    def _add_columns(self) -> None:
        """:data:`ADDED_COLUMNS` that the file lacks, added under a write lock (two
        processes opening an old file at once add each column once)."""

        def lacking() -> list[tuple[str, str, str]]:
            return [
                (table, column, kind)
                for table, column, kind in ADDED_COLUMNS
                if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            ]

        if not lacking():
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, kind in lacking():
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database {self.where}: {exc}") from None

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        try:
            return self._db.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database {self.where}: {exc}") from None


def open_store(db: str, *, server: bool = False) -> SqlStore:
    """``--db``: a ``postgresql://`` (or ``postgres://``) URL, else an SQLite file path.
    ``server``: opened by ``serve`` (SQLite trades the durability of the last commits
    for speed, see :class:`SqliteStore`)."""
    if not db.startswith(POSTGRES_SCHEMES):
        return SqliteStore(db, server=server)
    try:
        from .store_pg import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"a postgresql:// database needs psycopg 3: pip install 'kamailio-auth-diameter[postgresql]' ({exc})"
        ) from None
    return PostgresStore(db)
