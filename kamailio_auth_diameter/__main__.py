"""``python3 -m kamailio_auth_diameter``: the handler path, migrating a C-module cfg, checks.

``handler-path`` prints the file app_python3 must load; ``migrate-cfg`` rewrites a
cfg written for the C module auth_diameter; ``check`` checks something without
starting Kamailio, one mode per option: ``--cfg FILE``, the settings of a cfg file;
``--server HOST[:PORT]``, one authentication or group check against a Diameter
server through the plugin's own backend (servercheck.py).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from . import backend, migrate, secret_file, servercheck, settings
from .backend.shared import MemoryTables
from .kamailio import cfgcheck, cfgfile
from .transport.client import resolve_identity

# settings that check --server sets from an option of its own, so --set may not
SET_BY_OPTION = {
    "protocol": "--protocol",
    "peers": "--server",
    "diameter_client_host": "--server",
    "diameter_client_port": "--server",
    "origin_host": "--origin-host",
    "nonce_secret_file": "--nonce-secret-file",
}


def handler_path() -> Path:
    return Path(__file__).resolve().parent / "kamailio" / "handler.py"


def _handler_path(args: argparse.Namespace) -> int:
    print(handler_path())
    return 0


def _migrate_cfg(args: argparse.Namespace) -> int:
    """The rewritten cfg to -o (or stdout), what changed to stderr; 1 and nothing written if refused."""
    old = Path(args.old)
    try:
        text = old.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"migrate-cfg: cannot read {old}: {exc}", file=sys.stderr)
        return 1
    if args.output and os.path.exists(args.output) and os.path.samefile(args.output, old):
        print(f"migrate-cfg: -o {args.output} is the file being migrated; write to another one", file=sys.stderr)
        return 1
    try:
        result = migrate.migrate(text, args.handler or str(handler_path()))
    except migrate.MigrationError as exc:
        print(f"{old}:{exc.line}: cannot migrate: {exc.message}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(result.text, encoding="utf-8")
    else:
        sys.stdout.write(result.text)
    for line in migrate.report(result, str(old)):
        print(line, file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.cfg is not None and args.server is not None:
        print("check: --cfg and --server are two checks: give one", file=sys.stderr)
        return 2
    if args.cfg is not None:
        return _check_cfg(args)
    if args.server is not None:
        return _check_server(args)
    print("check: say what to check: --cfg FILE or --server HOST[:PORT]", file=sys.stderr)
    return 2


def _check_cfg(args: argparse.Namespace) -> int:
    """Kamailio's start-up messages about the settings, then the settings in force; 1 if Kamailio would not start."""
    argv = ["-f", args.cfg]
    for define in args.define:
        argv += ["-A", define]
    path, defines = cfgfile.from_command_line(argv)  # read as the plugin reads Kamailio's own -A
    result = cfgcheck.check(path, defines, cfgcheck.read_text)
    if result.error:
        print(result.error, file=sys.stderr)
        print(f"check --cfg: Kamailio would not start with {path}", file=sys.stderr)
        return 1
    print("\n".join([*result.messages, *result.table()]))
    return 0


class UsageError(Exception):
    """An option check --server cannot use; the message names it."""


def _check_server(args: argparse.Namespace) -> int:
    """One authentication (or group check) through the backend of --protocol, step by step;
    the exit status is the verdict (servercheck.EXIT_CODES)."""
    try:
        probe, password = _probe(args)
        with tempfile.TemporaryDirectory(prefix="auth-diameter-check-") as scratch:
            s = settings.parse(_server_settings(args, scratch))
            return _run_server_check(args, s, probe, password)
    except (UsageError, settings.SettingsError) as exc:
        print(f"check --server: {exc}", file=sys.stderr)
        return servercheck.USAGE


def _probe(args: argparse.Namespace) -> tuple[servercheck.Probe, str]:
    """The user and request of the check, and the password (none for a group check)."""
    if not args.user or not args.realm:
        raise UsageError("--user and --realm name who is checked")
    for name, value in (("--user", args.user), ("--realm", args.realm), ("--uri", args.uri or "")):
        if any(c.isspace() or c in '"\\<>' or not c.isprintable() for c in value):
            raise UsageError(f"{name} {value!r}: no spaces, quotes, backslashes or angle brackets")
    probe = servercheck.Probe(args.user, args.realm, args.method, args.uri or "", args.algorithm or "")
    if args.group is not None:
        if args.password_file or args.algorithm:
            raise UsageError("--group checks membership, with no password: drop --password-file and --algorithm")
        if not args.group or "," in args.group:
            raise UsageError(f"--group {args.group!r}: one group name, not empty, no comma")
        return probe, ""
    return probe, _password(args)


def _password(args: argparse.Namespace) -> str:
    """From --password-file (its first line), else asked on the terminal, else one line of
    standard input: never from the command line, which every user of the machine can read."""
    if args.password_file:
        try:
            warning = secret_file.check(args.password_file, "--password-file")
            with open(args.password_file, encoding="utf-8") as f:
                password = f.readline().rstrip("\r\n")
        except secret_file.InsecureFile as exc:
            raise UsageError(str(exc)) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file {args.password_file}: cannot read it: {exc}") from None
        if warning:
            print(f"check --server: {warning}", file=sys.stderr)
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password of {args.user}@{args.realm}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("no password given (--password-file, the terminal or one line on standard input)")
    return password


def _server_settings(args: argparse.Namespace, scratch: str) -> dict[str, object]:
    """The plugin's settings for the check: --set's, then the options' own. Without
    --nonce-secret-file a verifying mode gets a random secret in ``scratch``."""
    peer = _one_peer(args.server)
    raw: dict[str, object] = {}
    for item in args.set:
        name, eq, value = item.partition("=")
        name = name.strip().removeprefix(f"{settings.GROUP}.")
        if not eq:
            raise UsageError(f"--set {item!r}: NAME=VALUE")
        if name in SET_BY_OPTION:
            raise UsageError(f"--set {name}: give it with {SET_BY_OPTION[name]}")
        raw[name] = value
    raw.update(protocol=args.protocol, peers=args.server, diameter_client_host=peer.host)
    if re.search(r":[0-9]+$", args.server.strip()):
        raw["diameter_client_port"] = peer.port
    if args.origin_host:
        raw["origin_host"] = args.origin_host
    if args.nonce_secret_file:
        raw["nonce_secret_file"] = args.nonce_secret_file
    else:
        path = os.path.join(scratch, "nonce.key")
        secret_file.create_private(path)
        Path(path).write_text(os.urandom(32).hex())
        raw["nonce_secret_file"] = path
    return raw


def _one_peer(text: str) -> settings.PeerAddress:
    try:
        peers = settings.parse_peers(text, settings.DIAMETER_PORT, "--server")
    except settings.SettingsError as exc:
        raise UsageError(str(exc)) from None
    if len(peers) != 1:
        raise UsageError(f"--server {text!r}: one server")
    return peers[0]


def _run_server_check(args: argparse.Namespace, s: settings.Settings, probe: servercheck.Probe, password: str) -> int:
    watch = servercheck.Watch()
    clock = time.monotonic
    env = backend.Environment(clock=clock, log=watch.log, events=watch.event)
    chosen = backend.choose(s.protocol, env, MemoryTables(clock))
    said = f"check --server {args.server}: protocol {s.protocol}"
    if backend.needs_host_name(s.protocol):
        origin_host, origin_realm, destination_realm = resolve_identity(s, env.rank)
        said += f", Origin-Host {origin_host}, Origin-Realm {origin_realm}, Destination-Realm {destination_realm}"
    print(said)
    chosen.configure(s, clock() + s.answer_timeout / 1000.0)
    checker = servercheck.Checker(chosen, watch, clock, lambda line: print(line, flush=True), bool(s.identity_check))
    try:
        if args.group is not None:
            return checker.is_user_in(probe, args.group, bool(s.use_domain))
        return checker.authenticate(probe, password, os.urandom(8).hex())
    finally:
        chosen.close(clock() + 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kamailio_auth_diameter")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("handler-path", help='print the PATH for modparam("app_python3", "load", PATH)').set_defaults(
        run=_handler_path
    )
    m = sub.add_parser("migrate-cfg", help="rewrite a kamailio.cfg for the C module auth_diameter to use this plugin")
    m.add_argument("old", metavar="OLD.cfg")
    m.add_argument("-o", "--output", metavar="NEW.cfg", help="where to write the new cfg (default: stdout)")
    m.add_argument("--handler", metavar="PATH", help="the handler.py app_python3 loads (default: this installation's)")
    m.set_defaults(run=_migrate_cfg)
    c = sub.add_parser(
        "check",
        help="check without starting Kamailio (--cfg: a cfg file's auth_diameter settings; "
        "--server: one authentication or group check against a Diameter server)",
        epilog="check --server exit status: "
        + "; ".join(f"{code} {meaning}" for code, meaning in servercheck.EXIT_CODES.items()),
    )
    c.add_argument("--cfg", metavar="FILE", help="validate the auth_diameter.* settings of this kamailio.cfg offline")
    c.add_argument(
        "-A",
        "-D",
        "--define",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="with --cfg: a define, as kamailio -A gives it (repeatable)",
    )
    c.add_argument(
        "--server",
        metavar="HOST[:PORT]",
        help="authenticate --user (or check --group) against this Diameter server as the plugin would "
        "(port: 3000 for legacy, 3868 for the others, 5658 with --set use_tls=1)",
    )
    c.add_argument("--protocol", choices=settings.PROTOCOLS, default="legacy", help="the plugin's protocol setting")
    c.add_argument("--user", metavar="NAME", help="with --server: the digest username")
    c.add_argument("--realm", metavar="DOMAIN", help="with --server: the user's realm (From/To are sip:NAME@DOMAIN)")
    c.add_argument(
        "--password-file",
        metavar="FILE",
        help="the password: the first line of FILE (not readable by other users); "
        "default: asked on the terminal, or one line of standard input",
    )
    c.add_argument(
        "--method",
        choices=("REGISTER", "INVITE"),
        default="REGISTER",
        help="REGISTER (www, 401) or INVITE (proxy, 407); default REGISTER",
    )
    c.add_argument("--uri", metavar="SIP-URI", help="the Request-URI (default sip:DOMAIN)")
    c.add_argument(
        "--algorithm",
        choices=settings.ALGORITHMS,
        help="answer the challenge of this digest algorithm (default: the first one offered)",
    )
    c.add_argument("--group", metavar="GROUP", help='check diameter_is_user_in("From,GROUP") instead of a password')
    c.add_argument("--origin-host", metavar="FQDN", help="the origin_host setting (default: this machine's FQDN)")
    c.add_argument(
        "--nonce-secret-file",
        metavar="FILE",
        help="rfc4740-ha1, cx: the nonce_secret_file setting (default: a random secret for this check)",
    )
    c.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --server: any other auth_diameter setting, e.g. use_tls=1, answer_timeout=500 (repeatable)",
    )
    c.set_defaults(run=_check)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
