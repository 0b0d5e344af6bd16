"""The app_python3 file bench/stats_cost.py loads: it times, inside a Kamailio worker, what
the plugin's statistics add to a request (bench use only).

An OPTIONS carrying ``X-Measure`` runs every case ROUNDS times, REPEATS times over, and
answers 200 with one ``X-Cost: case=microseconds`` header per case (the least of the
repeats, as timeit advises: the others only add what the shared machine did meanwhile;
CPU time of this process); any other request gets 200 at once (the harness's readiness probe).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import KSR  # provided by app_python3

from kamailio_auth_diameter import metrics
from kamailio_auth_diameter.kamailio.stats import KsrStatistics

ROUNDS = 20000
REPEATS = 7


class _NoSink:
    def add(self, name, n):
        pass

    def add_one_each(self, names):
        pass


def _log(text):
    KSR.err(text + "\n")


def mod_init():
    return Measure()


class Measure:
    def child_init(self, rank):
        return 0

    def measure(self, msg):
        if KSR.hdr.is_present("X-Measure") < 0:
            KSR.sl.send_reply(200, "OK")
            return 1
        real = metrics.Recorder(KsrStatistics(KSR, _log))
        bare = metrics.Recorder(_NoSink())
        update = KSR.statistics.update_stat
        clock = time.monotonic

        def one_update_stat():
            update("dia_auth_challenged", 1)

        def request_fast_answer():  # a request the server answered within 1 ms: every bucket
            real.outcome("challenged")
            real.event(metrics.ANSWER, 0.0003)

        def request_slow_answer():  # answered in 50 ms: the widest two buckets and +Inf
            real.outcome("authorized")
            real.event(metrics.ANSWER, 0.05)

        def request_without_exchange():  # an ACK, a 400, a 403 decided by identity_check
            real.outcome("exempt")

        def recorder_alone():  # the fast-answer request with a sink that does nothing
            bare.outcome("challenged")
            bare.event(metrics.ANSWER, 0.0003)

        def rtt_clock_reads():  # what the transports add to time an answer
            clock()
            clock()

        cases = [
            one_update_stat,
            request_fast_answer,
            request_slow_answer,
            request_without_exchange,
            recorder_alone,
            rtt_clock_reads,
        ]
        for case in cases:
            samples = []
            for _ in range(REPEATS):
                start = time.process_time()
                for _ in range(ROUNDS):
                    case()
                samples.append((time.process_time() - start) / ROUNDS * 1e6)
            KSR.hdr.append_to_reply(f"X-Cost: {case.__name__}={min(samples):.3f}\r\n")
        KSR.sl.send_reply(200, "OK")
        return 1
