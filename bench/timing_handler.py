"""A handler for app_python3 that times the plugin's authorize calls inside each worker (bench use only).

    .venv/bin/python bench/run.py --modes verify --handler bench/timing_handler.py --work-dir /tmp/timing
    grep TIMING /tmp/timing/*/kamailio/kamailio.log

Loads the real handler (kamailio_auth_diameter/kamailio/handler.py), wraps the object
its mod_init returns, and every EVERY calls each worker logs the mean and percentiles of
diameter_www_authorize's CPU time (the worker's own, CLOCK_THREAD_CPUTIME_ID) and wall
time. Why it exists: the same Python costs a saturated worker two to three times what a
tight loop outside Kamailio says (four workers and sipp share two cores, so each request
starts with cold caches), and only a measurement in the worker shows that.
"""

import os
import time

import KSR  # provided by app_python3
import real_handler  # bench/real_handler.py: this directory is first on sys.path

EVERY = int(os.environ.get("TIMING_EVERY", "20000"))


def _summary(values):
    s = sorted(values)
    n = len(s)
    return (
        f"mean {sum(s) / n * 1e6:.1f} p10 {s[n // 10] * 1e6:.1f} p50 {s[n // 2] * 1e6:.1f} "
        f"p90 {s[9 * n // 10] * 1e6:.1f} p99 {s[99 * n // 100] * 1e6:.1f}"
    )


class Timed:
    def __init__(self, inner):
        self._inner = inner
        self._cpu = []
        self._wall = []

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def child_init(self, rank):
        return self._inner.child_init(rank)

    def diameter_www_authorize(self, msg, realm=""):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return self._inner.diameter_www_authorize(msg, realm)
        finally:
            self._cpu.append(time.thread_time() - cpu)
            self._wall.append(time.perf_counter() - wall)
            if len(self._cpu) == EVERY:
                KSR.err(
                    f"TIMING pid {os.getpid()} {EVERY} calls, us: "
                    f"cpu [{_summary(self._cpu)}] wall [{_summary(self._wall)}]\n"
                )
                self._cpu.clear()
                self._wall.clear()


def mod_init():
    return Timed(real_handler.mod_init())
