"""The server as a service: the systemd unit and sysusers snippet in contrib/systemd,
checked offline by systemd's own tools, and ``serve --config FILE`` (the unit's one
command line) serving a real Kamailio, with the database password only in a file.

No systemd runs as PID 1 here, so the unit is verified and scored offline
(``systemd-analyze verify`` and ``security --offline``) against a root directory
holding systemd's targets and a stand-in for the installed server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT, Postgres, ReferenceServer, example_kamailio, free_port, running, server_cli
from tests.real.conftest import USERS, run

CONTRIB = ROOT / "contrib" / "systemd"
UNIT = CONTRIB / "kamailio-auth-diameter.service"
SYSTEMD_UNITS = Path("/usr/lib/systemd/system")
SERVER_BIN = "opt/kamailio-auth-diameter/bin/kamailio-auth-diameter-server"


def systemd_root(tmp_path: Path, unit_text: str) -> Path:
    """A root for systemd-analyze: the system's targets (the unit's default dependencies),
    an executable where the unit's ExecStart points, and the unit."""
    root = tmp_path / "root"
    units = root / SYSTEMD_UNITS.relative_to("/")
    units.mkdir(parents=True)
    for target in SYSTEMD_UNITS.glob("*.target"):
        shutil.copy2(target, units, follow_symlinks=False)
    server = root / SERVER_BIN
    server.parent.mkdir(parents=True)
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / UNIT.name).write_text(unit_text)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}", UNIT.name], capture_output=True, text=True, timeout=60
    )


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """--man=no: the check of Documentation= man pages needs no man here; nothing else is skipped."""
    r = analyze(systemd_root(tmp_path, UNIT.read_text()), "verify", "--man=no")
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        (("ProtectSystem=strict", "ProtectSytem=strict"), "ProtectSytem"),  # unknown key: ignored, with a warning
        (("ProtectSystem=strict", "ProtectSystem=very"), "very"),  # a bad value: the same
        (("/opt/kamailio-auth-diameter/bin/", "/opt/elsewhere/bin/"), "/opt/elsewhere/bin/"),  # no such executable
    ],
)
def test_verify_would_catch_a_broken_unit(tmp_path: Path, change: tuple[str, str], culprit: str) -> None:
    """The clean unit gives no output at all, so each complaint shows (its wording
    differs between systemd versions: only the culprit is looked for)."""
    r = analyze(systemd_root(tmp_path, UNIT.read_text().replace(*change)), "verify", "--man=no")
    assert culprit in r.stdout + r.stderr


def test_the_unit_runs_serve_as_its_own_user_in_a_read_only_system(tmp_path: Path) -> None:
    settings = [line for line in UNIT.read_text().splitlines() if line and not line.startswith("#")]
    for wanted in (
        "User=kamailio-auth-diameter",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "StateDirectory=kamailio-auth-diameter",
        "StateDirectoryMode=0700",
        "CapabilityBoundingSet=",
    ):
        assert wanted in settings
    (exec_start,) = (s for s in settings if s.startswith("ExecStart="))
    assert exec_start == f"ExecStart=/{SERVER_BIN} serve --config /etc/kamailio-auth-diameter/server.conf"
    # the exposure level, 0 (locked down) to 10 (as exposed as a unit can be; 1.4 with
    # systemd 252), is shown with one decimal and compared with --threshold in tenths
    r = analyze(systemd_root(tmp_path, UNIT.read_text()), "security", "--offline=yes", "--threshold=20")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Overall exposure level for kamailio-auth-diameter.service: [01]\.\d OK", r.stdout), r.stdout


def test_sysusers_makes_the_service_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    snippet = CONTRIB / "kamailio-auth-diameter.sysusers"
    r = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(snippet)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (user,) = (line for line in (tmp_path / "etc/passwd").read_text().splitlines() if line.startswith("kamailio"))
    name, _, uid, gid, _, home, shell = user.split(":")
    assert (name, home, shell) == ("kamailio-auth-diameter", "/", "/usr/sbin/nologin")
    assert int(uid) < 1000 and f"kamailio-auth-diameter:x:{gid}:" in (tmp_path / "etc/group").read_text()


# --- serve --config ---------------------------------------------------------------------


@pytest.mark.kamailio
def test_serve_with_a_config_file_alone_authenticates_through_kamailio(tmp_path: Path) -> None:
    """The unit's command line: every option from the file (a switch among them, whose
    effect shows: an unknown user is challenged again instead of refused)."""
    port = free_port()
    config = tmp_path / "server.conf"
    config.write_text(
        "# as in contrib/systemd/server.conf\n"
        f"db = {tmp_path / 'users.db'}\n"
        f"legacy-listen = 127.0.0.1:{port}\n"
        "allow = 127.0.0.0/8\n"
        "allow = ::1\n"
        "hide-unknown-users = yes\n"
        "verbose = yes\n"
    )
    server = ReferenceServer(db=tmp_path / "users.db", log_path=tmp_path / "server.log", port=port, config=config)
    server.add_user(*USERS[0])
    kamailio = example_kamailio(tmp_path / "kamailio", port)
    with running(server, kamailio):
        run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret")
        run(kamailio, tmp_path, "register_rechallenge", user="mallory", auth_user="mallory", password="x")
    log = server.log_path.read_text()
    assert f"legacy listener on 127.0.0.1:{port} " in log and "DEBUG" in log
    kamailio.assert_no_crash()


@pytest.mark.kamailio
def test_the_database_password_is_only_in_a_credential_file(postgres: Postgres, tmp_path: Path) -> None:
    """PostgreSQL demanding a password; the URL with it in a file mode 0400 (as systemd
    hands over a LoadCredential=), named by db-file in the config: neither the command
    line nor the config file holds it, and the server serves."""
    password = "c0rrect-h0rse"
    server_cli(postgres.url, "user", "add", *USERS[0][:2], stdin=f"{USERS[0][2]}\n")
    postgres.require_password(password)
    credential = tmp_path / "credentials" / "db-url"
    credential.parent.mkdir()
    credential.write_text(postgres.url.replace("postgres@", f"postgres:{password}@") + "\n")
    credential.chmod(0o400)
    port = free_port()
    config = tmp_path / "server.conf"
    config.write_text(f"db-file = {credential}\nlegacy-listen = 127.0.0.1:{port}\n")
    config.chmod(0o644)
    server = ReferenceServer(db=postgres.url, log_path=tmp_path / "server.log", port=port, config=config)
    server.env = {"PGPASSFILE": "/nonexistent"}
    kamailio = example_kamailio(tmp_path / "kamailio", port)
    with running(server, kamailio):
        assert server.proc is not None
        assert password.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret")
    assert password not in server.log_path.read_text() + config.read_text()
    kamailio.assert_no_crash()
