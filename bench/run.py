"""Saturation benchmark: digest-authenticated REGISTER flows through Kamailio 5.6.3.

One run measures, with the same ``children`` on the same machine, sipp running
tests/sipp/register_auth.xml (REGISTER -> 401 -> REGISTER with digest -> 200) against

* ``noauth``: bench/noauth.cfg, a static 401 / 200 and no Diameter (the ceiling);
* ``c``:      bench/c_module.cfg, the C module auth_diameter.so + the reference server;
* ``plugin``: kamailio.cfg.example (the Python plugin) + the reference server, legacy wire format;
* ``rfc4740``: the same plugin as an RFC 6733 peer speaking RFC 4740 to the server directly;
* ``rfc4740-fd``: the same through freeDiameterd relaying to the server (tests/freediameter.py).

``--standard`` runs noauth, plugin, rfc4740 and rfc4740-fd and prints their ratios; in
rfc4740-fd the "srv" columns count the reference server and freeDiameterd together.

For each: flows/s, Kamailio CPU us per flow (utime+stime of the main process and all
its children, /proc/PID/stat, before/after), reference-server and sipp CPU, failed
calls, retransmissions, CPU used by anything else meanwhile, and memory growth per
1,000 flows of Kamailio's UDP SIP workers (summed VmRSS, and summed pkg "used") between
the end of a warm-up and the end of the run. Every Kamailio runs with ``-x tlsf`` and
kex.so for the RPCs (``--loadmodule`` where the cfg does not load it; the example does).

    .venv/bin/python bench/run.py                       # ~25 s per mode (--seconds), or --flows N
    .venv/bin/python bench/run.py --memory              # plugin only, 100,000 flows, 5 samples
    .venv/bin/python bench/run.py --server-processes 1,2 --json out.json   # and out.png (bench/chart.py)
    .venv/bin/python bench/run.py --chart-from out.json --chart other.png  # redraw, run nothing

pkg memory comes from the tlsf_status dump each worker writes on ``cfg.set_now_int core
mem_dump_pkg PID``: with -x tlsf, kex's pkg.stats never refreshes (only q_malloc and
f_malloc update it), so its numbers are kept in the JSON only.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from bench import chart  # noqa: E402 - needs ROOT on sys.path
from tests import harness as h  # noqa: E402
from tests import netns  # noqa: E402
from tests.freediameter import FreeDiameter  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = {
    "noauth": ("no-auth (static 401/200)", BENCH / "noauth.cfg", False),
    "c": ("C auth_diameter.so", BENCH / "c_module.cfg", True),
    "plugin": ("Python plugin", h.EXAMPLE_CFG, True),
    "rfc4740": ("plugin, RFC 4740 direct", h.EXAMPLE_CFG, True),
    "rfc4740-fd": ("plugin, RFC 4740 via freeDiameter", h.EXAMPLE_CFG, True),
    "verify": ("plugin verifies, HA1 cached (rfc4740-ha1)", h.EXAMPLE_CFG, True),
    "verify-cold": ("plugin verifies, no cache: a MAR a flow", h.EXAMPLE_CFG, True),
    # the road not taken: Kamailio's auth module checks in C (bench/auth_module_handler.py)
    "auth-module": ("auth module checks, HA1 cached (MD5)", h.EXAMPLE_CFG, False),
}
# what the auth-module mode loads: nonces with a nonce-count guard, qop=auth (its secret is random)
AUTH_MODULE_ARGS = ("--loadmodule=auth.so", "--modparam=auth:nonce_count:i:1", "--modparam=auth:qop:s:auth")
STANDARD_MODES = "noauth,plugin,rfc4740,rfc4740-fd"
ORIGIN_HOST = "kamailio.example.com"
USER, DOMAIN, PASSWORD = "alice", "example.com", "secret"
C_LEAK_MB_PER_1000 = 1.9  # bug B11: pkg used+overhead with -x tlsf, all workers together
NO_CREDENTIALS = "diam_pre_auth(): credentials with given realm not found"


# --- processes --------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cpu_us(pids: list[int]) -> float:
    """utime+stime of these processes, in microseconds (clock-tick resolution)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total * 1e6 / CLK_TCK


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class MemSample:
    flows: int  # measured flows done when sampled (0 = after the warm-up)
    rss_kb: int  # summed VmRSS of the UDP SIP workers
    pkg_used: int  # summed pkg "used" bytes of the UDP SIP workers (tlsf_status dump)
    pkg_real_used: int  # the same with tlsf's per-block overhead ("used+overhead"): what fills -M
    pkg_stats_used: int  # the same from the pkg.stats RPC (stale with -x tlsf, see README)
    workers: int


def udp_workers(k: h.Kamailio) -> list[int]:
    out = k.kamcmd("core.psx")
    return [int(m.group(1)) for m in re.finditer(r"PID:\s*(\d+)\s+DSC:\s*udp receiver", out)]


def pkg_used_by_dump(k: h.Kamailio, pids: list[int]) -> dict[int, tuple[int, int]]:
    """pkg "used" of each worker, from the tlsf_status dump that ``cfg.set_now_int core
    mem_dump_pkg PID`` makes that worker write to the log when it handles its next
    message. kex's pkg.stats is refreshed only by q_malloc/f_malloc, never by tlsf."""
    k.kamcmd("cfg.set_now_int", "core", "mem_summary", "1")  # status only, no per-site sums
    used: dict[int, tuple[int, int]] = {}
    for pid in pids:
        mark = k.log_path.stat().st_size
        k.kamcmd("cfg.set_now_int", "core", "mem_dump_pkg", str(pid))
        pattern = re.compile(rf"\({pid}\) ALERT: tlsf_status: tlsf_status\(\): used= (\d+), used\+overhead=(\d+)")
        for _ in range(60):  # the workers share the UDP socket: poke until this one answers
            with contextlib.suppress(TimeoutError, OSError, ValueError):
                h.SipClient(k.sip_port).options(timeout=1.0)
            with open(k.log_path, "rb") as f:
                f.seek(mark)
                found = pattern.findall(f.read().decode(errors="replace"))
            if found:
                used[pid] = (int(found[-1][0]), int(found[-1][1]))
                break
    return used


def mem_sample(k: h.Kamailio, flows: int) -> MemSample:
    pids = udp_workers(k)
    if not pids:
        raise RuntimeError("no udp receiver in core.psx")
    stats_used = 0
    for block in k.kamcmd("pkg.stats").split("}"):
        pid = re.search(r"pid:\s*(\d+)", block)
        used = re.search(r"\bused:\s*(\d+)", block)
        if pid and used and int(pid.group(1)) in pids:
            stats_used += int(used.group(1))
    dumped = pkg_used_by_dump(k, pids)
    if len(dumped) < len(pids):
        print(f"   warning: no pkg dump from workers {sorted(set(pids) - set(dumped))}")
    return MemSample(
        flows,
        sum(rss_kb(p) for p in pids),
        sum(u for u, _ in dumped.values()),
        sum(r for _, r in dumped.values()),
        stats_used,
        len(pids),
    )


# --- sipp -----------------------------------------------------------------------------


@dataclass
class Drive:
    flows: int = 0  # successful calls
    failed: int = 0
    retrans: int = 0
    seconds: float = 0.0
    sipp_cpu_s: float = 0.0
    rc: list[int] = field(default_factory=list)


def add_users(db: Path, count: int) -> None:
    """``count`` users (u000000 ...) with their MD5 hashes, in one transaction: the CLI
    would take minutes; the hashes are what ``user add`` stores."""
    from kamailio_auth_diameter import digest
    from kamailio_auth_diameter.server.store import open_store

    store = open_store(str(db))
    with store.transaction():
        for i in range(count):
            user = f"u{i:06d}"
            ha1 = digest.ha1(user, DOMAIN, f"pw{i}")
            store.add_user_hashes(user, DOMAIN, ha1, digest.ha1(f"{user}@{DOMAIN}", DOMAIN, f"pw{i}"), replace=True)


def write_users_file(path: Path, first: int, calls: int, users: int) -> Path:
    """sipp's injection file for tests/sipp/register_users.xml: ``calls`` users in turn
    from the ``first``-th, wrapping at ``users``. Each sipp run starts at its file's
    first line, so each run gets the file of its own range."""
    ids = ((first + n) % users for n in range(calls))
    lines = (f"u{i:06d};[authentication username=u{i:06d} password=pw{i}]\n" for i in ids)
    path.write_text("SEQUENTIAL\n" + "".join(lines))
    return path


def drive(port: int, calls: int, run_dir: Path, args: argparse.Namespace, limit: int) -> Drive:
    """One sipp run of `calls` flows at saturation; sipp's CPU from its rusage."""
    stat = run_dir / "stat.csv"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    users: tuple[str, ...] = ()
    if args.users:
        run_dir.mkdir(parents=True, exist_ok=True)
        users = ("-inf", str(write_users_file(run_dir / "users.csv", args.next_user, calls, args.users)))
        args.next_user = (args.next_user + calls) % args.users
    r = h.sipp(
        "register_users" if args.users else "register_auth",
        port,
        run_dir=run_dir,
        user=USER,
        domain=DOMAIN,
        auth_user=f"{USER}@{DOMAIN}",
        password=PASSWORD,
        calls=calls,
        rate=args.rate,
        extra=(
            "-rp", "1000", "-l", str(limit), "-buff_size", str(args.buff_size),
            "-trace_stat", "-stf", str(stat), "-fd", "3600", *users,
        ),
        timeout=60 + calls / 200,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = stat.read_text().splitlines() if stat.exists() else []
    if len(lines) < 2:
        raise RuntimeError(f"sipp wrote no statistics (rc {r.returncode}):\n{r.output[-3000:]}")
    row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    return Drive(
        flows=int(row["SuccessfulCall(C)"]),
        failed=int(row["FailedCall(C)"]),
        retrans=int(row["Retransmissions(C)"]),
        seconds=r.seconds,
        sipp_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        rc=[r.returncode],
    )


# --- one mode ----------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    label: str
    server_processes: int
    pkg_mb: int
    sipp_limit: int = 0
    planned_flows: int = 0
    warmup_rate: float = 0.0
    flows: int = 0
    failed: int = 0
    retrans: int = 0
    seconds: float = 0.0
    kam_cpu_us: float = 0.0
    srv_cpu_us: float = 0.0
    sipp_cpu_us: float = 0.0
    machine_busy_us: float = 0.0  # all CPUs, from /proc/stat
    mem: list[MemSample] = field(default_factory=list)
    alive: bool = True
    log_errors: int = 0
    no_credentials_logged: int = 0
    first_failed_chunk: int | None = None
    chunks: list[dict] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.flows / self.seconds if self.seconds else 0.0

    @property
    def other_us(self) -> float:
        """CPU used meanwhile by anything but Kamailio, the server and sipp."""
        return max(0.0, self.machine_busy_us - self.kam_cpu_us - self.srv_cpu_us - self.sipp_cpu_us)

    def per_flow(self, us: float) -> float:
        return us / self.flows if self.flows else math.nan

    def pct(self, us: float) -> float:
        return 100.0 * us / 1e6 / self.seconds if self.seconds else 0.0

    def growth(self, attr: str, scale: float) -> float:
        """Growth per 1,000 flows, in KB, from the first to the last memory sample."""
        if len(self.mem) < 2 or self.mem[-1].flows == self.mem[0].flows:
            return math.nan
        first, last = self.mem[0], self.mem[-1]
        return (getattr(last, attr) - getattr(first, attr)) * scale / (last.flows - first.flows) * 1000


def machine_busy_us() -> float:
    """Busy time of all CPUs (everything but idle and iowait), in microseconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) * 1e6 / CLK_TCK


def c_pkg_mb(total_flows: int, children: int) -> int:
    """pkg memory (-M) for the leaking C module to survive: one worker may get up to
    ~2/children of the flows; B11 leaks C_LEAK_MB_PER_1000 over all workers."""
    per_worker = C_LEAK_MB_PER_1000 * total_flows / 1000 * min(1.0, 2.0 / children)
    return max(8, int(8 + per_worker * 1.25 + 1))


def planned_flows(args: argparse.Namespace, rate: float) -> int:
    """--flows, or what the warm-up rate does in --seconds (rounded, at least 1,000)."""
    if args.flows:
        return args.flows
    return max(1000, round(rate * args.seconds / 1000) * 1000)


def run_mode(mode: str, nproc: int, args: argparse.Namespace, work: Path, ceiling: float) -> Result:
    """One mode: start (server and) Kamailio, warm up, then args.samples sipp runs."""
    label, cfg, uses_server = MODES[mode]
    run_dir = work / f"{mode}-p{nproc}"
    run_dir.mkdir(parents=True, exist_ok=True)
    pkg_mb = 0
    extra = [] if cfg == h.EXAMPLE_CFG else ["--loadmodule=kex.so"]  # loading a module twice is an error
    if mode == "c":
        # must fit every flow this run can make: --flows, or --seconds at the no-auth ceiling
        most = args.flows or int(args.seconds * ceiling)
        pkg_mb = args.c_pkg_mb or min(c_pkg_mb(args.warmup + most, args.children), 2048)
        extra += ["-M", str(pkg_mb)]
    elif args.pkg_mb:
        pkg_mb = args.pkg_mb
        extra += ["-M", str(pkg_mb)]
    limit = args.limit or (500 if mode == "noauth" else 200)
    res = Result(mode, label, nproc if uses_server else 0, pkg_mb or 8, sipp_limit=limit)
    args.next_user = 0

    things: list = []
    server = None
    defines = {"CHILDREN": str(args.children)}
    if mode in ("plugin", "rfc4740", "verify", "verify-cold") and args.handler:
        defines["AUTH_DIAMETER_HANDLER"] = f'"{Path(args.handler).resolve()}"'
    if mode == "auth-module":
        defines["AUTH_DIAMETER_HANDLER"] = f'"{BENCH / "auth_module_handler.py"}"'
        extra += AUTH_MODULE_ARGS
    if uses_server:
        verify = mode.startswith("verify")
        rfc4740 = mode.startswith("rfc4740") or verify
        server = h.ReferenceServer(
            db=run_dir / "users.sqlite",
            log_path=run_dir / "server.log",
            extra=("--processes", str(nproc), "--origin-host", "aaa.example.com", "--origin-realm", DOMAIN)
            + (("--ha1-peer", f"*.{ORIGIN_HOST}") if verify else ()),
            diameter_port=h.free_port() if rfc4740 else None,
        )
        server.add_user(USER, DOMAIN, PASSWORD)
        if args.users:
            add_users(Path(server.db), args.users)
        defines |= {"DIAMETER_HOST": '"127.0.0.1"', "DIAMETER_PORT": str(server.port)}
        things.append(server)
        if rfc4740:
            peer_port = server.diameter_port
            if mode == "rfc4740-fd":
                agent = relay(run_dir, server)
                things.append(agent)
                peer_port = agent.port
            defines |= {
                "DIAMETER_PROTOCOL": '"rfc4740"',
                "DIAMETER_PEERS": f'"127.0.0.1:{peer_port}"',
                "ORIGIN_HOST": f'"{ORIGIN_HOST}"',
                # a realm of their own: a relay shares a realm's requests among all its peers with app 6
                "ORIGIN_REALM": f'"{ORIGIN_HOST}"',
                "DESTINATION_REALM": f'"{DOMAIN}"',
            }
            if verify:
                secret = run_dir / "nonce.key"
                secret.write_text(os.urandom(32).hex())
                secret.chmod(0o600)
                defines |= {
                    "DIAMETER_PROTOCOL": '"rfc4740-ha1"',
                    "NONCE_SECRET_FILE": f'"{secret}"',
                    "DIGEST_ALGORITHMS": '"MD5"',  # sipp answers only the first challenge, and only MD5
                    "HA1_CACHE_TTL": "0" if mode == "verify-cold" else "3600",
                }
    k = h.Kamailio(cfg=cfg, run_dir=run_dir / "kamailio", defines=defines, memory="tlsf", extra_args=tuple(extra))
    things.append(k)

    print(
        f"== {label}" + (f", server --processes {nproc}" if uses_server else "") + f", pkg {res.pkg_mb} MB"
        f", sipp -l {limit}"
    )
    with h.running(*things):
        kam_pids = k.pids()
        srv_pids = []
        if server is not None and server.proc is not None:
            srv_pids = [server.proc.pid, *children_of(server.proc.pid)]
        for agent in things:
            if isinstance(agent, FreeDiameter) and agent.pid is not None:
                srv_pids.append(agent.pid)  # the relay counts with the server side
        if args.warmup:
            w = drive(k.sip_port, args.warmup, run_dir / "sipp-warmup", args, limit)
            res.warmup_rate = w.flows / w.seconds
            print(f"   warm-up: {w.flows:,} flows, {w.failed} failed, {res.warmup_rate:,.0f}/s")
        res.planned_flows = planned_flows(args, res.warmup_rate or 2000)
        res.mem.append(mem_sample(k, 0))
        chunk = math.ceil(res.planned_flows / args.samples)
        left, i = res.planned_flows, 0
        while left > 0:
            n = min(chunk, left)
            k0, s0, m0 = cpu_us(kam_pids), cpu_us(srv_pids), machine_busy_us()
            d = drive(k.sip_port, n, run_dir / f"sipp-{i}", args, limit)
            k1, s1, m1 = cpu_us(kam_pids), cpu_us(srv_pids), machine_busy_us()
            res.flows += d.flows
            res.failed += d.failed
            res.retrans += d.retrans
            res.seconds += d.seconds
            res.sipp_cpu_us += d.sipp_cpu_s * 1e6
            res.kam_cpu_us += k1 - k0
            res.srv_cpu_us += s1 - s0
            res.machine_busy_us += m1 - m0
            if d.failed and res.first_failed_chunk is None:
                res.first_failed_chunk = i
            res.alive = k.alive()
            if res.alive:
                res.mem.append(mem_sample(k, res.flows))
            m = res.mem[-1]
            res.chunks.append(
                {
                    "flows": d.flows, "failed": d.failed, "retrans": d.retrans, "seconds": round(d.seconds, 3),
                    "kam_cpu_us_per_flow": round((k1 - k0) / d.flows, 1) if d.flows else None,
                    "srv_cpu_us_per_flow": round((s1 - s0) / d.flows, 1) if d.flows else None,
                    "rss_kb": m.rss_kb, "pkg_used": m.pkg_used,
                }
            )
            print(
                f"   {res.flows:>9,} flows  {d.flows / d.seconds:>7,.0f}/s  failed {d.failed}  retrans {d.retrans}"
                f"  Kamailio {(k1 - k0) / max(d.flows, 1):.0f} us/flow"
                f"  workers RSS {m.rss_kb / 1024:.1f} MB  pkg used {m.pkg_used / 1048576:.2f} MB"
            )
            left -= n
            i += 1
            if not res.alive:
                print("   Kamailio died; stopping this mode")
                break
            if d.failed > n // 10:
                print("   more than 10 % of the calls failed; stopping this mode")
                break
        for line in k.log().splitlines():
            if NO_CREDENTIALS in line:
                res.no_credentials_logged += 1  # the C module logs every unauthenticated request
            elif " ERROR: " in line or " CRITICAL: " in line or " ALERT: <core> [core/mem" in line:
                res.log_errors += 1
    return res


def relay(run_dir: Path, server: h.ReferenceServer) -> FreeDiameter:
    """freeDiameterd relaying realm example.com from Kamailio's workers to the server."""
    assert server.diameter_port is not None
    return FreeDiameter([("127.0.0.1", server.diameter_port, "aaa.example.com")], run_dir / "freediameter", tls_port=0)


# --- report ------------------------------------------------------------------------


def fmt(x: float, spec: str = ",.0f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(results: list[Result]) -> str:
    head = (
        "mode", "srv procs", "flows", "flows/s", "failed", "retrans", "Kam CPU us/flow", "Kam CPU %",
        "srv CPU us/flow", "srv CPU %", "sipp CPU %", "other CPU %",
        "RSS KB/1k flows", "pkg used KB/1k", "pkg +overhead KB/1k",
    )
    rows = [head]
    for r in results:
        rows.append(
            (
                r.label, str(r.server_processes or "-"), fmt(r.flows), fmt(r.rate), fmt(r.failed), fmt(r.retrans),
                fmt(r.per_flow(r.kam_cpu_us), ".1f"), fmt(r.pct(r.kam_cpu_us)),
                fmt(r.per_flow(r.srv_cpu_us), ".1f") if r.server_processes else "-",
                fmt(r.pct(r.srv_cpu_us)) if r.server_processes else "-",
                fmt(r.pct(r.sipp_cpu_us)), fmt(r.pct(r.other_us)),
                fmt(r.growth("rss_kb", 1.0), ".1f"), fmt(r.growth("pkg_used", 1 / 1024), ".1f"),
                fmt(r.growth("pkg_real_used", 1 / 1024), ".1f"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def ratios(results: list[Result]) -> list[str]:
    def pick(mode: str, nproc: int | None = None) -> Result | None:
        for r in results:
            if r.mode == mode and (nproc is None or r.server_processes in (nproc, 0)):
                return r
        return None

    out = []
    noauth = pick("noauth")
    for nproc in sorted({r.server_processes for r in results if r.server_processes}) or [None]:
        c, plugin = pick("c", nproc), pick("plugin", nproc)
        tag = f" (server --processes {nproc})" if nproc else ""
        if plugin and c and c.rate and plugin.flows:
            rate = plugin.rate / c.rate
            cpu = plugin.per_flow(plugin.kam_cpu_us) / c.per_flow(c.kam_cpu_us)
            met_rate = "met" if rate >= 0.9 else "NOT met"
            met_cpu = "met" if cpu <= 2 else "NOT met"
            out.append(f"plugin/C flows/s{tag}: {rate:.2f}  (target >= 0.90: {met_rate})")
            out.append(f"plugin/C Kamailio CPU per flow{tag}: {cpu:.2f}  (target <= 2: {met_cpu})")
        if plugin and noauth and noauth.rate:
            out.append(f"plugin/no-auth flows/s{tag}: {plugin.rate / noauth.rate:.2f}")
        pairs = (
            ("rfc4740", "plugin"), ("rfc4740", "c"), ("rfc4740-fd", "rfc4740"), ("rfc4740-fd", "c"),
            ("verify", "c"), ("verify-cold", "c"), ("verify", "plugin"),
            ("auth-module", "c"), ("verify", "auth-module"),
        )  # fmt: skip
        for mode, base_mode in pairs:
            r, b = pick(mode, nproc), pick(base_mode, nproc)
            if r and b and r.flows and b.flows and b.rate:
                cpu = r.per_flow(r.kam_cpu_us) / b.per_flow(b.kam_cpu_us)
                out.append(f"{mode}/{base_mode}{tag}: flows/s {r.rate / b.rate:.2f}, Kamailio CPU per flow {cpu:.2f}")
        for mode in ("rfc4740", "rfc4740-fd", "verify", "verify-cold", "auth-module"):
            r = pick(mode, nproc)
            if r and r.flows and noauth and noauth.rate:
                out.append(f"{mode}/no-auth flows/s{tag}: {r.rate / noauth.rate:.2f}")
        verify, cold = pick("verify", nproc), pick("verify-cold", nproc)
        if verify and c and noauth and verify.flows and c.rate and noauth.rate:
            rate, share = verify.rate / c.rate, verify.rate / noauth.rate
            cpu = verify.per_flow(verify.kam_cpu_us) / c.per_flow(c.kam_cpu_us)
            out.append(
                f"verify (warm) targets{tag}: {rate:.2f}x C (>= 2.5: {'met' if rate >= 2.5 else 'NOT met'}), "
                f"{share:.2f}x no-auth (>= 0.6: {'met' if share >= 0.6 else 'NOT met'}), "
                f"Kamailio CPU per flow {cpu:.2f}x C (<= 1: {'met' if cpu <= 1 else 'NOT met'})"
            )
        if cold and c and cold.flows and c.rate:
            rate = cold.rate / c.rate
            out.append(f"verify-cold target{tag}: {rate:.2f}x C (>= 1: {'met' if rate >= 1 else 'NOT met'})")
    for r in results:
        if r.mode in ("plugin", "rfc4740", "rfc4740-fd") and len(r.mem) >= 2:
            g = r.growth("rss_kb", 1.0)
            span = r.mem[-1].flows - r.mem[0].flows
            ok = "met" if g <= 50 and span >= 100_000 else ("NOT met" if g > 50 else f"only {span:,} flows")
            growth = f"{g:.1f} KB RSS per 1,000 flows over {span:,} flows"
            out.append(f"{r.mode} memory growth: {growth} (target <= 50: {ok})")
    return out


def machine() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def first_line(cmd: list[str]) -> str:
        with contextlib.suppress(OSError):
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"
        return "?"

    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "kamailio": first_line(["kamailio", "-v"]),
        "sipp": first_line(["sipp", "-v"]),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--flows", type=int, help="measured flows per mode (default: --seconds' worth; 100000 with --memory)"
    )
    p.add_argument(
        "--seconds", type=float, default=25, help="without --flows: run each mode this long at its warm-up rate"
    )
    p.add_argument("--warmup", type=int, default=10000, help="flows before the measurement (default 10000)")
    p.add_argument("--children", type=int, default=4, help="Kamailio children= (default 4)")
    p.add_argument(
        "--modes", default=None, help=f"comma list of {','.join(MODES)} (default noauth,c,plugin; plugin with --memory)"
    )
    p.add_argument("--standard", action="store_true", help=f"the standard comparison: --modes {STANDARD_MODES}")
    p.add_argument(
        "--server-processes", default="1", help="comma list of reference-server --processes values (default 1)"
    )
    p.add_argument("--rate", type=int, default=100000, help="sipp -r, calls/s offered (default 100000)")
    p.add_argument(
        "--buff-size", type=int, default=4194304, help="sipp -buff_size, UDP socket buffers (default 4 MB)"
    )
    p.add_argument(
        "--limit", type=int, default=0, help="sipp -l, max concurrent calls (default 500 for noauth, else 200)"
    )
    p.add_argument(
        "--samples", type=int, help="sipp runs per mode, memory sampled after each (default 1; 5 with --memory)"
    )
    p.add_argument("--memory", action="store_true", help="long run for the memory figure")
    p.add_argument(
        "--users",
        type=int,
        default=0,
        help="flows cycle through this many distinct users, all in the server's database (default 0: alice)",
    )
    p.add_argument("--c-pkg-mb", type=int, default=0, help="-M for the C module (default: enough for its leak)")
    p.add_argument("--pkg-mb", type=int, default=0, help="-M for the other modes (default: Kamailio's 8)")
    p.add_argument("--handler", help="plugin mode: load this app_python3 file instead (bench/profile_handler.py)")
    p.add_argument("--work-dir", help="keep logs here (default: a temporary directory, removed)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument(
        "--chart",
        help="also draw flows/s and Kamailio CPU per flow of each mode in this PNG (default: --json's name, .png; "
        f"needs matplotlib: {chart.INSTALL})",
    )
    p.add_argument("--chart-from", metavar="JSON", help="only draw the chart of an earlier run's --json file")
    args = p.parse_args(argv)
    if args.chart_from:
        source = Path(args.chart_from)
        return 0 if write_chart(json.loads(source.read_text()), Path(args.chart or source.with_suffix(".png"))) else 1
    args.flows = args.flows or (100_000 if args.memory else 0)
    args.samples = max(1, args.samples or (5 if args.memory else 1))
    modes = (args.modes or (STANDARD_MODES if args.standard else "plugin" if args.memory else "noauth,c,plugin")).split(
        ","
    )
    nprocs = [int(n) for n in args.server_processes.split(",")]
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode {m!r}")
    if "rfc4740-fd" in modes and not netns.inside():
        # freeDiameterd 1.2.1 listens on every address: run the whole benchmark where the
        # only addresses are those of a network namespace of its own (tests/netns.py)
        r = netns.run([sys.executable, *sys.argv], cwd=Path.cwd(), timeout=24 * 3600, capture=False)
        return r.returncode

    info = machine()
    print(f"{info['date']}  {info['nproc']} x {info['cpu']}  kernel {info['kernel']}")
    print(f"{info['kamailio']}; {info['sipp']}; Python {info['python']}")
    print(
        f"children={args.children}  flows/mode="
        + (f"{args.flows:,}" if args.flows else f"~{args.seconds:g} s worth")
        + f" (+{args.warmup:,} warm-up), {args.samples} sipp run(s)  "
        f"sipp -r {args.rate} -rp 1000  -x tlsf\n"
    )
    with contextlib.ExitStack() as stack:
        if args.work_dir:
            work = Path(args.work_dir).resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="auth-diameter-bench-")))
        args.next_user = 0  # --users: where the next sipp run's users start
        results: list[Result] = []
        ceiling = 20000.0  # flows/s no mode exceeds here; replaced by the no-auth rate once known
        for m in modes:
            for n in nprocs if MODES[m][2] else [0]:
                results.append(run_mode(m, n, args, work, ceiling))
                if m == "noauth" and results[-1].rate:
                    ceiling = results[-1].rate * 1.2
                time.sleep(1)
    print()
    print(table(results))
    print()
    for line in ratios(results):
        print(line)
    for r in results:
        notes = []
        if not r.alive:
            notes.append("Kamailio died")
        if r.first_failed_chunk is not None:
            notes.append(f"first failures in sipp run {r.first_failed_chunk + 1} of {args.samples}")
        if r.log_errors:
            notes.append(f"{r.log_errors} ERROR/CRITICAL lines in the Kamailio log")
        if r.pct(r.other_us) > 10:
            notes.append(f"other processes used {r.pct(r.other_us):.0f} % CPU meanwhile: numbers disturbed")
        if r.no_credentials_logged:
            notes.append(f"logged 'credentials with given realm not found' {r.no_credentials_logged:,} times")
        if notes:
            print(f"{r.label}: " + "; ".join(notes))
    data = {
        "machine": info,
        "args": vars(args),
        "results": [asdict(r) | {"flows_per_s": r.rate} for r in results],
    }
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.chart or args.json:
        write_chart(data, Path(args.chart or Path(args.json).with_suffix(".png")))
    return 0


def write_chart(data: dict, path: Path) -> bool:
    """The chart of a run's JSON data in ``path``; False, saying how to get matplotlib, without it."""
    try:
        chart.draw(data, path)
    except chart.MissingMatplotlib as exc:
        print(exc, file=sys.stderr)
        return False
    print(f"chart: {path}")
    return True


if __name__ == "__main__":
    sys.exit(main())
