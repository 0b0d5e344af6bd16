"""Real processes for the tests: the reference server, Kamailio, sipp, a raw SIP client.

Everything listens on 127.0.0.1 ports the OS hands out, is started by the test and
stopped by its own pid. Shared by tests/real, tests/interop, the demo and bench/.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CFG = ROOT / "kamailio.cfg.example"
SCENARIOS = ROOT / "tests" / "sipp"
HANDLER = ROOT / "kamailio_auth_diameter" / "kamailio" / "handler.py"
PYTHON = sys.executable
# Kamailio embeds /usr/bin/python3; the handler in this source tree puts the tree on its
# path, and this puts the venv's packages (python-diameter) there too.
SITE_PACKAGES = os.pathsep.join(site.getsitepackages())


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (Kamailio listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def wait_tcp(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- the reference server -----------------------------------------------------------


def server_cli(
    db: Path | str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """One management command (``user add`` reads its password from ``stdin``)."""
    return subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", *args[:2], "--db", str(db), *args[2:]],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env=None if env is None else {**os.environ, **env},
    )


@dataclass
class ReferenceServer:
    """``python -m kamailio_auth_diameter.server serve`` on a port of its own."""

    db: Path | str  # an SQLite file or a postgresql:// URL
    log_path: Path
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    diameter_port: int | None = None  # also serve RFC 6733 / RFC 4740 here (--diameter-listen)
    env: dict[str, str] = field(default_factory=dict)  # added to the environment (PGPASSFILE, ...)
    prefix: tuple[str, ...] = ()  # a command the server runs under, e.g. ("prlimit", "--nofile=64", "--")
    db_file: Path | None = None  # serve with --db-file this instead of --db (user and group still use db)
    config: Path | None = None  # serve --config this file alone (it names db and legacy-listen) and extra
    proc: subprocess.Popen | None = None

    def add_user(self, username: str, realm: str, password: str) -> None:
        r = server_cli(self.db, "user", "add", username, realm, stdin=f"{password}\n", env=self.env)
        assert r.returncode == 0, r.stderr

    def add_group(self, name: str, group: str) -> None:
        r = server_cli(self.db, "group", "add", name, group, env=self.env)
        assert r.returncode == 0, r.stderr

    def start(self, timeout: float = 15.0) -> ReferenceServer:
        """Start it and wait until it serves: its listening ports are bound before the
        database is opened, so the log line that follows the opening is what says so."""
        ready = f"legacy listener on 127.0.0.1:{self.port} "
        before = self._log().count(ready)
        log = open(self.log_path, "ab")
        if self.config is not None:
            options: tuple[str, ...] = ("--config", str(self.config))
        else:
            options = (
                *(("--db", str(self.db)) if self.db_file is None else ("--db-file", str(self.db_file))),
                "--legacy-listen",
                f"127.0.0.1:{self.port}",
                *(() if self.diameter_port is None else ("--diameter-listen", f"127.0.0.1:{self.diameter_port}")),
            )
        self.proc = subprocess.Popen(
            [*self.prefix, PYTHON, "-m", "kamailio_auth_diameter.server", "serve", *options, *self.extra],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while self._log().count(ready) <= before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the reference server did not start:\n{self._log()[-3000:]}")
            time.sleep(0.05)
        wait_tcp(self.port)
        if self.diameter_port is not None:
            wait_tcp(self.diameter_port)
        return self

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            _stop(self.proc, sig)
            self.proc = None


# --- PostgreSQL (the shared store) --------------------------------------------------

POSTGRESQL_LIB = Path("/usr/lib/postgresql")


def postgres_bin() -> Path:
    """The bin directory of the newest PostgreSQL server installed (Debian's ``postgresql``
    package brings one major version: 15 on Debian 12, 17 on Debian 13), found rather than
    named so the same tests run on both."""
    found = [d.parent for d in POSTGRESQL_LIB.glob("*/bin/postgres") if d.parent.parent.name.isdigit()]
    if not found:
        raise RuntimeError(f"no PostgreSQL server in {POSTGRESQL_LIB}/*/bin: run scripts/bootstrap.sh")
    return max(found, key=lambda d: int(d.parent.name))


INITDB_ARGS = ("-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")


def _as_postgres(*cmd: str | Path, cwd: Path) -> None:
    """A PostgreSQL tool as the postgres OS user: the server and initdb refuse root."""
    r = subprocess.run(["runuser", "-u", "postgres", "--", *map(str, cmd)], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stdout}{r.stderr}")


@dataclass
class Postgres:
    """A PostgreSQL server of the test's own (the installed one, :func:`postgres_bin`):
    initdb into a temporary directory owned by the postgres user (pytest's own tmp dirs
    are root-only), TCP on 127.0.0.1 only, trust authentication, one database. stop()
    keeps the data for start() to serve again (the database going away and coming
    back); remove() also deletes it."""

    log_path: Path
    port: int = field(default_factory=free_port)
    dbname: str = "auth"
    base: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def start(self, timeout: float = 20.0) -> Postgres:
        pg_bin = postgres_bin()
        fresh = self.base is None
        if self.base is None:
            self.base = Path(tempfile.mkdtemp(prefix="auth-diameter-pg-"))
            for d in (self.base, self.base / "data", self.base / "sock"):
                d.mkdir(exist_ok=True)
                shutil.chown(d, "postgres", "postgres")
            _as_postgres(pg_bin / "initdb", "-D", self.base / "data", *INITDB_ARGS, cwd=self.base)
        log = open(self.log_path, "ab")
        data, sock = str(self.base / "data"), str(self.base / "sock")
        self.proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(pg_bin / "postgres"), "-D", data, "-k", sock, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            cwd=self.base,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        ready = [str(pg_bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        while subprocess.run(ready).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"PostgreSQL did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        if fresh:
            r = subprocess.run(
                [str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.dbname],
                capture_output=True,
                text=True,
            )
            assert r.returncode == 0, r.stderr
        return self

    def require_password(self, password: str) -> None:
        """From now on TCP clients must authenticate (SCRAM) as postgres with ``password``:
        trust stays only for the Unix socket this method itself uses."""
        assert self.base is not None and self.proc is not None, "start() first"
        sock = str(self.base / "sock")
        escaped = password.replace("'", "''")
        pg_bin = postgres_bin()
        _as_postgres(pg_bin / "psql", "-h", sock, "-p", str(self.port), "-U", "postgres", "-d", self.dbname,
                     "-c", f"ALTER ROLE postgres PASSWORD '{escaped}'", cwd=self.base)  # fmt: skip
        hba = self.base / "data" / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        shutil.chown(hba, "postgres", "postgres")
        _as_postgres(pg_bin / "pg_ctl", "reload", "-D", self.base / "data", cwd=self.base)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster by the pid in its postmaster.pid."""
        if self.proc is None or self.base is None:
            return
        pid_file = self.base / "data" / "postmaster.pid"
        if self.proc.poll() is None and pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
        _stop(self.proc, signal.SIGINT, timeout=20)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None


# --- Kamailio -----------------------------------------------------------------------


@dataclass
class Kamailio:
    """A Kamailio started in the foreground (-DD -E) with its own run directory."""

    cfg: Path
    run_dir: Path
    defines: dict[str, str] = field(default_factory=dict)
    sip_port: int = field(default_factory=free_port)
    memory: str = ""  # e.g. "tlsf" for benchmarks (-x)
    extra_args: tuple[str, ...] = ()  # more command-line options, e.g. ("-M", "64")
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def with_env(self, env: dict[str, str]) -> Kamailio:
        self.env.update(env)
        return self

    @property
    def log_path(self) -> Path:
        return self.run_dir / "kamailio.log"

    @property
    def ctl_socket(self) -> Path:
        return self.run_dir / "ctl.sock"

    def start(self, wait: bool = True) -> Kamailio:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        defines = {
            "SIP_PORT": str(self.sip_port),
            "AUTH_DIAMETER_HANDLER": f'"{HANDLER}"',
            "CTL_SOCKET": f'"unix:{self.ctl_socket}"',
            **self.defines,
        }
        cmd = [
            "kamailio",
            "-f",
            str(self.cfg),
            "-DD",
            "-E",
            "-Y",
            str(self.run_dir),
            "-P",
            str(self.run_dir / "kamailio.pid"),
            "-w",
            str(self.run_dir),
        ]
        if self.memory:
            cmd += ["-x", self.memory]
        cmd += self.extra_args
        for name, value in defines.items():
            cmd += ["-A", f"{name}={value}"]
        log = open(self.log_path, "ab")
        # its own process group, so that stop() can take every worker down with it
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.run_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": SITE_PACKAGES, **self.env},
            start_new_session=True,
        )
        log.close()
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()
                raise
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Until Kamailio answers SIP (any reply to an OPTIONS will do)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(TimeoutError, OSError):
                SipClient(self.sip_port).options(timeout=0.3)
                return
        raise TimeoutError(f"kamailio did not answer SIP:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pids(self) -> list[int]:
        """The main process and its children (the SIP workers among them)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [self.proc.pid, *(int(p) for p in out.split())]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_no_crash(self) -> None:
        log = self.log()
        for bad in ("exited by a signal", "core was generated", "Traceback", "SystemError"):
            assert bad not in log, f"{bad!r} in the Kamailio log:\n{log[-4000:]}"

    def kamcmd(self, *args: str) -> str:
        r = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl_socket}", *args], capture_output=True, text=True, timeout=10
        )
        return r.stdout + r.stderr

    def stop(self) -> int | None:
        """SIGTERM to the main process, then SIGKILL to whatever of its group is left."""
        if self.proc is None:
            return None
        _stop(self.proc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        rc = self.proc.returncode
        self.proc = None
        return rc


@functools.cache
def kamailio_version() -> tuple[int, int, int]:
    """The installed Kamailio's version, from ``kamailio -v`` (``version: kamailio 6.0.1 (x86_64/linux)``)."""
    out = subprocess.run(["kamailio", "-v"], capture_output=True, text=True, timeout=10, check=True).stdout
    m = re.search(r"version: kamailio (\d+)\.(\d+)\.(\d+)", out)
    if m is None:
        raise RuntimeError(f"no version in the output of kamailio -v: {out!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def large_sip_messages() -> dict[str, str]:
    """The define that lets kamailio.cfg.example take SIP messages of up to 65535 bytes.

    Kamailio 5.6 takes that much (its BUF_SIZE); 5.8 added the core parameter
    msg_recv_max_size and drops any message of 32767 bytes or more by default, before
    the script runs. Tests that need a request whose Diameter message cannot fit a
    frame (over 64 KiB) raise it where it exists; 5.6 would refuse the unknown name."""
    return {"MSG_RECV_MAX_SIZE": "65535"} if kamailio_version() >= (5, 8, 0) else {}


def example_kamailio(run_dir: Path, diameter_port: int, children: int = 2, **defines: str) -> Kamailio:
    """Kamailio running kamailio.cfg.example against a Diameter server on 127.0.0.1."""
    return Kamailio(
        cfg=EXAMPLE_CFG,
        run_dir=run_dir,
        defines={
            "DIAMETER_HOST": '"127.0.0.1"',
            "DIAMETER_PORT": str(diameter_port),
            "CHILDREN": str(children),
            **defines,
        },
    )


# --- SIP clients --------------------------------------------------------------------


@dataclass
class SippResult:
    returncode: int
    seconds: float
    output: str


def sipp(
    scenario: str,
    port: int,
    *,
    run_dir: Path,
    user: str = "alice",
    domain: str = "example.com",
    auth_user: str | None = None,
    password: str | None = None,
    service: str | None = None,
    calls: int = 1,
    rate: int = 0,
    extra: tuple[str, ...] = (),
    timeout: float = 60,
) -> SippResult:
    """Run one sipp scenario from tests/sipp against 127.0.0.1:port; rc 0 = every call passed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "sipp",
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIOS / f"{scenario}.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-m",
        str(calls),
        "-key",
        "user",
        user,
        "-key",
        "domain",
        domain,
        "-nostdin",
        "-trace_err",
        "-timeout",
        str(int(timeout)),
        "-timeout_error",
    ]
    if rate:
        cmd += ["-r", str(rate)]
    if auth_user is not None:
        cmd += ["-au", auth_user]
    if password is not None:
        cmd += ["-ap", password]
    if service is not None:
        cmd += ["-s", service]
    # sipp computes digests over sip:remote_ip:remote_port unless told otherwise; a server
    # checks the digest uri against the Request-URI, which the scenarios write like this
    # (sipp adds the "sip:")
    is_invite = scenario.startswith("invite")
    cmd += ["-auth_uri", f"{service}@{domain}" if is_invite and service else domain]
    cmd += list(extra)
    start = time.monotonic()
    r = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, timeout=timeout + 30)
    errors = "".join(p.read_text(errors="replace") for p in run_dir.glob(f"{scenario}_*_errors.log"))
    return SippResult(r.returncode, time.monotonic() - start, (r.stdout[-2000:] + r.stderr + errors))


@dataclass
class SipReply:
    code: int
    reason: str
    headers: list[tuple[str, str]]
    raw: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class SipClient:
    """A raw UDP SIP client, for requests sipp cannot write (broken headers, odd URIs).
    ``source``: the loopback address it sends from (127.0.0.2 is not Kamailio's own host)."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.port = port
        self.source = source

    def send(self, request: str, timeout: float = 5.0) -> SipReply:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.source, 0))
            lport = s.getsockname()[1]
            data = request.replace("LPORT", str(lport)).replace("\r\n", "\n").replace("\n", "\r\n").encode()
            s.settimeout(timeout)
            s.sendto(data, ("127.0.0.1", self.port))
            while True:
                raw, _ = s.recvfrom(65536)
                reply = parse_reply(raw)
                if reply.code >= 200:
                    return reply

    def request(
        self,
        method: str,
        ruri: str,
        *,
        from_uri: str = "sip:alice@example.com",
        to_uri: str | None = None,
        headers: tuple[str, ...] = (),
        timeout: float = 5.0,
    ) -> SipReply:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        text = "\n".join(
            [
                f"{method} {ruri} SIP/2.0",
                f"Via: SIP/2.0/UDP {self.source}:LPORT;branch={branch}",
                f"From: <{from_uri}>;tag={uuid.uuid4().hex[:8]}",
                f"To: <{to_uri or ruri}>",
                f"Call-ID: {uuid.uuid4().hex}@{self.source}",
                f"CSeq: 1 {method}",
                "Max-Forwards: 70",
                *headers,
                "Content-Length: 0",
                "",
                "",
            ]
        )
        return self.send(text, timeout)

    def options(self, timeout: float = 1.0) -> SipReply:
        return self.request("OPTIONS", "sip:127.0.0.1", timeout=timeout)


def parse_reply(raw: bytes) -> SipReply:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    m = re.match(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
    if not m:
        raise ValueError(f"not a SIP reply: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return SipReply(int(m.group(1)), m.group(2), headers, raw)


@contextlib.contextmanager
def running(*things: ReferenceServer | Kamailio) -> Iterator[None]:
    """Start in order, stop in reverse order, whatever happens."""
    started = []
    try:
        for t in things:
            t.start()
            started.append(t)
        yield
    finally:
        for t in reversed(started):
            t.stop()
