"""server/config_file: ``serve --config FILE``: every serve option as a key, checked as
the command line checks it, refused with the file, line and key, and overridden by the
command line; the example shipped in contrib/systemd stays valid and complete."""

from __future__ import annotations

import argparse
import ipaddress
import re
from pathlib import Path

import pytest

from kamailio_auth_diameter.server.__main__ import _apply_config, _parser, main
from kamailio_auth_diameter.server.config_file import ConfigError, keys, parse, read

EXAMPLE = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "server.conf"


def serve_parser() -> argparse.ArgumentParser:
    return _parser().parse_args(["serve"]).parser


def serve(tmp_path: Path, text: str, *argv: str) -> argparse.Namespace:
    """``serve --config FILE *argv`` as main() would see it, the file holding ``text``."""
    path = tmp_path / "server.conf"
    path.write_text(text)
    args = _parser().parse_args(["serve", "--config", str(path), *argv])
    _apply_config(args, ["--config", str(path), *argv])
    return args


FULL = """\
# every kind of value
db = /var/lib/kamailio-auth-diameter/users.db
legacy-listen = 0.0.0.0:3001
diameter-listen = [::1]:3868
peers = sip1.example.com,sip2.example.com
allow = 10.0.0.0/8
  allow  =  192.0.2.1
origin-host = aaa.example.com
nonce-lifetime = 30
throttle-max = 2.5
hide-unknown-users = yes
no-uri-check = off
processes = 2
idle-timeout = 0
message-timeout = 0.5
watchdog-interval = 6
pid-file = /run/x.pid
verbose = True
"""
FULL_ARGV = (
    "--db /var/lib/kamailio-auth-diameter/users.db --legacy-listen 0.0.0.0:3001 --diameter-listen [::1]:3868 "
    "--peers sip1.example.com,sip2.example.com --allow 10.0.0.0/8 --allow 192.0.2.1 --origin-host aaa.example.com "
    "--nonce-lifetime 30 --throttle-max 2.5 --hide-unknown-users --processes 2 --idle-timeout 0 "
    "--message-timeout 0.5 --watchdog-interval 6 --pid-file /run/x.pid -v"
).split()


def test_a_file_gives_exactly_what_the_same_command_line_gives(tmp_path: Path) -> None:
    from_file = vars(serve(tmp_path, FULL))
    from_argv = vars(_parser().parse_args(["serve", *FULL_ARGV]))
    assert from_file.pop("config") == str(tmp_path / "server.conf") and from_argv.pop("config") is None
    from_file.pop("parser"), from_argv.pop("parser")
    assert from_file == from_argv
    assert from_file["allow"] == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.1/32")]


def test_the_command_line_overrides_the_file(tmp_path: Path) -> None:
    text = "db = a.db\nlegacy-listen = 127.0.0.1:4000\nallow = 10.0.0.0/8\nallow = 10.1.0.0/16\nprocesses = 3\n"
    args = serve(tmp_path, text, "--allow", "any", "--legacy-listen", "127.0.0.1:3000", "--db-file", "url")
    assert args.allow == [None]  # every allow line replaced
    assert args.legacy_listen == ("127.0.0.1", 3000)  # even when it is the default
    assert (args.db, args.db_file) == (None, "url")  # --db-file replaces db, which it excludes
    assert args.processes == 3
    args = serve(tmp_path, "db-file = url\n", "--db", "b.db")
    assert (args.db, args.db_file) == ("b.db", None)


def test_a_switch_set_to_no_keeps_its_default(tmp_path: Path) -> None:
    args = serve(tmp_path, "db = a.db\nhide-unknown-users = no\nverbose = 0\n")
    assert (args.hide_unknown_users, args.verbose) == (False, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("legacy-listen = 127.0.0.1\n", ":1: legacy-listen: '127.0.0.1' is not HOST:PORT"),
        ("\n# c\nlegacy-lisen = 127.0.0.1:3000\n", ":3: unknown key 'legacy-lisen' (did you mean legacy-listen?)"),
        ("--db = a.db\n", ":1: unknown key '--db' (write it without dashes: db)"),
        ("frobnicate = 1\n", ":1: unknown key 'frobnicate' (the keys are the long options of serve, without '--')"),
        ("config = other.conf\n", ":1: unknown key 'config'"),
        ("db a.db\n", ":1: not 'key = value': 'db a.db'"),
        ("= a.db\n", ":1: not 'key = value'"),
        ("db =\n", ":1: db: no value"),
        ("processes = 0\n", ":1: processes: '0' is not a whole number of at least 1"),
        ("throttle-max = soon\n", ":1: throttle-max: 'soon' is not a number"),
        ("throttle-after = 2.5\n", ":1: throttle-after: '2.5' is not a whole number"),
        ("idle-timeout = 60 # a minute\n", ":1: idle-timeout: '60 # a minute' is not a number of seconds"),
        ("hide-unknown-users = maybe\n", ":1: hide-unknown-users: 'maybe' is not yes or no"),
        ("allow = everyone\n", ":1: allow: 'everyone' is not an address or CIDR network"),
        ("nonce-lifetime = 30\nnonce-lifetime = 60\n", ":2: nonce-lifetime: given again (first on line 1)"),
        ("db = a.db\n\ndb-file = url\n", ": db (line 1) and db-file (line 3) exclude each other: keep one"),
        (
            "db = postgresql://auth:s3cret@db.example.com/auth\n",
            ":1: db: the URL holds a password: put the URL in a file only the server's user reads and name it with "
            "db-file, or the password in PGPASSFILE",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_line_and_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "server.conf"
    path.write_text(text)
    assert main(["serve", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}{message}") and err.count("\n") == 1, err


def test_a_file_without_a_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.conf"
    path.write_text("# nothing yet\n")
    assert main(["serve", "--config", str(path)]) == 1
    assert capsys.readouterr().err == "error: serve needs --db or --db-file, on the command line or in --config\n"


def test_a_file_anyone_may_change_or_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_bytes(b"db = \xff.db\n")
    with pytest.raises(ConfigError, match=re.escape(f"--config {path}: not UTF-8 text (invalid start byte at byte 5)")):
        read(str(path))
    path.chmod(0o646)
    with pytest.raises(ConfigError, match=re.escape(f"may be changed by every user of this machine: chmod o-w {path}")):
        read(str(path))
    with pytest.raises(ConfigError, match="No such file or directory"):
        read(str(tmp_path / "missing.conf"))


def test_the_shipped_example_is_valid_shows_every_key_and_the_true_defaults() -> None:
    """contrib/systemd/server.conf: as shipped, and each commented ``#key = value`` line
    alone, is valid; every key appears; a commented value is the option's default
    where it has one (else an example)."""
    parser = serve_parser()
    table = keys(parser)
    text = EXAMPLE.read_text()
    parse(text, str(EXAMPLE), parser)
    shown = set()
    for line in text.splitlines():
        m = re.fullmatch(r"#?([a-z0-9-]+) = (.+)", line)
        if m is None:
            continue
        key = m.group(1)
        shown.add(key)
        value = parse(f"{key} = {m.group(2)}\n", str(EXAMPLE), parser).values[table[key].dest]
        if table[key].default is not None:
            assert value == table[key].default, f"{key}: {m.group(2)} is not its default {table[key].default}"
    missing = set(table) - shown
    assert not missing, f"add {', '.join(sorted(missing))} to {EXAMPLE}"
