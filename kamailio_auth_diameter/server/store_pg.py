"""The store in PostgreSQL (``--db postgresql://...``): several server instances, one database.

Users, groups and the nonce secret are shared, so a nonce made by one instance is
accepted by any other, and a user added once is seen by all of them at once (there
is no cache: every request reads the database).

Trade-off: the event loop calls the store synchronously, as it does SQLite, instead
of through a pool and threads. A lookup is one indexed read on one long-lived
autocommit connection per server process (prepared after a few uses), well under a
millisecond on a nearby database, so the loop stays simple and answers stay in
order. The price is that a slow database stalls every connection of that process
while it answers; that stall is bounded:

* ``statement_timeout`` (1 s) ends a statement the database is slow to answer;
* TCP keepalives and ``tcp_user_timeout`` end a connection whose host went away
  without a word (a few seconds), and ``connect_timeout`` (2 s) a connect to it;
* after a failed connect, requests fail at once (no connect attempt) for a backoff
  that doubles from 0.5 s up to 8 s, so an unreachable database cannot keep the
  loop waiting on connects.

Each of these can be overridden in the URL (``?connect_timeout=5&options=...``).
A failed request raises :class:`~.store.StoreUnavailable`, which the decisions
answer with 5012 for that request alone. A broken connection (the database
restarted) is replaced, and a read is retried once on the new one, so a restart
costs no request; writes (management commands only) are not retried, as one may
have been applied before the connection broke.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .store import ADDED_COLUMNS, SCHEMA, SqlStore, StoreError, StoreUnavailable

STATEMENT_TIMEOUT_MS = 1000
CONNECT_DEFAULTS = {
    "connect_timeout": "2",
    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    "keepalives": "1",
    "keepalives_idle": "2",
    "keepalives_interval": "1",
    "keepalives_count": "2",
    "tcp_user_timeout": "3000",
}
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
_SCHEMA_LOCK = 0x6B616D61  # pg_advisory_xact_lock key: instances starting together create the tables once


class PostgresStore(SqlStore):
    """One autocommit connection, made again when it breaks."""

    def __init__(self, url: str) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreError(f"cannot use database URL: {exc}") from None
        for key, value in CONNECT_DEFAULTS.items():
            params.setdefault(key, value)
        self._params = params
        self.where = f"postgresql://{params.get('host', '')}:{params.get('port', '')}/{params.get('dbname', '')}"
        self._conn: psycopg.Connection | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        try:
            conn = self._connection()
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in SCHEMA:
                    conn.execute(statement)
                for table, column, kind in ADDED_COLUMNS:  # a database made before they existed
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        except (StoreUnavailable, psycopg.Error) as exc:
            self.close()
            raise StoreError(f"cannot open database {self.where}: {exc}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreUnavailable(f"database {self.where} unreachable, next try in {self._retry_at - now:.1f} s")
        try:
            self._conn = psycopg.connect(autocommit=True, **self._params)
        except psycopg.Error as exc:
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            raise StoreUnavailable(f"cannot connect to {self.where}: {exc}") from None
        self._backoff = BACKOFF_FIRST
        return self._conn

    def _execute(self, sql: str, params: tuple[Any, ...], retry: bool) -> psycopg.Cursor:
        while True:
            conn = self._connection()
            try:
                return conn.execute(sql.replace("?", "%s"), params)
            except psycopg.Error as exc:
                if not conn.broken:  # e.g. statement_timeout: the connection itself is fine
                    raise StoreUnavailable(f"database {self.where}: {exc}") from None
                self.close()
                if not retry:
                    raise StoreUnavailable(f"database {self.where}: connection lost: {exc}") from None
                retry = False

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._execute(sql, params, retry=True).fetchall()

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return self._execute(sql, params, retry=False).rowcount
