"""``python3 -m kamailio_auth_diameter.server``: serve, and manage users and groups.

serve [--config FILE] --db FILE|URL [--legacy-listen HOST:PORT] [--diameter-listen HOST:PORT] [--peers any|HOST,HOST]
      [--diameter-tls-listen HOST:PORT --tls-cert FILE --tls-key FILE [--tls-ca FILE]]
      [--ha1-peer PATTERN ...] [--allow CIDR ...] [--processes N] [--max-connections N] [--idle-timeout SECONDS]
      [--metrics-listen [HOST:]PORT [--metrics-allow-remote]] ...
user add|del|list --db FILE|URL ...      group add|del|list --db FILE|URL ...
user import --db FILE|URL [--update] [--dry-run] CSV|- | --from-postgresql URL [--table subscriber]

--db is an SQLite file, or a postgresql:// URL (needs the 'postgresql' extra) for
several server instances sharing users, groups and nonces; --db-file FILE reads it
from the first line of FILE instead (a URL with a password stays out of ps).
serve --config FILE reads its options from FILE, one "key = value" a line (see
config_file); options on the command line override it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import ipaddress
import logging
import os
import resource
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from .. import secret_file
from ..logtext import printable
from ..nonce import NonceFactory
from ..wire.base import Identity
from . import config_file
from .app import LegacyServer, serve
from .auth import DigestChecker, LegacyAuthority, SipAuthority
from .diameter import (
    DiameterResponder,
    TlsSetupError,
    parse_ha1_peer,
    parse_peers,
    serve_diameter,
    server_tls_context,
)
from .limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_PER_ADDRESS,
    DEFAULT_MESSAGE_TIMEOUT,
    Limits,
    default_max_connections,
    fd_reserve,
)
from .listener import LOOPBACK, Guard, bind, raise_fd_limit
from .metrics import Metrics, multiprocess_directory
from .processes import supervise
from .store import POSTGRES_SCHEMES, SqlStore, StoreError, open_store
from .subscribers import Action, Decision, SubscriberError, plan, read_csv, read_postgres, summary
from .throttle import ThrottlePolicy

if TYPE_CHECKING:
    from .exporter import Exporter

log = logging.getLogger("kamailio_auth_diameter.server")
DEFAULT_NONCE_LIFETIME = 60  # s; see README "Security": the counts make replays fail, this bounds the rest
THROTTLE = ThrottlePolicy()  # the defaults

DB_HELP = "SQLite file, or postgresql://USER@HOST:PORT/DBNAME (tables created on first use)"
DB_FILE_HELP = "read --db from the first line of FILE (not readable by other users), so that no password is in ps"


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _metrics_listen(text: str) -> tuple[str, int]:
    """``--metrics-listen``: HOST:PORT, or a bare PORT on 127.0.0.1."""
    if text.isdigit() and 0 < int(text) < 65536:
        return "127.0.0.1", int(text)
    try:
        return _hostport(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT or PORT") from None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if text == "any":
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an address or CIDR network") from None


def _peers(text: str) -> frozenset[str] | None:
    try:
        return parse_peers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ha1_peer(text: str) -> str:
    try:
        return parse_ha1_peer(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400 * 7:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 604800")
    return value


def _message_seconds(text: str) -> float:
    value = _seconds(text)
    if not 0.1 <= value <= 300:
        raise argparse.ArgumentTypeError(f"{text!r} is outside 0.1..300 seconds")
    return value


def _watchdog_interval(text: str) -> float:
    value = float(text)
    if not 6 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside 6..3600 (RFC 3539: Tw is at least 6 s)")
    return value


def _database_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    db = parser.add_mutually_exclusive_group(required=required)
    db.add_argument("--db", help=DB_HELP)
    db.add_argument("--db-file", metavar="FILE", help=DB_FILE_HELP)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m kamailio_auth_diameter.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="answer Diameter requests")
    s.set_defaults(parser=s)  # --config reads its options
    s.add_argument(
        "--config",
        metavar="FILE",
        help="read the options from FILE, one 'key = value' a line, the key an option's name without '--' "
        "(e.g. legacy-listen = 127.0.0.1:3000); options given here override it",
    )
    _database_options(s, required=False)  # --db or --db-file, here or in --config
    s.add_argument(
        "--legacy-listen",
        type=_hostport,
        default=("127.0.0.1", 3000),
        metavar="HOST:PORT",
        help="where Kamailio's auth_diameter (or our plugin in legacy mode) connects (default 127.0.0.1:3000)",
    )
    s.add_argument(
        "--diameter-listen",
        type=_hostport,
        metavar="HOST:PORT",
        help="also answer RFC 6733 peers with the RFC 4740 SIP application here (standard port 3868; default: off)",
    )
    s.add_argument(
        "--diameter-tls-listen",
        type=_hostport,
        metavar="HOST:PORT",
        help="also answer them over TLS 1.2+ here, handshake before CER (standard port 5658; default: off)",
    )
    s.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) of --diameter-tls-listen")
    s.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert, unencrypted")
    s.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="PEM CA certificates: peers on --diameter-tls-listen must present a certificate they signed "
        "(default: no client certificate asked for)",
    )
    s.add_argument(
        "--peers",
        type=_peers,
        default=None,
        metavar="any|HOST,HOST",
        help="Origin-Hosts whose CER is accepted on --diameter-listen; others get 3010 (default any)",
    )
    s.add_argument(
        "--ha1-peer",
        type=_ha1_peer,
        action="append",
        metavar="PATTERN",
        help="Origin-Host of a Diameter peer trusted with users' HA1s (RFC 4740 Flow B, 3GPP Cx), or '*.' and a "
        "domain for every host one label below it, e.g. *.proxy.example.com for each Kamailio worker "
        "w<rank>.proxy.example.com (repeatable; default: nobody, and Cx MARs get 5012)",
    )
    s.add_argument(
        "--allow",
        type=_network,
        action="append",
        metavar="CIDR",
        help="client addresses allowed to connect (repeatable; 'any' for all); default: loopback only",
    )
    s.add_argument("--origin-host", default="aaa.localdomain", help="Origin-Host put in answers")
    s.add_argument("--origin-realm", default="localdomain", help="Origin-Realm put in answers")
    a = s.add_argument_group("digest checks")
    a.add_argument(
        "--nonce-lifetime",
        type=_count,
        default=DEFAULT_NONCE_LIFETIME,
        metavar="SECONDS",
        help="how long a challenge's nonce is accepted; the database keeps each nonce's count until then "
        f"(default {DEFAULT_NONCE_LIFETIME})",
    )
    a.add_argument(
        "--throttle-after",
        type=int,
        default=THROTTLE.free,
        metavar="N",
        help="wrong responses in a row a user may send before the next ones go unchecked for a while "
        f"(default {THROTTLE.free})",
    )
    a.add_argument(
        "--throttle-max",
        type=float,
        default=THROTTLE.max_delay,
        metavar="SECONDS",
        help=f"ceiling of that while, which doubles from 1 s; 0 turns throttling off (default {THROTTLE.max_delay:g})",
    )
    a.add_argument(
        "--hide-unknown-users",
        action="store_true",
        help="answer an unknown user as a wrong password (legacy: 4001 and a challenge, not 5003; "
        "RFC 4740: 4001, not 5032), so replies do not tell which users exist",
    )
    a.add_argument(
        "--no-uri-check",
        action="store_true",
        help="accept a digest uri that is not the request's Request-URI; only behind a front end that rewrites "
        "Request-URIs, as it lets a captured request be sent to another destination",
    )
    s.add_argument(
        "--processes",
        type=_count,
        default=1,
        metavar="N",
        help="server processes sharing the port with SO_REUSEPORT, each replaced if it dies (default 1)",
    )
    c = s.add_argument_group("connection limits (per server process, all listeners together)")
    c.add_argument(
        "--max-connections",
        type=_count,
        metavar="N",
        help="connections held at most; a newcomer beyond them closes the least recently active one "
        "(default: what the file descriptor limit leaves, at most 10000)",
    )
    c.add_argument(
        "--max-connections-per-address",
        type=_count,
        metavar="N",
        help=f"the same, per client address (default {DEFAULT_MAX_PER_ADDRESS}, or --max-connections if lower)",
    )
    c.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"close a connection with no message for this long; 0: never (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    c.add_argument(
        "--message-timeout",
        type=_message_seconds,
        default=DEFAULT_MESSAGE_TIMEOUT,
        metavar="SECONDS",
        help="close a connection whose message or TLS handshake, once begun, is not complete this long after, "
        f"or that leaves our answers unread this long (default {DEFAULT_MESSAGE_TIMEOUT:g})",
    )
    s.add_argument(
        "--watchdog-interval",
        type=_watchdog_interval,
        default=30.0,
        metavar="SECONDS",
        help="Tw: a DWR to a peer silent this long, and the connection closed after twice as long "
        "(RFC 3539; at least 6, default 30)",
    )
    m = s.add_argument_group("metrics")
    m.add_argument(
        "--metrics-listen",
        type=_metrics_listen,
        metavar="[HOST:]PORT",
        help="serve the server's metrics for Prometheus over HTTP here, a bare PORT on 127.0.0.1 (default: off)",
    )
    m.add_argument(
        "--metrics-allow-remote",
        action="store_true",
        help="let --metrics-listen be an address other than loopback: anyone who reaches it reads the counts",
    )
    s.add_argument("--pid-file", help="write the main process id here")
    s.add_argument("-v", "--verbose", action="store_true", help="log every request")

    for noun, args in (("user", ("USERNAME", "REALM")), ("group", ("NAME", "GROUP"))):
        n = sub.add_parser(noun, help=f"manage {noun}s")
        nsub = n.add_subparsers(dest="action", required=True)
        add = nsub.add_parser("add")
        dele = nsub.add_parser("del")
        for a in (add, dele):
            _database_options(a)
            for arg in args:
                a.add_argument(arg.lower(), metavar=arg)
        if noun == "user":
            add.add_argument(
                "password",
                nargs="?",
                metavar="-",
                help="the password is asked for twice on a terminal, else read as one line from standard input; "
                "never give it here",
            )
            _import_options(nsub)
        _database_options(nsub.add_parser("list"))
    return p


def _delimiter(text: str) -> str:
    if text == "tab":
        return "\t"
    if len(text) != 1 or text in '"\r\n':
        raise argparse.ArgumentTypeError(f"{text!r} is not one character other than a quote or line break (or 'tab')")
    return text


def _import_options(nsub: argparse._SubParsersAction) -> None:
    i = nsub.add_parser(
        "import",
        help="users from Kamailio's subscriber table (auth_db), by their hashes",
        description="Import users from Kamailio's subscriber table: username, domain, ha1 and ha1b are kept as they "
        "are (the password column is never read). A user already in the database is reported and kept.",
    )
    _database_options(i)
    source = i.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "csv",
        nargs="?",
        metavar="CSV",
        help="an export with a header row naming username, domain, ha1, ha1b ('-': standard input), e.g. psql's "
        "\\copy subscriber TO 'subscribers.csv' CSV HEADER",
    )
    source.add_argument(
        "--from-postgresql",
        metavar="URL",
        help="read the table itself from this PostgreSQL database (a password: in ~/.pgpass or PGPASSFILE)",
    )
    i.add_argument("--table", help="the table --from-postgresql reads, SCHEMA.TABLE allowed (default subscriber)")
    i.add_argument(
        "--delimiter",
        type=_delimiter,
        metavar="CHAR",
        help="the CSV's field separator, 'tab' for a tab (default: found in the header line among , tab ; |)",
    )
    i.add_argument(
        "--update",
        action="store_true",
        help="replace the hashes of users already in the database (default: keep them, report the row, exit 1)",
    )
    i.add_argument("--dry-run", action="store_true", help="say what would be done, write nothing")


def _import(args: argparse.Namespace) -> int:
    """``user import``: every row decided before anything is written, then the writes in
    one transaction; each row not imported is printed with its reason, then the counts.
    Exit status 1 when a row was skipped (the others are imported all the same)."""
    if args.from_postgresql is None:
        if args.table is not None:
            raise StoreError("--table goes with --from-postgresql")
        path = "/dev/stdin" if args.csv == "-" else args.csv
        with open(path, encoding="utf-8-sig", newline="") as f:
            try:
                rows = list(read_csv(f, args.delimiter))
            except SubscriberError as exc:
                raise SubscriberError(f"{args.csv}: {exc}") from None
    else:
        if args.delimiter is not None:
            raise StoreError("--delimiter goes with a CSV file, not --from-postgresql")
        if _has_password(args.from_postgresql):
            log.warning(
                "the --from-postgresql URL holds a password, which every user of this machine can read (ps, /proc) "
                "while this runs: give it in ~/.pgpass or PGPASSFILE"
            )
        rows = read_postgres(args.from_postgresql, args.table or "subscriber")
    store = open_store(_database(args))
    try:
        decisions = plan(rows, store.user_hashes, args.update)
        if not args.dry_run:
            with store.transaction():
                decisions = [_write(store, d) for d in decisions]
    finally:
        store.close()
    for d in decisions:
        if d.action in (Action.SKIP, Action.UPDATE):
            print(d.line())
    print(summary(decisions) + (" (dry run: nothing written)" if args.dry_run else ""))
    return 1 if any(d.action is Action.SKIP for d in decisions) else 0


def _write(store: SqlStore, d: Decision) -> Decision:
    """One decided row into the store; a user another command added since the row was
    decided is kept and the row skipped."""
    if d.user is None or d.action not in (Action.IMPORT, Action.UPDATE):
        return d
    u = d.user
    if store.add_user_hashes(u.username, u.realm, u.ha1, u.ha1b, replace=d.action is Action.UPDATE):
        return d
    return Decision(Action.SKIP, d.where, d.who, u, "added by another command while importing, kept")


def _database(args: argparse.Namespace) -> str:
    """The --db value, or the first line of --db-file; a password on the command line is logged loudly."""
    if args.db_file is None:
        if args.db.startswith(POSTGRES_SCHEMES) and _has_password(args.db):
            log.warning(
                "the --db URL holds a password, which every user of this machine can read (ps, /proc) while "
                "this runs: give it in ~/.pgpass, PGPASSFILE or PGPASSWORD, or the URL with --db-file"
            )
        return args.db
    warning = secret_file.check(args.db_file, "--db-file")
    if warning:
        log.warning("%s", warning)
    try:
        with open(args.db_file, encoding="utf-8") as f:
            db = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"--db-file {args.db_file}: {getattr(exc, 'strerror', None) or exc}") from None
    if not db:
        raise StoreError(f"--db-file {args.db_file}: its first line is empty")
    return db


def _has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return bool(parts.password) or "password" in parse_qs(parts.query)
    except ValueError:
        return False


def _password(given: str | None) -> str:
    """user add's password: asked twice without echo on a terminal, else one line of standard input."""
    if given not in (None, "-"):
        raise StoreError(
            "a password on the command line can be read by every user of this machine (ps) and stays in the "
            "shell's history: leave it out, and type it when asked or pipe it on standard input"
        )
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise StoreError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise StoreError("no password given")
    return password


def _manage(args: argparse.Namespace) -> int:
    if args.command == "user" and args.action == "import":
        return _import(args)
    password = _password(args.password) if args.command == "user" and args.action == "add" else ""
    store = open_store(_database(args))
    try:
        if args.command == "user":
            if args.action == "add":
                store.add_user(args.username, args.realm, password)
            elif args.action == "del":
                store.delete_user(args.username, args.realm)
            else:
                for username, realm in store.users():
                    print(f"{username}\t{realm}")
        elif args.action == "add":
            store.add_group(args.name, args.group)
        elif args.action == "del":
            store.delete_group(args.name, args.group)
        else:
            for name, group in store.groups():
                print(f"{name}\t{group}")
    finally:
        store.close()
    return 0


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The --diameter-tls-listen context, built before any fork so a bad file stops the start."""
    files = [o for o, v in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key), ("--tls-ca", args.tls_ca)) if v]
    if not args.diameter_tls_listen:
        if files:
            raise TlsSetupError(f"{', '.join(files)} without --diameter-tls-listen")
        return None
    if not args.tls_cert or not args.tls_key:
        raise TlsSetupError("--diameter-tls-listen needs --tls-cert and --tls-key")
    warning = secret_file.check(args.tls_key, "--tls-key")
    if warning:
        log.warning("%s", warning)
    return server_tls_context(args.tls_cert, args.tls_key, args.tls_ca)


def _limits(args: argparse.Namespace) -> Limits:
    """The connection limits, with the file descriptor limit raised as far as it goes;
    a cap the descriptors cannot back is refused."""
    nofile = raise_fd_limit()
    room = nofile - fd_reserve(nofile)
    if args.max_connections is not None and args.max_connections > room:
        raise StoreError(
            f"--max-connections {args.max_connections} needs {args.max_connections + fd_reserve(nofile)} file "
            f"descriptors, but the limit is {nofile} (RLIMIT_NOFILE): lower it, or raise the limit "
            "(LimitNOFILE= in a systemd unit, ulimit -n)"
        )
    total = args.max_connections or default_max_connections(nofile)
    per_address = args.max_connections_per_address or min(DEFAULT_MAX_PER_ADDRESS, total)
    if per_address > total:
        raise StoreError(f"--max-connections-per-address {per_address} is more than --max-connections {total}")
    return Limits(total, per_address, args.idle_timeout, args.message_timeout)


@dataclass(frozen=True)
class Listeners:
    """One server process's listening sockets."""

    legacy: socket.socket
    diameter: socket.socket | None
    diameter_tls: socket.socket | None
    metrics: socket.socket | None

    def close(self) -> None:
        for sock in (self.legacy, self.diameter, self.diameter_tls, self.metrics):
            if sock is not None:
                sock.close()


def _served(listeners: Listeners) -> tuple[str, ...]:
    """The metrics' labels of the listeners a process serves."""
    return tuple(
        label
        for label, sock in (
            ("legacy", listeners.legacy),
            ("diameter", listeners.diameter),
            ("diameter_tls", listeners.diameter_tls),
        )
        if sock is not None
    )


def _bind(args: argparse.Namespace, tls: ssl.SSLContext | None, reuse_port: bool) -> Listeners:
    return Listeners(
        bind(*args.legacy_listen, reuse_port, "--legacy-listen"),
        bind(*args.diameter_listen, reuse_port, "--diameter-listen") if args.diameter_listen else None,
        bind(*args.diameter_tls_listen, reuse_port, "--diameter-tls-listen") if tls is not None else None,
        bind(*args.metrics_listen, reuse_port, "--metrics-listen") if args.metrics_listen else None,
    )


def _check_metrics(args: argparse.Namespace) -> None:
    """The counts name no user, but tell anyone who reads them how the server is used and
    failing: loopback unless the operator says otherwise."""
    if args.metrics_listen is None:
        if args.metrics_allow_remote:
            raise StoreError("--metrics-allow-remote without --metrics-listen")
        return
    host, port = args.metrics_listen
    if not args.metrics_allow_remote and not _is_loopback(host):
        raise StoreError(
            f"--metrics-listen {_address(host, port)} is not a loopback address: anyone who reaches it would read "
            "the server's counts; add --metrics-allow-remote to serve them there (and let a firewall choose who "
            "reaches it)"
        )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: whatever it resolves to, say it as an address


def _exporter(args: argparse.Namespace) -> Exporter | None:
    """``--metrics-listen``'s exporter; the metrics files' directory made first with several processes."""
    if args.metrics_listen is None:
        return None
    directory = multiprocess_directory(args.processes)
    # only now: prometheus_client decides between values in memory and in files when first
    # imported, from the PROMETHEUS_MULTIPROC_DIR that multiprocess_directory has just set
    from .exporter import Exporter

    return Exporter(directory)


def _run_process(
    args: argparse.Namespace,
    db: str,
    listeners: Listeners,
    tls: ssl.SSLContext | None,
    limits: Limits,
    exporter: Exporter | None,
) -> None:
    store = open_store(db, server=True)
    if store.warning:
        log.warning("%s", store.warning)
    metrics = exporter.start(_served(listeners)) if exporter is not None else Metrics()
    nonces = NonceFactory(store.nonce_secret(), lifetime=args.nonce_lifetime)
    checker = DigestChecker(store, nonces, _throttle(args), check_uri=not args.no_uri_check, events=metrics)
    hide = args.hide_unknown_users
    allow = [] if args.allow and None in args.allow else list(args.allow or LOOPBACK)
    identity = Identity(args.origin_host, args.origin_realm)
    server = LegacyServer(
        LegacyAuthority(store, nonces, checker=checker, hide_unknown_users=hide, events=metrics), identity, metrics
    )
    log.info(
        "at most %d connections, %d per address (file descriptor limit %d); idle timeout %s, message timeout %g s",
        limits.max_connections,
        limits.max_per_address,
        resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        f"{limits.idle_timeout:g} s" if limits.idle_timeout else "off",
        limits.message_timeout,
    )
    log.info("legacy listener on %s:%d (pid %d, db %s)", *args.legacy_listen, os.getpid(), store.where)
    responder = None
    if listeners.diameter is not None or listeners.diameter_tls is not None:
        responder = DiameterResponder(
            SipAuthority(store, nonces, checker=checker, hide_unknown_users=hide, events=metrics),
            identity,
            args.peers,
            watchdog_interval=args.watchdog_interval,
            ha1_peers=tuple(args.ha1_peer or ()),
            metrics=metrics,
        )
        _log_ha1_peers(args)
    if listeners.diameter is not None:
        log.info(
            "Diameter (RFC 6733, RFC 4740, 3GPP Cx) listener on %s:%d as %s", *args.diameter_listen, args.origin_host
        )
    if listeners.diameter_tls is not None:
        log.info(
            "Diameter over TLS listener on %s:%d as %s%s",
            *args.diameter_tls_listen,
            args.origin_host,
            ", client certificates required" if args.tls_ca else "",
        )
    if exporter is not None:
        log.info(
            "metrics on http://%s/metrics%s",
            _address(*args.metrics_listen),
            f", every process's counts summed (their files in {exporter.directory})" if exporter.directory else "",
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        guard = Guard(limits, allow, metrics=metrics)
        tasks = [serve(server, listeners.legacy, stop, guard)]
        if exporter is not None and listeners.metrics is not None:
            tasks.append(exporter.serve(listeners.metrics, stop))
        if responder is not None:
            tasks += [
                serve_diameter(responder, sock, stop, ctx, guard)
                for sock, ctx in ((listeners.diameter, None), (listeners.diameter_tls, tls))
                if sock is not None
            ]
        await asyncio.gather(*tasks)
        guard.stop()

    asyncio.run(main())
    log.info("stopped: legacy %s", server.stats)
    if responder is not None:
        log.info("stopped: Diameter %s", responder.stats)


def _log_ha1_peers(args: argparse.Namespace) -> None:
    """Who gets HA1s, and a warning when they would cross a network in clear."""
    if not args.ha1_peer:
        log.info("HA1 is given to no peer (no --ha1-peer): RFC 4740 Flow A only, Cx MARs get 5012")
        return
    log.info("HA1 is given to peers %s (RFC 4740 Flow B, 3GPP Cx)", ", ".join(args.ha1_peer))
    if args.diameter_listen and args.diameter_listen[0] not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "--ha1-peer with --diameter-listen on %s: HA1s are password equivalents and cross the network in clear "
            "there, to whoever claims a trusted Origin-Host from an --allow address; prefer --diameter-tls-listen "
            "with --tls-ca, where the client certificate must name that Origin-Host",
            args.diameter_listen[0],
        )


def _throttle(args: argparse.Namespace) -> ThrottlePolicy:
    try:
        return ThrottlePolicy(free=args.throttle_after, max_delay=args.throttle_max)
    except ValueError:
        raise StoreError(
            f"--throttle-after and --throttle-max must not be negative, and --throttle-max at most "
            f"{THROTTLE.forget_after:g}"
        ) from None


def _apply_config(args: argparse.Namespace, argv: list[str]) -> None:
    """serve --config: the file's settings, under those ``argv`` (serve's options) gives.
    A database password has no place in it: the file would then be a secret."""
    config = config_file.parse(config_file.read(args.config), args.config, args.parser)
    db = config.values.get("db")
    if db is not None and db.startswith(POSTGRES_SCHEMES) and _has_password(db):
        raise config_file.ConfigError(
            f"{config.where('db')}: db: the URL holds a password: put the URL in a file only the server's user "
            "reads and name it with db-file, or the password in PGPASSFILE"
        )
    config_file.merge(args, config, args.parser, config_file.given(args.parser, argv))


def _serve(args: argparse.Namespace) -> int:
    if args.db is None and args.db_file is None:
        raise StoreError("serve needs --db or --db-file, on the command line or in --config")
    _throttle(args)
    _check_metrics(args)
    db = _database(args)
    tls = _tls(args)
    limits = _limits(args)
    open_store(db).close()  # create the schema and fail early on a bad path or URL
    if args.processes == 1:
        listeners = _bind(args, tls, reuse_port=False)
        if args.pid_file:
            _write_pid(args.pid_file)
        _run_process(args, db, listeners, tls, limits, _exporter(args))
        return 0
    sets = [_bind(args, tls, reuse_port=True) for _ in range(args.processes)]
    if args.pid_file:
        _write_pid(args.pid_file)
    exporter = _exporter(args)

    def child(slot: int) -> int:
        for i, other in enumerate(sets):
            if i != slot:
                other.close()
        try:
            _run_process(args, db, sets[slot], tls, limits, exporter)
        except (StoreError, OSError) as exc:
            log.error("server process %d cannot serve: %s", os.getpid(), exc)
            return 1
        return 0

    try:
        return supervise(args.processes, child, reaped=exporter.process_gone if exporter is not None else None)
    finally:
        if exporter is not None:
            exporter.close()


def _write_pid(path: str) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


class _PrintableFormatter(logging.Formatter):
    """One line per record, whatever a peer put in it (an Origin-Host, a user name): see logtext."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.command == "serve" and args.config is not None:
        try:
            _apply_config(args, argv[1:])
        except config_file.ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    handler = logging.StreamHandler()
    handler.setFormatter(_PrintableFormatter("%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO, handlers=[handler])
    try:
        return _serve(args) if args.command == "serve" else _manage(args)
    except (StoreError, SubscriberError, TlsSetupError, secret_file.InsecureFile, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
