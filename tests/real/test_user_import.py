"""``user import`` from Kamailio's own subscriber table: the table made by Debian's
auth_db schema (/usr/share/kamailio/postgres, kamailio-postgres-modules) in a PostgreSQL
of the test's own and filled by ``kamctl add``, exported with psql's ``\\copy ... CSV
HEADER`` or read directly; the imported users then register through a real Kamailio
(kamailio.cfg.example) and the reference server with the passwords kamctl was given.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Postgres, ReferenceServer, example_kamailio, postgres_bin, running, server_cli, sipp
from tests.real.conftest import run

pytestmark = pytest.mark.kamailio

KAMAILIO_SCHEMA = Path("/usr/share/kamailio/postgres")
SUBSCRIBERS = (("alice", "example.com", "secret"), ("bob", "example.com", "bobpw"), ("Carol", "Example.COM", "c4rol"))
CAROL_SKIPPED = "id 3 Carol@Example.COM: skipped: domain 'Example.COM' is not in lower case"


def psql(postgres: Postgres, dbname: str, *args: str) -> str:
    cmd = [str(postgres_bin() / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-d", dbname]
    r = subprocess.run([*cmd, "-v", "ON_ERROR_STOP=1", "-q", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def kamctl(postgres: Postgres, home: Path, *args: str) -> None:
    """Kamailio's own user tool against the test's database (its settings in the
    environment; HOME keeps a developer's ~/.kamctlrc out)."""
    env = {"DBENGINE": "PGSQL", "DBHOST": "127.0.0.1", "DBPORT": str(postgres.port), "DBNAME": "kamailio"}
    env |= {"DBRWUSER": "postgres", "DBRWPW": "-", "DBROUSER": "postgres", "DBROPW": "-", "HOME": str(home)}
    r = subprocess.run(["kamctl", *args], capture_output=True, text=True, timeout=30, env={**os.environ, **env})
    assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.fixture(scope="module")
def subscriber_table(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Database ``kamailio`` with Kamailio's tables and three users made by kamctl (which
    also stores their passwords in clear, as it does by default); yields a kamctl HOME."""
    home = tmp_path_factory.mktemp("kamctl")
    psql(postgres, postgres.dbname, "-c", "CREATE DATABASE kamailio")
    for schema in ("standard-create.sql", "auth_db-create.sql"):
        psql(postgres, "kamailio", "-f", str(KAMAILIO_SCHEMA / schema))
    for user, domain, password in SUBSCRIBERS:
        kamctl(postgres, home, "add", f"{user}@{domain}", password)
    yield home


def test_a_csv_export_is_imported_and_its_users_register(
    postgres: Postgres, subscriber_table: Path, tmp_path: Path
) -> None:
    export = tmp_path / "subscribers.csv"
    psql(postgres, "kamailio", "-c", f"\\copy subscriber TO '{export}' CSV HEADER")
    assert export.read_text().splitlines()[0] == "id,username,domain,password,ha1,ha1b"
    db = tmp_path / "users.db"
    r = server_cli(db, "user", "import", str(export))
    assert r.returncode == 1, r.stderr  # Carol's row is skipped, the others imported
    lines = r.stdout.splitlines()
    assert lines[0].startswith(CAROL_SKIPPED.replace("id 3", "line 4")), r.stdout
    assert lines[1:] == ["imported 2, updated 0, unchanged 0, skipped 1"]
    assert server_cli(db, "user", "list").stdout == "alice\texample.com\nbob\texample.com\n"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("users.db*"))
    assert b"alice" in stored and b"secret" not in stored and b"bobpw" not in stored
    again = server_cli(db, "user", "import", "-", stdin=export.read_text())
    assert again.stdout.splitlines()[1:] == ["imported 0, updated 0, unchanged 2, skipped 1"]

    server = ReferenceServer(db=db, log_path=tmp_path / "server.log")
    kamailio = example_kamailio(tmp_path / "kamailio", server.port)
    with running(server, kamailio):
        for auth_user in ("alice", "alice@example.com"):  # ha1, then ha1b
            run(kamailio, tmp_path / auth_user, "register_auth", auth_user=auth_user, password="secret")
        run(kamailio, tmp_path, "register_auth", user="bob", auth_user="bob", password="bobpw")
        run(kamailio, tmp_path, "register_rechallenge", auth_user="alice", password="bobpw")
        r = sipp("register_forbidden", kamailio.sip_port, run_dir=tmp_path / "carol", user="Carol", auth_user="Carol")
        assert r.returncode == 0, r.output  # not imported: an unknown user
    kamailio.assert_no_crash()


def test_the_table_is_imported_directly_and_a_changed_password_only_with_update(
    postgres: Postgres, subscriber_table: Path, tmp_path: Path
) -> None:
    """From Kamailio's database into ours (PostgreSQL too): a user whose password changed
    in Kamailio afterwards is reported and kept, and replaced with --update."""
    source, ours = ("--from-postgresql", postgres.url.replace("/auth", "/kamailio")), postgres.url
    r = server_cli(ours, "user", "import", *source)
    assert (r.returncode, r.stdout.splitlines()[1:]) == (1, ["imported 2, updated 0, unchanged 0, skipped 1"])
    assert r.stdout.startswith(CAROL_SKIPPED)
    kamctl(postgres, subscriber_table, "passwd", "bob@example.com", "n3w")
    r = server_cli(ours, "user", "import", *source)
    lines = r.stdout.splitlines()
    assert lines[0] == "id 2 bob@example.com: skipped: already there with other hashes, kept (--update replaces them)"
    assert lines[1].startswith(CAROL_SKIPPED)
    assert lines[2:] == ["imported 0, updated 0, unchanged 1, skipped 2"]
    server = ReferenceServer(db=ours, log_path=tmp_path / "server.log")
    kamailio = example_kamailio(tmp_path / "kamailio", server.port)
    with running(server, kamailio):
        run(kamailio, tmp_path / "old", "register_auth", user="bob", auth_user="bob", password="bobpw")
        r = server_cli(ours, "user", "import", "--update", *source)
        lines = r.stdout.splitlines()
        assert lines[0] == "id 2 bob@example.com: updated: its hashes replaced (--update)"
        assert lines[2:] == ["imported 0, updated 1, unchanged 1, skipped 1"]
        run(kamailio, tmp_path / "new", "register_auth", user="bob", auth_user="bob@example.com", password="n3w")
        run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret")
    kamailio.assert_no_crash()
    dump = psql(postgres, postgres.dbname, "-c", "SELECT * FROM users")
    assert "alice" in dump and "secret" not in dump and "n3w" not in dump
