"""Users (as HA1, never a password), groups and the nonce secret, in SQLite.

Each user row keeps two hashes, like Kamailio's subscriber table: ``ha1`` for
UAs that send ``username="alice"`` and ``ha1b`` for ``username="alice@realm"``.
The nonce secret lives in the database so that every server instance sharing it
accepts the others' nonces.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass

from ..digest import ha1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT NOT NULL,
    realm    TEXT NOT NULL,
    ha1      TEXT NOT NULL,
    ha1b     TEXT NOT NULL,
    PRIMARY KEY (username, realm)
);
CREATE TABLE IF NOT EXISTS groups (
    name  TEXT NOT NULL,
    grp   TEXT NOT NULL,
    PRIMARY KEY (name, grp)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StoreError(Exception):
    """A management command cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class UserHashes:
    ha1: str
    ha1b: str


def _check_name(what: str, value: str) -> str:
    if not value or any(c in value for c in '\r\n\0"') or value != value.strip():
        raise StoreError(f"{what} {value!r} is empty or has quotes, spaces around it or control characters")
    return value


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from None

    def close(self) -> None:
        self._db.close()

    # --- server side ----------------------------------------------------------------

    def nonce_secret(self) -> bytes:
        """The shared nonce secret, created on first use."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'nonce_secret'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('nonce_secret', ?)", (os.urandom(32).hex(),))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'nonce_secret'").fetchone()
        return bytes.fromhex(row[0])

    def user_hashes(self, username: str, realm: str) -> UserHashes | None:
        row = self._db.execute(
            "SELECT ha1, ha1b FROM users WHERE username = ? AND realm = ?", (username, realm)
        ).fetchone()
        return UserHashes(*row) if row else None

    def in_group(self, name: str, group: str) -> bool:
        return self._db.execute("SELECT 1 FROM groups WHERE name = ? AND grp = ?", (name, group)).fetchone() is not None

    def user_groups(self, name: str) -> list[str] | None:
        """The groups of a member named as in the groups table (``alice`` or
        ``alice@example.com``), sorted; None if the name is neither a group member nor
        a user (``alice`` in any realm, ``alice@example.com`` in that realm)."""
        groups = [g for (g,) in self._db.execute("SELECT grp FROM groups WHERE name = ? ORDER BY grp", (name,))]
        if groups:
            return groups
        user, at, realm = name.partition("@")
        if at:
            row = self._db.execute("SELECT 1 FROM users WHERE username = ? AND realm = ?", (user, realm)).fetchone()
        else:
            row = self._db.execute("SELECT 1 FROM users WHERE username = ?", (user,)).fetchone()
        return [] if row else None

    # --- management -----------------------------------------------------------------

    def add_user(self, username: str, realm: str, password: str) -> None:
        _check_name("username", username)
        _check_name("realm", realm)
        if "@" in username or ":" in username:
            raise StoreError(f"username {username!r} must be the user part only (no '@' or ':')")
        if not password:
            raise StoreError("password is empty")
        self._db.execute(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?)",
            (username, realm, ha1(username, realm, password), ha1(f"{username}@{realm}", realm, password)),
        )

    def delete_user(self, username: str, realm: str) -> None:
        if self._db.execute("DELETE FROM users WHERE username = ? AND realm = ?", (username, realm)).rowcount == 0:
            raise StoreError(f"no user {username!r} in realm {realm!r}")

    def users(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT username, realm FROM users ORDER BY realm, username").fetchall()

    def add_group(self, name: str, group: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO groups VALUES (?, ?)", (_check_name("name", name), _check_name("group", group))
        )

    def delete_group(self, name: str, group: str) -> None:
        if self._db.execute("DELETE FROM groups WHERE name = ? AND grp = ?", (name, group)).rowcount == 0:
            raise StoreError(f"{name!r} is not in group {group!r}")

    def groups(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT name, grp FROM groups ORDER BY grp, name").fetchall()
