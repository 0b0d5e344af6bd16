"""Secrets the server's command line must not show: user passwords and database passwords.

``user add`` never takes the password as an argument (ps, shell history): it asks on
a terminal, twice and without echo, or reads a line of standard input. The database
URL may come from ``--db-file`` (a file only its owner reads) or leave the password
to libpq (``PGPASSFILE``); a password in ``--db`` itself is logged as a warning.
Proved against a PostgreSQL of the test's own that demands a password (SCRAM).
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.server.store import SqliteStore
from tests.harness import PYTHON, ROOT, Postgres, ReferenceServer, free_port, server_cli
from tests.real.conftest import USERS

REALM = "example.com"
PG_PASSWORD = "tr0ub4dor&3"


def _ha1(db: Path, user: str) -> str | None:
    store = SqliteStore(str(db))
    try:
        hashes = store.user_hashes(user, REALM)
        return hashes.ha1 if hashes else None
    finally:
        store.close()


# --- user add ---------------------------------------------------------------------------


def test_a_password_argument_is_refused(tmp_path: Path) -> None:
    r = server_cli(tmp_path / "u.db", "user", "add", "alice", REALM, "s3cret")
    assert r.returncode == 1
    assert r.stderr.startswith("error: a password on the command line can be read by every user"), r.stderr
    assert "history" in r.stderr
    assert _ha1(tmp_path / "u.db", "alice") is None


@pytest.mark.parametrize("dash", [(), ("-",)], ids=["no argument", "'-'"])
def test_the_password_is_one_line_of_standard_input(tmp_path: Path, dash: tuple[str, ...]) -> None:
    r = server_cli(tmp_path / "u.db", "user", "add", "alice", REALM, *dash, stdin="s3cret\r\nignored\n")
    assert r.returncode == 0, r.stderr
    assert _ha1(tmp_path / "u.db", "alice") == digest.ha1("alice", REALM, "s3cret")


def test_no_password_on_standard_input_is_refused(tmp_path: Path) -> None:
    r = server_cli(tmp_path / "u.db", "user", "add", "alice", REALM, stdin="")
    assert (r.returncode, r.stderr) == (1, "error: no password given\n")


def _on_a_terminal(db: Path, answers: list[str]) -> tuple[int, str]:
    """``user add`` with a pseudo-terminal as its terminal: each answer typed after a prompt."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "user", "add", "--db", str(db), "alice", REALM],
        cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,  # no /dev/tty but the pty
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        for answer in [*answers, None]:
            deadline = time.monotonic() + 10
            while not seen.rstrip().endswith(b":") and time.monotonic() < deadline and proc.poll() is None:
                if select.select([master], [], [], 0.1)[0]:
                    try:
                        seen += os.read(master, 1024)
                    except OSError:
                        break
            if answer is None or proc.poll() is not None:
                break
            os.write(master, answer.encode() + b"\n")
            seen += b"|"  # what was typed is not echoed: only our marker shows where it went
        rc = proc.wait(10)
        while select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    return rc, seen.decode(errors="replace")


def test_on_a_terminal_it_asks_twice_without_echo(tmp_path: Path) -> None:
    rc, seen = _on_a_terminal(tmp_path / "u.db", ["s3cret", "s3cret"])
    assert rc == 0, seen
    assert "Password: |" in seen and "Password again: |" in seen
    assert "s3cret" not in seen
    assert _ha1(tmp_path / "u.db", "alice") == digest.ha1("alice", REALM, "s3cret")


def test_on_a_terminal_two_different_passwords_are_refused(tmp_path: Path) -> None:
    rc, seen = _on_a_terminal(tmp_path / "u.db", ["s3cret", "s3cert"])
    assert rc == 1
    assert "error: the two passwords differ" in seen
    assert _ha1(tmp_path / "u.db", "alice") is None


# --- --db-file and a password in --db ----------------------------------------------------


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A serve that is expected to stop at start-up."""
    return subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--legacy-listen", f"127.0.0.1:{free_port()}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres:hunter2@127.0.0.1:1/auth", "postgresql://postgres@127.0.0.1:1/auth?password=hunter2"],
)
def test_a_password_in_the_db_url_is_warned_about(url: str) -> None:
    for r in (_serve("--db", url), server_cli(url, "user", "list")):
        assert r.returncode == 1  # nothing listens on port 1
        assert "WARNING the --db URL holds a password, which every user of this machine can read" in r.stderr
        assert "--db-file" in r.stderr and "PGPASSFILE" in r.stderr


def test_no_warning_without_a_password() -> None:
    r = _serve("--db", "postgresql://postgres@127.0.0.1:1/auth")
    assert r.returncode == 1 and "password" not in r.stderr


def _db_file(tmp_path: Path, text: str, mode: int) -> Path:
    path = tmp_path / "db-url"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_db_file_readable_by_everyone_is_refused(tmp_path: Path) -> None:
    f = _db_file(tmp_path, f"{tmp_path / 'u.db'}\n", 0o644)
    r = _serve("--db-file", str(f))
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: --db-file {f} is accessible to every user of this machine"), r.stderr


def test_db_file_that_is_empty_or_missing_is_refused(tmp_path: Path) -> None:
    empty = _db_file(tmp_path, "\n", 0o600)
    assert _serve("--db-file", str(empty)).stderr == f"error: --db-file {empty}: its first line is empty\n"
    missing = tmp_path / "missing"
    assert _serve("--db-file", str(missing)).stderr == f"error: --db-file {missing}: No such file or directory\n"


def test_db_and_db_file_exclude_each_other(tmp_path: Path) -> None:
    r = _serve("--db", "x.db", "--db-file", "y")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_db_file_for_every_command(tmp_path: Path) -> None:
    """Its first line is the database, for serve and for the management commands; a file its
    group may read is used, with a warning."""
    f = _db_file(tmp_path, f"{tmp_path / 'u.db'}\nsecond line ignored\n", 0o640)
    r = subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "user", "add", "--db-file", str(f), "alice", REALM],
        cwd=ROOT, input="s3cret\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"WARNING --db-file {f} is accessible to its group (mode 0640)" in r.stderr
    assert _ha1(tmp_path / "u.db", "alice") == digest.ha1("alice", REALM, "s3cret")
    f.chmod(0o600)
    server = ReferenceServer(db=tmp_path / "u.db", log_path=tmp_path / "server.log", db_file=f).start()
    try:
        log = server.log_path.read_text()
        assert f"db {tmp_path / 'u.db'})" in log and "WARNING" not in log
    finally:
        server.stop()


# --- PostgreSQL that demands a password -------------------------------------------------------


@pytest.fixture(scope="module")
def locked_postgres(postgres: Postgres) -> Iterator[Postgres]:
    postgres.require_password(PG_PASSWORD)
    deadline = time.monotonic() + 10
    while server_cli(postgres.url, "user", "list", env={"PGPASSFILE": "/nonexistent"}).returncode == 0:
        assert time.monotonic() < deadline, "pg_hba.conf was not reloaded"
        time.sleep(0.1)
    yield postgres


def _pgpass(tmp_path: Path, pg: Postgres, password: str = PG_PASSWORD) -> Path:
    path = tmp_path / "pgpass"
    path.write_text(f"127.0.0.1:{pg.port}:{pg.dbname}:postgres:{password}\n")
    path.chmod(0o600)
    return path


def test_without_a_password_the_database_refuses(locked_postgres: Postgres, tmp_path: Path) -> None:
    r = _serve("--db", locked_postgres.url, env={"PGPASSFILE": "/nonexistent"})
    assert r.returncode == 1
    assert "password" in r.stderr, r.stderr
    r = _serve("--db", locked_postgres.url, env={"PGPASSFILE": str(_pgpass(tmp_path, locked_postgres, "wrong"))})
    assert r.returncode == 1 and "password authentication failed" in r.stderr, r.stderr


def test_the_password_in_pgpassfile_alone_serves(locked_postgres: Postgres, tmp_path: Path) -> None:
    """The URL names no password; libpq finds it in PGPASSFILE, for serve and user add."""
    server = ReferenceServer(db=locked_postgres.url, log_path=tmp_path / "server.log")
    server.env = {"PGPASSFILE": str(_pgpass(tmp_path, locked_postgres))}
    server.add_user(*USERS[0])
    server.start()
    try:
        assert server.proc is not None
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert PG_PASSWORD.encode() not in cmdline
        log = server.log_path.read_text()
        assert f"db postgresql://127.0.0.1:{locked_postgres.port}/{locked_postgres.dbname})" in log
        assert "password" not in log
    finally:
        server.stop()


def test_a_url_with_its_password_in_db_file_serves(locked_postgres: Postgres, tmp_path: Path) -> None:
    url = locked_postgres.url.replace("postgres@", f"postgres:{PG_PASSWORD.replace('&', '%26')}@")
    server = ReferenceServer(db=url, log_path=tmp_path / "server.log", db_file=_db_file(tmp_path, url + "\n", 0o600))
    server.env = {"PGPASSFILE": "/nonexistent"}
    server.start()
    try:
        assert server.proc is not None
        assert PG_PASSWORD.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert "WARNING" not in server.log_path.read_text()
    finally:
        server.stop()
