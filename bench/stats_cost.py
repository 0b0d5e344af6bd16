"""What the plugin's statistics cost per request, measured inside a real Kamailio worker.

    .venv/bin/python bench/stats_cost.py

Starts Kamailio (one worker, ``-x tlsf``) with the statistics module, every counter of
metrics.COUNTERS declared, and bench/stats_handler.py, which times the plugin's real
recorder and Kamailio sink (``KSR.statistics.update_stat``) in a loop inside the worker
and reports the least CPU time per case of 7 runs of 20,000. A request the server answered costs one
outcome counter, the answer's buckets and the sum; the transports add two clock reads.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kamailio_auth_diameter import metrics  # noqa: E402
from tests.harness import Kamailio, SipClient  # noqa: E402

HANDLER = ROOT / "bench" / "stats_handler.py"
CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
disable_tcp=yes
listen=udp:127.0.0.1:SIP_PORT
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "statistics.so"
loadmodule "app_python3.so"
modparam("app_python3", "load", AUTH_DIAMETER_HANDLER)
{declarations}
request_route {{
	python_exec("measure");
	exit;
}}
"""
LABELS = {
    "one_update_stat": "one KSR.statistics.update_stat",
    "request_fast_answer": "a request answered within 1 ms (outcome, 6 buckets, sum)",
    "request_slow_answer": "a request answered in 50 ms (outcome, 3 buckets, sum)",
    "request_without_exchange": "a request without an exchange (outcome only)",
    "recorder_alone": "the first, with a sink that does nothing",
    "rtt_clock_reads": "the transports' two clock reads per answer",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "stats.cfg"
        declarations = "\n".join(f'modparam("statistics", "variable", "{name}")' for name in metrics.COUNTERS)
        cfg.write_text(CFG.format(declarations=declarations))
        k = Kamailio(cfg=cfg, run_dir=Path(tmp) / "run", memory="tlsf")
        k.defines["AUTH_DIAMETER_HANDLER"] = f'"{HANDLER}"'
        k.start()
        try:
            reply = SipClient(k.sip_port).request("OPTIONS", "sip:127.0.0.1", headers=("X-Measure: 1",), timeout=120)
        finally:
            k.stop()
    assert reply.code == 200, reply
    print("CPU time per call inside a Kamailio worker (least of 7 runs of 20,000):")
    for name, value in reply.headers:
        if name == "X-Cost":
            case, _, micros = value.partition("=")
            print(f"  {float(micros):6.3f} us  {LABELS[case]}")


if __name__ == "__main__":
    main()
