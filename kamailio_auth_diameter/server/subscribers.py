"""Kamailio's ``subscriber`` table (auth_db), read for ``user import``.

Kamailio's tools (``kamctl add``) keep, for each user, ha1 = MD5(username:domain:password)
and ha1b = MD5(username@domain:domain:password): the very hashes our store keeps for
UAs that send ``alice`` and ``alice@example.com``. Users therefore move over without
their passwords, and authenticate exactly like users added with ``user add``. A
``password`` column, which kamctl fills by default, is never read.

Two sources give the same rows: a CSV export with a header row (:func:`read_csv`) and
the table itself in PostgreSQL (:func:`read_postgres`, the only part that does I/O).
:func:`check` judges one row, :func:`plan` decides each row against what the store
already holds; both are pure, so ``--dry-run`` shows exactly what an import would do.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from ..logtext import printable
from .store import StoreError, UserHashes, check_ha1, check_user

COLUMNS = ("username", "domain", "ha1", "ha1b")
# psql's \copy ... CSV HEADER writes ',', mysql --batch and sqlite3 -tabs a tab, spreadsheets ';'
DELIMITERS = (",", "\t", ";", "|")


class SubscriberError(Exception):
    """The source as a whole cannot be read (no header naming the columns, not UTF-8,
    no such table); the message says what to do."""


@dataclass(frozen=True, slots=True)
class SubscriberRow:
    """One row as the source gave it."""

    where: str  # "line 7" of a CSV file, "id 42" of a table: named in every message about the row
    username: str
    domain: str
    ha1: str
    ha1b: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row that cannot be imported, and why."""

    where: str
    reason: str
    who: str = ""  # the row's username@domain, when it has them


@dataclass(frozen=True, slots=True)
class User:
    """A row fit for our store: the key as stored (realm in lower case), hashes in lower case."""

    where: str
    username: str
    realm: str
    ha1: str
    ha1b: str


class Action(enum.Enum):
    IMPORT = "imported"
    UPDATE = "updated"
    UNCHANGED = "unchanged"
    SKIP = "skipped"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    where: str
    who: str  # username@domain as the row has them, for the operator ("" for a row without them)
    user: User | None = None  # None for a row that cannot be imported
    reason: str = ""

    def line(self) -> str:
        """One line for the operator: where the row is, whom it names, what happened and
        why (whatever the row held escaped, see logtext)."""
        who = f" {self.who}" if self.who else ""
        return printable(f"{self.where}{who}: {self.action.value}" + (f": {self.reason}" if self.reason else ""))


def _delimiter(header: str) -> str | None:
    """The delimiter that splits ``header`` into fields naming every column we need."""
    for delimiter in DELIMITERS:
        fields = next(csv.reader([header], delimiter=delimiter), [])
        if set(COLUMNS) <= {f.strip().lower() for f in fields}:
            return delimiter
    return None


def read_csv(stream: TextIO, delimiter: str | None = None) -> Iterator[SubscriberRow | Rejected]:
    """The rows of a CSV export whose first line names the columns (any order, any
    case; others such as ``id`` and ``password`` are ignored). ``delimiter``: None finds
    it in the header line among ``,``, tab, ``;`` and ``|``. Quoting is CSV's (``"``,
    doubled inside a field), as psql writes it; blank lines are skipped."""
    try:
        header = stream.readline()
        if delimiter is None:
            delimiter = _delimiter(header)
            if delimiter is None:
                raise SubscriberError(
                    f"the first line does not name the columns {', '.join(COLUMNS)} (separated by ',', tab, ';' "
                    f"or '|'): {header.strip()[:200]!r}; export with: "
                    "\\copy (SELECT username, domain, ha1, ha1b FROM subscriber) TO 'subscribers.csv' CSV HEADER"
                )
        names = [f.strip().lower() for f in next(csv.reader([header], delimiter=delimiter), [])]
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise SubscriberError(f"the header line has no column {', '.join(missing)}: {header.strip()[:200]!r}")
        index = {c: names.index(c) for c in COLUMNS}
        reader = csv.reader(stream, delimiter=delimiter)
        end = 1
        for fields in reader:
            where, end = f"line {end + 1}", reader.line_num + 1
            if not fields:
                continue
            if len(fields) != len(names):
                yield Rejected(where, f"{len(fields)} fields where the header names {len(names)}")
                continue
            yield SubscriberRow(where, *(fields[index[c]] for c in COLUMNS))
    except UnicodeDecodeError as exc:
        raise SubscriberError(f"not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise SubscriberError(f"not CSV: {exc}") from None


def check(row: SubscriberRow | Rejected) -> User | Rejected:
    """A row our store can keep and the server can authenticate, or why not."""
    if isinstance(row, Rejected):
        return row
    who = f"{row.username}@{row.domain}"
    try:
        username, realm = check_user(row.username, row.domain)
        if realm != row.domain:
            return Rejected(
                row.where,
                f"domain {row.domain!r} is not in lower case: its hashes were computed over {row.domain!r}, but "
                f"this server challenges in realm {realm!r}, so no response could match them; add the user with "
                "user add (their password) instead",
                who,
            )
        return User(row.where, username, realm, check_ha1("ha1", row.ha1), check_ha1("ha1b", row.ha1b))
    except StoreError as exc:
        return Rejected(row.where, str(exc), who)


def plan(
    rows: Iterable[SubscriberRow | Rejected],
    existing: Callable[[str, str], UserHashes | None],
    update: bool,
) -> list[Decision]:
    """What to do with each row: import a new user; with ``update``, replace the
    hashes of one we hold; leave one whose hashes are already these; skip a row that
    cannot be imported, names a user an earlier row named, or (without ``update``) a
    user we hold with other hashes. ``existing`` looks a user up in our store."""
    decisions = []
    seen: dict[tuple[str, str], str] = {}
    for row in rows:
        user = check(row)
        if isinstance(user, Rejected):
            decisions.append(Decision(Action.SKIP, user.where, user.who, reason=user.reason))
            continue
        key = (user.username, user.realm)
        who = f"{user.username}@{user.realm}"
        if key in seen:
            decisions.append(Decision(Action.SKIP, user.where, who, user, f"the same user as {seen[key]}"))
            continue
        seen[key] = user.where
        held = existing(user.username, user.realm)
        if held is None:
            decisions.append(Decision(Action.IMPORT, user.where, who, user))
        elif (held.ha1, held.ha1b) == (user.ha1, user.ha1b):
            decisions.append(Decision(Action.UNCHANGED, user.where, who, user, "already there with these hashes"))
        elif update:
            decisions.append(Decision(Action.UPDATE, user.where, who, user, "its hashes replaced (--update)"))
        else:
            reason = "already there with other hashes, kept (--update replaces them)"
            decisions.append(Decision(Action.SKIP, user.where, who, user, reason))
    return decisions


def summary(decisions: Iterable[Decision]) -> str:
    """``imported 2, updated 0, unchanged 1, skipped 1``."""
    counts = dict.fromkeys(Action, 0)
    for d in decisions:
        counts[d.action] += 1
    return ", ".join(f"{action.value} {counts[action]}" for action in Action)


def read_postgres(url: str, table: str = "subscriber") -> list[SubscriberRow]:
    """The rows of Kamailio's subscriber ``table`` (``schema.table`` allowed) in the
    PostgreSQL database at ``url``, in ``id`` order; only the four columns are read."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        raise SubscriberError(
            f"reading PostgreSQL needs psycopg 3: pip install 'kamailio-auth-diameter[postgresql]' ({exc})"
        ) from None
    query = sql.SQL("SELECT id, {} FROM {} ORDER BY id").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), sql.Identifier(*table.split("."))
    )
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            rows = conn.execute(query).fetchall()
    except psycopg.Error as exc:
        raise SubscriberError(f"cannot read table {table}: {str(exc).strip()}") from None
    return [SubscriberRow(f"id {row[0]}", *(value or "" for value in row[1:])) for row in rows]
