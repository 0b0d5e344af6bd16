"""What the reference server's Prometheus metrics cost per request.

    .venv/bin/python bench/server_metrics_cost.py

1. The calls one answered request makes (``request`` and ``answered``: a counter and a
   histogram), timed in a loop: on the base Metrics (what a server without
   ``--metrics-listen`` runs), on prometheus_client in memory (one process) and in
   multiprocess mode (``--processes N``, values in memory-mapped files). Least CPU time
   of 7 runs of 100,000, each case in a fresh interpreter, as prometheus_client picks
   its mode when first imported.
2. The real server, ``serve`` with and without ``--metrics-listen`` (``--processes 1``
   and ``2``): legacy group checks, one at a time on one connection (the cheapest
   request, a single indexed read, so the largest share for the counting), and the CPU
   time the server's processes spent, per request (/proc/PID/schedstat). The two servers
   run side by side and are asked in turns, so that what else the machine does weighs on
   both alike; least of 30 runs of 2,000 each.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kamailio_auth_diameter.wire import legacy  # noqa: E402
from tests.harness import ReferenceServer, free_port  # noqa: E402

LOOP = textwrap.dedent(
    """
    import os, sys, time
    mode = sys.argv[1]
    if mode == "multiprocess":
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[2]
    from kamailio_auth_diameter.server.metrics import Metrics
    if mode == "off":
        m = Metrics()
    else:
        from kamailio_auth_diameter.server.exporter import PrometheusMetrics
        m = PrometheusMetrics(sys.argv[2] if mode == "multiprocess" else None, ("legacy",))
    request, answered = m.request, m.answered
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(100_000):
            request("legacy_auth", 2001)
            answered("legacy", 0.0003)
        best = min(best, time.process_time() - start)
    print(best / 100_000 * 1e6)
    """
)
REQUESTS = 2_000
RUNS = 30


def loop_cost(mode: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", LOOP, mode, tmp], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    return float(out)


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes so far, to the nanosecond (the scheduler's own account,
    /proc/PID/schedstat, where /proc/PID/stat counts in 10 ms ticks)."""
    return sum(int(Path(f"/proc/{p}/schedstat").read_text().split()[0]) for p in pids) / 1e9


def server_pids(pid: int) -> list[int]:
    """The server's main process and its children."""
    return [pid, *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())]


def group_checks(port: int, n: int) -> None:
    request = legacy.encode_group_request("example.com", 1, "voicemail", b"alice")
    with socket.create_connection(("127.0.0.1", port)) as s:
        for _ in range(n):
            s.sendall(request)
            data = b""
            while len(data) < 4 or len(data) < int.from_bytes(data[1:4], "big"):
                data += s.recv(4096)
            assert legacy.decode_answer(data).result_code == 2001


def server_costs(tmp: Path, processes: str) -> tuple[float, float]:
    """CPU time per request of two servers, without and with --metrics-listen, run side
    by side and asked in turns, so that what else the machine does weighs on both alike."""
    servers = []
    for name, metrics in (("off", ()), ("on", ("--metrics-listen", str(free_port())))):
        server = ReferenceServer(
            db=tmp / f"{name}.db", log_path=tmp / f"{name}.log", extra=("--processes", processes, *metrics)
        )
        server.add_group("alice", "voicemail")
        servers.append(server.start())
    try:
        best = [float("inf"), float("inf")]
        for server in servers:
            group_checks(server.port, 500)  # warm up
        pids = [server_pids(server.proc.pid) for server in servers if server.proc is not None]
        for _ in range(RUNS):
            for i, server in enumerate(servers):
                before = cpu_seconds(pids[i])
                group_checks(server.port, REQUESTS)
                best[i] = min(best[i], cpu_seconds(pids[i]) - before)
    finally:
        for server in servers:
            server.stop()
    return best[0] / REQUESTS * 1e6, best[1] / REQUESTS * 1e6


def main() -> None:
    print("The calls of one answered request (least CPU time of 7 runs of 100,000):")
    for mode, label in (
        ("off", "without --metrics-listen (the base Metrics)"),
        ("memory", "prometheus_client in memory (--processes 1)"),
        ("multiprocess", "prometheus_client multiprocess (--processes N)"),
    ):
        print(f"  {loop_cost(mode):6.2f} us  {label}")
    print(f"The server's CPU time per legacy group check (least of {RUNS} runs of {REQUESTS:,} on one connection):")
    for processes in ("1", "2"):
        with tempfile.TemporaryDirectory() as tmp:
            off, on = server_costs(Path(tmp), processes)
        print(f"  {off:6.1f} us  --processes {processes} without metrics")
        print(f"  {on:6.1f} us  --processes {processes} with --metrics-listen")


if __name__ == "__main__":
    main()
