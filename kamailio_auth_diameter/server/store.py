"""Users (as HA1, never a password), groups and the nonce secret, in SQLite or PostgreSQL.

Each user row keeps two hashes, like Kamailio's subscriber table: ``ha1`` for
UAs that send ``username="alice"`` and ``ha1b`` for ``username="alice@realm"``.
The nonce secret lives in the database so that every server instance sharing it
accepts the others' nonces.

:class:`SqlStore` holds everything both databases share: the schema, every
statement (written once, in the ``INSERT ... ON CONFLICT`` dialect that SQLite
>= 3.24 and PostgreSQL both speak, with ``?`` placeholders), the validation and its
error messages. A subclass only connects and runs a statement: :class:`SqliteStore`
here, :class:`~.store_pg.PostgresStore` in its own module so that the driver is
imported only when a ``postgresql://`` URL is used (:func:`open_store`).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..digest import ha1

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS users (
    username TEXT NOT NULL,
    realm    TEXT NOT NULL,
    ha1      TEXT NOT NULL,
    ha1b     TEXT NOT NULL,
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
)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreError(Exception):
    """A management command cannot be carried out; the message says why."""


class StoreUnavailable(StoreError):
    """The database did not answer (down, unreachable, timed out): this request
    fails, a later one may succeed. The decisions answer 5012 for it."""


@dataclass(frozen=True, slots=True)
class UserHashes:
    ha1: str
    ha1b: str


def _check_name(what: str, value: str) -> str:
    if not value or any(c in value for c in '\r\n\0"') or value != value.strip():
        raise StoreError(f"{what} {value!r} is empty or has quotes, spaces around it or control characters")
    return value


class SqlStore:
    """The store's meaning, whatever the database; subclasses provide :meth:`_rows` and :meth:`_count`."""

    where: str  # the database, for messages and the log: never a password

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
        rows = self._rows("SELECT ha1, ha1b FROM users WHERE username = ? AND realm = ?", (username, realm))
        return UserHashes(*rows[0]) if rows else None

    def in_group(self, name: str, group: str) -> bool:
        return bool(self._rows("SELECT 1 FROM groups WHERE name = ? AND grp = ?", (name, group)))

    def user_groups(self, name: str) -> list[str] | None:
        """The groups of a member named as in the groups table (``alice`` or
        ``alice@example.com``), sorted; None if the name is neither a group member nor
        a user (``alice`` in any realm, ``alice@example.com`` in that realm)."""
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
        _check_name("username", username)
        _check_name("realm", realm)
        if "@" in username or ":" in username:
            raise StoreError(f"username {username!r} must be the user part only (no '@' or ':')")
        if not password:
            raise StoreError("password is empty")
        self._count(
            "INSERT INTO users (username, realm, ha1, ha1b) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (username, realm) DO UPDATE SET ha1 = excluded.ha1, ha1b = excluded.ha1b",
            (username, realm, ha1(username, realm, password), ha1(f"{username}@{realm}", realm, password)),
        )

    def delete_user(self, username: str, realm: str) -> None:
        if self._count("DELETE FROM users WHERE username = ? AND realm = ?", (username, realm)) == 0:
            raise StoreError(f"no user {username!r} in realm {realm!r}")

    def users(self) -> list[tuple[str, str]]:
        return self._rows("SELECT username, realm FROM users ORDER BY realm, username")

    def add_group(self, name: str, group: str) -> None:
        self._count(
            "INSERT INTO groups (name, grp) VALUES (?, ?) ON CONFLICT (name, grp) DO NOTHING",
            (_check_name("name", name), _check_name("group", group)),
        )

    def delete_group(self, name: str, group: str) -> None:
        if self._count("DELETE FROM groups WHERE name = ? AND grp = ?", (name, group)) == 0:
            raise StoreError(f"{name!r} is not in group {group!r}")

    def groups(self) -> list[tuple[str, str]]:
        return self._rows("SELECT name, grp FROM groups ORDER BY grp, name")


class SqliteStore(SqlStore):
    """A local file: one server host (several ``--processes`` share it through the file)."""

    def __init__(self, path: str) -> None:
        self.where = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for statement in SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None

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


def open_store(db: str) -> SqlStore:
    """``--db``: a ``postgresql://`` (or ``postgres://``) URL, else an SQLite file path."""
    if not db.startswith(POSTGRES_SCHEMES):
        return SqliteStore(db)
    try:
        from .store_pg import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"a postgresql:// database needs psycopg 3: pip install 'kamailio-auth-diameter[postgresql]' ({exc})"
        ) from None
    return PostgresStore(db)
