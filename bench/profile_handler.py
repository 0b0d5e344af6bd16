"""A handler for app_python3 that runs the plugin under cProfile (bench use only).

    .venv/bin/python bench/run.py --modes plugin --handler bench/profile_handler.py --work-dir /tmp/prof
    .venv/bin/python bench/profile_handler.py /tmp/prof          # merged stats, by own time

Loads the real handler (kamailio_auth_diameter/kamailio/handler.py), wraps the
object its mod_init returns and profiles diameter_www_authorize in each worker;
every 5,000 calls the worker writes profile-PID.pstats into its working directory
(Kamailio's -w, the run directory). cProfile times are wall-clock and inflated
several-fold, and recv includes the wait for the server: read them as proportions.
"""

import cProfile
import glob
import os
import pstats
import sys

import real_handler  # bench/real_handler.py: this directory is first on sys.path

DUMP_EVERY = 5000


class Profiled:
    def __init__(self, inner):
        self._inner = inner
        self._profile = None
        self._calls = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def child_init(self, rank):
        return self._inner.child_init(rank)

    def diameter_www_authorize(self, msg, realm=""):
        if self._profile is None:
            self._profile = cProfile.Profile()
        self._profile.enable()
        try:
            return self._inner.diameter_www_authorize(msg, realm)
        finally:
            self._profile.disable()
            self._calls += 1
            if self._calls % DUMP_EVERY == 0:
                self._profile.dump_stats(os.path.join(os.getcwd(), f"profile-{os.getpid()}.pstats"))


def mod_init():
    return Profiled(real_handler.mod_init())


if __name__ == "__main__":
    files = glob.glob(os.path.join(sys.argv[1], "**", "profile-*.pstats"), recursive=True)
    if not files:
        sys.exit(f"no profile-*.pstats under {sys.argv[1]}")
    pstats.Stats(*files).sort_stats("tottime").print_stats(int(sys.argv[2]) if len(sys.argv) > 2 else 30)
