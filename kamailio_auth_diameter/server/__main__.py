"""``python3 -m kamailio_auth_diameter.server``: serve, and manage users and groups.

serve --db FILE|URL [--legacy-listen HOST:PORT] [--diameter-listen HOST:PORT] [--peers any|HOST,HOST]
      [--diameter-tls-listen HOST:PORT --tls-cert FILE --tls-key FILE [--tls-ca FILE]]
      [--allow CIDR ...] [--processes N]
user add|del|list --db FILE|URL ...      group add|del|list --db FILE|URL ...

--db is an SQLite file, or a postgresql:// URL (needs the 'postgresql' extra) for
several server instances sharing users, groups and nonces.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys

from ..nonce import NonceFactory
from .app import LOOPBACK, Identity, LegacyServer, bind, serve
from .auth import LegacyAuthority, SipAuthority
from .diameter import DiameterResponder, TlsSetupError, parse_peers, serve_diameter, server_tls_context
from .store import StoreError, open_store

log = logging.getLogger("kamailio_auth_diameter.server")

DB_HELP = "SQLite file, or postgresql://USER@HOST:PORT/DBNAME (tables created on first use)"


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


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


def _watchdog_interval(text: str) -> float:
    value = float(text)
    if not 6 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside 6..3600 (RFC 3539: Tw is at least 6 s)")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m kamailio_auth_diameter.server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="answer Diameter requests")
    s.add_argument("--db", required=True, help=DB_HELP)
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
        "--allow",
        type=_network,
        action="append",
        metavar="CIDR",
        help="client addresses allowed to connect (repeatable; 'any' for all); default: loopback only",
    )
    s.add_argument("--origin-host", default="aaa.localdomain", help="Origin-Host put in answers")
    s.add_argument("--origin-realm", default="localdomain", help="Origin-Realm put in answers")
    s.add_argument(
        "--nonce-lifetime",
        type=int,
        default=300,
        metavar="SECONDS",
        help="how long a challenge's nonce is accepted (default 300)",
    )
    s.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="server processes sharing the port with SO_REUSEPORT (default 1)",
    )
    s.add_argument(
        "--watchdog-interval",
        type=_watchdog_interval,
        default=30.0,
        metavar="SECONDS",
        help="Tw: a DWR to a peer silent this long, and the connection closed after twice as long "
        "(RFC 3539; at least 6, default 30)",
    )
    s.add_argument("--pid-file", help="write the main process id here")
    s.add_argument("-v", "--verbose", action="store_true", help="log every request")

    for noun, args in (("user", ("USERNAME", "REALM")), ("group", ("NAME", "GROUP"))):
        n = sub.add_parser(noun, help=f"manage {noun}s")
        nsub = n.add_subparsers(dest="action", required=True)
        add = nsub.add_parser("add")
        dele = nsub.add_parser("del")
        for a in (add, dele):
            a.add_argument("--db", required=True, help=DB_HELP)
            for arg in args:
                a.add_argument(arg.lower(), metavar=arg)
        if noun == "user":
            add.add_argument("password", metavar="PASSWORD", help="'-' reads it from standard input")
        lst = nsub.add_parser("list")
        lst.add_argument("--db", required=True, help=DB_HELP)
    return p


def _manage(args: argparse.Namespace) -> int:
    store = open_store(args.db)
    try:
        if args.command == "user":
            if args.action == "add":
                password = sys.stdin.readline().rstrip("\n") if args.password == "-" else args.password
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
    return server_tls_context(args.tls_cert, args.tls_key, args.tls_ca)


def _run_process(args: argparse.Namespace, reuse_port: bool, tls: ssl.SSLContext | None) -> None:
    store = open_store(args.db)
    nonces = NonceFactory(store.nonce_secret(), lifetime=args.nonce_lifetime)
    allow = [] if args.allow and None in args.allow else list(args.allow or LOOPBACK)
    identity = Identity(args.origin_host, args.origin_realm)
    server = LegacyServer(LegacyAuthority(store, nonces), identity, allow)
    sock = bind(*args.legacy_listen, reuse_port=reuse_port)
    log.info("legacy listener on %s:%d (pid %d, db %s)", *args.legacy_listen, os.getpid(), store.where)
    responder = None
    diameter_socks: list[tuple[socket.socket, ssl.SSLContext | None]] = []
    if args.diameter_listen or tls is not None:
        responder = DiameterResponder(
            SipAuthority(store, nonces), identity, args.peers, watchdog_interval=args.watchdog_interval
        )
    if args.diameter_listen:
        diameter_socks.append((bind(*args.diameter_listen, reuse_port=reuse_port), None))
        log.info("Diameter (RFC 6733, RFC 4740) listener on %s:%d as %s", *args.diameter_listen, args.origin_host)
    if tls is not None:
        diameter_socks.append((bind(*args.diameter_tls_listen, reuse_port=reuse_port), tls))
        log.info(
            "Diameter over TLS listener on %s:%d as %s%s",
            *args.diameter_tls_listen,
            args.origin_host,
            ", client certificates required" if args.tls_ca else "",
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [serve(server, sock, stop)]
        if responder is not None:
            tasks += [serve_diameter(responder, dsock, allow, stop, ctx) for dsock, ctx in diameter_socks]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    log.info("stopped: legacy %s", server.stats)
    if responder is not None:
        log.info("stopped: Diameter %s", responder.stats)


def _serve(args: argparse.Namespace) -> int:
    if args.processes < 1 or args.nonce_lifetime < 1:
        raise StoreError("--processes and --nonce-lifetime must be at least 1")
    tls = _tls(args)
    open_store(args.db).close()  # create the schema and fail early on a bad path or URL
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    if args.processes == 1:
        _run_process(args, reuse_port=False, tls=tls)
        return 0
    children = []
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:
            try:
                _run_process(args, reuse_port=True, tls=tls)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
    )
    try:
        return _serve(args) if args.command == "serve" else _manage(args)
    except (StoreError, TlsSetupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
