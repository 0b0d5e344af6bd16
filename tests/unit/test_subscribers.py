"""server/subscribers: Kamailio's subscriber rows read from a CSV export, judged, and
decided against the store; an imported user authenticates like one added with a password."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.auth import LegacyAuthority
from kamailio_auth_diameter.server.store import SqliteStore, UserHashes
from kamailio_auth_diameter.server.subscribers import (
    Action,
    Decision,
    Rejected,
    SubscriberError,
    SubscriberRow,
    User,
    check,
    plan,
    read_csv,
    summary,
)
from tests.unit.test_server_auth import challenge_nonce, credentials, decide, request


def kamctl_hashes(username: str, domain: str, password: str) -> tuple[str, str]:
    """ha1 and ha1b as kamctl add computes them (kamctl.base: _gen_ha1, _gen_ha1b)."""
    return digest.ha1(username, domain, password), digest.ha1(f"{username}@{domain}", domain, password)


ALICE = kamctl_hashes("alice", "example.com", "s3cret")
BOB = kamctl_hashes("bob", "example.com", "bobpw")
PSQL_EXPORT = (  # \copy subscriber TO 'f.csv' CSV HEADER of Kamailio's own table (auth_db-create.sql)
    "id,username,domain,password,ha1,ha1b\n"
    f"1,alice,example.com,s3cret,{ALICE[0]},{ALICE[1]}\n"
    f"2,bob,example.com,bobpw,{BOB[0]},{BOB[1]}\n"
)


def rows(text: str, delimiter: str | None = None) -> list[SubscriberRow | Rejected]:
    return list(read_csv(io.StringIO(text), delimiter))


# --- reading ------------------------------------------------------------------------


def test_a_psql_export_gives_the_four_columns_and_never_the_password() -> None:
    assert rows(PSQL_EXPORT) == [
        SubscriberRow("line 2", "alice", "example.com", *ALICE),
        SubscriberRow("line 3", "bob", "example.com", *BOB),
    ]


@pytest.mark.parametrize("delimiter", ["\t", ";", "|"])
def test_the_delimiter_is_found_in_the_header(delimiter: str) -> None:
    """mysql --batch and sqlite3 -tabs write tabs, spreadsheets often ';'."""
    text = PSQL_EXPORT.replace(",", delimiter)
    assert [r.username for r in rows(text)] == ["alice", "bob"]  # type: ignore[union-attr]


def test_columns_in_any_order_and_case_with_quotes() -> None:
    text = f'"HA1B";"Domain";"UserName";"ha1"\n"{ALICE[1]}";"example.com";"al;ice";"{ALICE[0]}"\n'
    assert rows(text) == [SubscriberRow("line 2", "al;ice", "example.com", *ALICE)]


def test_a_given_delimiter_is_used() -> None:
    text = "username:domain:ha1:ha1b\nalice:example.com:" + ":".join(ALICE) + "\n"
    assert rows(text, ":") == [SubscriberRow("line 2", "alice", "example.com", *ALICE)]


def test_line_numbers_count_blank_lines_and_quoted_line_breaks() -> None:
    text = (
        "username,domain,ha1,ha1b\n"
        "\n"
        f'"al\nice",example.com,{ALICE[0]},{ALICE[1]}\n'
        "bob,example.com\n"
        f"bob,example.com,{BOB[0]},{BOB[1]}\n"
    )
    assert [r.where for r in rows(text)] == ["line 3", "line 5", "line 6"]
    assert rows(text)[1] == Rejected("line 5", "2 fields where the header names 4")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the first line does not name the columns username, domain, ha1, ha1b"),
        (f"alice,example.com,{ALICE[0]},{ALICE[1]}\n", "the first line does not name the columns"),
        ("username,domain,ha1\nalice,example.com,x\n", "the first line does not name the columns"),
    ],
)
def test_without_a_header_naming_the_columns_nothing_is_read(text: str, message: str) -> None:
    with pytest.raises(SubscriberError, match=message) as exc:
        rows(text)
    assert "CSV HEADER" in str(exc.value)


def test_a_given_delimiter_must_split_the_header() -> None:
    with pytest.raises(SubscriberError, match="the header line has no column username, domain, ha1, ha1b"):
        rows(PSQL_EXPORT, ";")


# --- judging a row ------------------------------------------------------------------


def test_a_good_row_keeps_its_hashes_in_lower_case() -> None:
    row = SubscriberRow("id 7", "alice", "example.com", ALICE[0].upper(), ALICE[1])
    assert check(row) == User("id 7", "alice", "example.com", *ALICE)


@pytest.mark.parametrize(
    ("username", "domain", "ha1", "ha1b", "reason"),
    [
        ("alice", "example.com", "", ALICE[1], "ha1 '' is not an MD5 hash (32 hex digits)"),
        ("alice", "example.com", ALICE[0], "", "ha1b '' is not an MD5 hash (32 hex digits)"),
        ("alice", "example.com", ALICE[0] + "0" * 32, ALICE[1], "ha1 '"),  # a SHA-256 HA1: 64 digits
        ("alice", "example.com", ALICE[0][:-1] + "g", ALICE[1], "is not an MD5 hash"),
        ("alice", "example.com", " " + ALICE[0], ALICE[1], "is not an MD5 hash"),
        ("alice@example.com", "example.com", *ALICE, "must be the user part only"),
        ("", "example.com", *ALICE, "username '' is empty"),
        ("alice", "", *ALICE, "realm '' is empty"),
        ("al ice ", "example.com", *ALICE, "spaces around it"),
    ],
)
def test_a_bad_row_is_rejected_with_the_reason(username: str, domain: str, ha1: str, ha1b: str, reason: str) -> None:
    result = check(SubscriberRow("line 4", username, domain, ha1, ha1b))
    assert isinstance(result, Rejected)
    assert (result.where, result.who) == ("line 4", f"{username}@{domain}")
    assert reason in result.reason


def test_a_mixed_case_domain_is_rejected_as_its_hashes_could_never_match() -> None:
    """kamctl hashes the domain as typed; our challenges name the realm in lower case."""
    result = check(SubscriberRow("line 2", "carol", "Example.COM", *kamctl_hashes("carol", "Example.COM", "pw")))
    assert isinstance(result, Rejected)
    assert result.reason.startswith("domain 'Example.COM' is not in lower case")
    assert "realm 'example.com'" in result.reason and "user add" in result.reason


# --- deciding against the store -----------------------------------------------------


def test_each_row_is_decided_against_the_store_without_overwriting() -> None:
    held = {
        ("alice", "example.com"): UserHashes(*ALICE),
        ("bob", "example.com"): UserHashes(*kamctl_hashes("bob", "example.com", "old")),
    }
    source = [
        SubscriberRow("line 2", "alice", "example.com", *ALICE),
        SubscriberRow("line 3", "bob", "example.com", *BOB),
        SubscriberRow("line 4", "carol", "example.com", *kamctl_hashes("carol", "example.com", "pw")),
        SubscriberRow("line 5", "carol", "example.com", *kamctl_hashes("carol", "example.com", "pw2")),
        Rejected("line 6", "2 fields where the header names 4"),
        SubscriberRow("line 7", "dave", "example.com", "x", "y"),
    ]
    decisions = plan(source, lambda u, r: held.get((u, r)), update=False)
    assert [(d.where, d.action, d.who) for d in decisions] == [
        ("line 2", Action.UNCHANGED, "alice@example.com"),
        ("line 3", Action.SKIP, "bob@example.com"),
        ("line 4", Action.IMPORT, "carol@example.com"),
        ("line 5", Action.SKIP, "carol@example.com"),
        ("line 6", Action.SKIP, ""),
        ("line 7", Action.SKIP, "dave@example.com"),
    ]
    assert decisions[1].line() == (
        "line 3 bob@example.com: skipped: already there with other hashes, kept (--update replaces them)"
    )
    assert decisions[3].reason == "the same user as line 4"
    assert decisions[4].line() == "line 6: skipped: 2 fields where the header names 4"
    assert summary(decisions) == "imported 1, updated 0, unchanged 1, skipped 4"
    updated = plan(source[:2], lambda u, r: held.get((u, r)), update=True)
    assert [d.action for d in updated] == [Action.UNCHANGED, Action.UPDATE]
    assert updated[1].user == User("line 3", "bob", "example.com", *BOB)


def test_what_a_row_held_is_escaped_in_the_report() -> None:
    d = Decision(Action.SKIP, "line 2", "\x1b[2Jeve@example.com", reason="x")
    assert d.line() == "line 2 \\x1b[2Jeve@example.com: skipped: x"


# --- into the store, and authenticating ----------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "auth.sqlite"))
    yield s
    s.close()


def test_an_imported_user_authenticates_like_an_added_one(store: SqliteStore) -> None:
    (decision,) = plan(rows(PSQL_EXPORT)[:1], store.user_hashes, update=False)
    assert decision.user is not None
    assert store.add_user_hashes("alice", "example.com", decision.user.ha1, decision.user.ha1b, replace=False)
    store.add_user("bob", "example.com", "bobpw")
    bob = store.user_hashes("bob", "example.com")
    assert bob is not None and (bob.ha1, bob.ha1b) == BOB  # user add does kamctl's maths
    authority = LegacyAuthority(store, NonceFactory(store.nonce_secret()))
    for username in ("alice", "alice@example.com"):  # ha1, then ha1b
        nonce = challenge_nonce(decide(authority, request()))
        assert decide(authority, request(credentials(nonce, username=username, password="s3cret"))).result_code == 2001
        nonce = challenge_nonce(decide(authority, request()))
        assert decide(authority, request(credentials(nonce, username=username, password="wrong"))).result_code == 4001
