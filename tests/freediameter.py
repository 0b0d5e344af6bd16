"""freeDiameterd (Debian 12: packages freediameterd + freediameter-extensions, 1.2.1) as a
Diameter relay agent in front of several reference servers, for tests of what a real agent
does to our client: load sharing, failover of pending requests, watchdogs, TLS.

Facts about this freeDiameter version that shape the code below:

* It connects to the servers itself (ConnectPeer, clear TCP) and accepts unknown clients
  only through the ``acl_wl`` extension; ``ALLOW_IPSEC`` is what lets a client without
  TLS in (Inband-Security-Id absent, 0 or even 1 is then fine).
* ``ListenOn = "127.0.0.1"`` is silently dropped (loopback addresses are filtered out of
  the local endpoints), so it listens on 0.0.0.0. Nothing in the tests sends traffic
  anywhere but 127.0.0.1.
* TLS on SecPort is RFC 6733 style (handshake first, then CER). It *requires* a client
  certificate signed by TLS_CA, and it refuses to start unless its own certificate
  verifies against TLS_CA and names Identity. With SecPort = 0 it runs without any
  TLS_Cred.
* A server that stops answering is given up (its pending requests re-sent, T flag set,
  to the other) only when its watchdog fails: about 2 * Tw after its last message. A
  server whose connection breaks is given up at once.
* A client that drops its connection without DPR and comes back under the same
  Origin-Host within about a minute is put in REOPEN: freeDiameter sends it three DWRs
  at once, and the answer to any request the client sends before it has answered them
  is dropped ("Unable to forward answer to deleted / closed peer"). After a DPR/DPA the
  same client is welcome back at once.
* On SIGTERM it sends every peer a DPR and waits (up to 16 s) for the DPAs.
"""

from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tests.harness import free_port

BINARY = "freeDiameterd"
EXTENSIONS = Path("/usr/lib/freeDiameter")  # Debian installs them here, not under the multiarch libdir
OPENSSL = "openssl"
TW_MINIMUM = 6  # freeDiameter refuses a smaller TwTimer (RFC 3539)
# dbg_msg_dumps: errors in full (0x4), each message sent/received on one line (0x40), peers compact (0x2000)
DUMP_MASK = "0x2044"

LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n"
)


def _openssl(*args: str | Path) -> None:
    r = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({r.returncode}): {r.stderr}")


def _listening(port: int) -> bool:
    """From /proc rather than by connecting: a probe connection would show up in freeDiameter's log."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


class Upstream(NamedTuple):
    """A server freeDiameter must keep a connection to; origin_host must be what its CEA says."""

    host: str
    port: int
    origin_host: str


@dataclass
class FreeDiameter:
    """One freeDiameterd relaying realm ``realm`` to ``servers``, sharing the load between them.

    ``clients`` are acl_wl patterns for the Origin-Hosts it accepts ("*" only as the
    first label; "*.kamailio.example.com" also takes a.b.kamailio.example.com, but not
    kamailio.example.com). Others get CEA 3010. Without ``cert``/``key``/``ca`` it makes
    its own CA, whose ``client_cert`` then issues the certificates TLS clients need.
    """

    servers: Sequence[tuple[str, int, str]]  # (host, port, origin_host), or Upstream
    run_dir: Path
    clients: Sequence[str] = ("*.kamailio.example.com",)
    identity: str = "relay.example.com"
    realm: str = "example.com"
    tc_timer: int = 1  # seconds between reconnect attempts to a server that went away
    tw_timer: int = TW_MINIMUM  # watchdog: a silent peer is SUSPECT (requests failed over) ~2 Tw, closed ~4 Tw
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)  # 0: no TLS at all, and no certificate needed
    ca: Path | None = None
    cert: Path | None = None  # must verify against ``ca`` and name ``identity`` (CN or DNS SAN)
    key: Path | None = None
    dump_messages: bool = False  # every message in the log, one line each (dbg_msg_dumps)
    debug: int = 0  # number of -d flags: more of freeDiameter's own tracing
    proc: subprocess.Popen[bytes] | None = None
    _ca_key: Path | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.servers = [Upstream(*s) for s in self.servers]
        if self.tw_timer < TW_MINIMUM:
            raise ValueError(f"freeDiameter needs TwTimer >= {TW_MINIMUM}")
        given = [p is not None for p in (self.ca, self.cert, self.key)]
        if any(given) and not all(given):
            raise ValueError("give ca, cert and key together, or none of them")

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "freeDiameter.conf"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "freeDiameter.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- certificates ------------------------------------------------------------------

    def _make_ca(self) -> None:
        pki = self.run_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        self.ca, self._ca_key = pki / "ca.crt", pki / "ca.key"
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", self._ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", self._ca_key, "-subj", "/CN=freeDiameter test CA", "-days", "2",
            "-sha256", "-out", self.ca,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        # freeDiameter checks its own certificate names Identity; clients usually check 127.0.0.1 or localhost
        names = f"subjectAltName=DNS:{self.identity},DNS:localhost,IP:127.0.0.1\n"
        self.cert, self.key = self._issue("relay", self.identity, "extendedKeyUsage=serverAuth,clientAuth\n" + names)

    def _issue(self, name: str, cn: str, extensions: str) -> tuple[Path, Path]:
        if self.ca is None or self._ca_key is None:
            raise RuntimeError("only a FreeDiameter that made its own CA can issue certificates")
        pki = self.run_dir / "pki"
        key, csr, cert, ext = (pki / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
        ext.write_text(LEAF_EXTENSIONS + extensions)
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self._ca_key, "-set_serial",
            str(secrets.randbits(63)), "-days", "2", "-sha256", "-extfile", ext, "-out", cert,
        )  # fmt: skip
        return cert, key

    def client_cert(self, origin_host: str) -> tuple[Path, Path]:
        """A certificate and key for a TLS client: freeDiameter refuses a TLS client without one.

        It does not compare the certificate's names with the client's Origin-Host, but
        tests should not rely on that.
        """
        return self._issue(f"client-{origin_host}", origin_host, "extendedKeyUsage=clientAuth\n")

    # --- configuration -----------------------------------------------------------------

    def conf_text(self) -> str:
        lines = [
            f'Identity = "{self.identity}";',
            f'Realm = "{self.realm}";',
            f"Port = {self.port};",
            f"SecPort = {self.tls_port};",
            "No_SCTP;",
            "No_IPv6;",
            "Prefer_TCP;",
            f"TcTimer = {self.tc_timer};",
            f"TwTimer = {self.tw_timer};",
        ]
        if self.tls_port:
            lines += [f'TLS_Cred = "{self.cert}", "{self.key}";', f'TLS_CA = "{self.ca}";']
        # dict_sip only names the RFC 4740 AVPs in the log; relaying works without it
        lines.append(f'LoadExtension = "{EXTENSIONS}/dict_sip.fdx";')
        if self.dump_messages:
            lines.append(f'LoadExtension = "{EXTENSIONS}/dbg_msg_dumps.fdx" : "{DUMP_MASK}";')
        lines.append(f'LoadExtension = "{EXTENSIONS}/acl_wl.fdx" : "{self.run_dir / "acl_wl.conf"}";')
        # rt_load_balance favours the server with fewer pending requests; ties are broken at random
        lines.append(f'LoadExtension = "{EXTENSIONS}/rt_load_balance.fdx";')
        for host, port, origin_host in self.servers:
            lines.append(
                f'ConnectPeer = "{origin_host}" {{ ConnectTo = "{host}"; Port = {port}; '
                "No_TLS; No_SCTP; No_IPv6; Prefer_TCP; };"
            )
        return "\n".join(lines) + "\n"

    def acl_text(self) -> str:
        # ALLOW_IPSEC: "protected by other means", i.e. no TLS demanded on the clear port
        return "ALLOW_IPSEC " + " ".join(self.clients) + "\n"

    # --- running -----------------------------------------------------------------------

    def start(self, timeout: float = 15.0, wait_servers: bool = True) -> FreeDiameter:
        """Returns once it listens and (``wait_servers``) has an open connection to every server."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.tls_port and self.cert is None:
            self._make_ca()
        (self.run_dir / "acl_wl.conf").write_text(self.acl_text())
        self.conf_path.write_text(self.conf_text())
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BINARY, "-c", str(self.conf_path), *(["-d"] * self.debug)],
            cwd=self.run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the test run goes to pytest, which stops it in order
        )
        log.close()
        try:
            deadline = time.monotonic() + timeout
            ports = [p for p in (self.port, self.tls_port) if p]
            while not all(_listening(p) for p in ports):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"freeDiameterd does not listen on {ports}:\n{self.log()[-3000:]}")
                time.sleep(0.05)
            for _, _, origin_host in self.servers if wait_servers else ():
                self.wait_open(origin_host, max(0.1, deadline - time.monotonic()), since=offset)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"freeDiameterd exited with {self.proc.returncode}:\n{self.log()[-3000:]}")

    def log_offset(self) -> int:
        """Where the log ends now: pass it as ``since`` to wait for what happens next."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def wait_log(self, pattern: str, timeout: float = 10.0, since: int = 0) -> re.Match[str]:
        """The first match of the regex ``pattern`` in the log after byte ``since``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_bytes()[since:].decode(errors="replace") if self.log_path.exists() else ""
            m = regex.search(text)
            if m:
                return m
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} in the freeDiameter log:\n{text[-3000:]}")
            time.sleep(0.05)

    def wait_open(self, origin_host: str, timeout: float = 10.0, since: int = 0) -> None:
        """Until the connection with this peer (server or client) is open (again), after ``since``."""
        self.wait_log(rf"-> 'STATE_OPEN'\s+'{re.escape(origin_host)}'", timeout, since)

    def wait_closed(self, origin_host: str, timeout: float = 10.0, since: int = 0) -> None:
        self.wait_log(rf"-> 'STATE_CLOSED'\s+'{re.escape(origin_host)}'", timeout, since)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``: a client that does not answer its DPR would hold it up 16 s."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode
