"""bench/chart.py's numbers and labels, and bench/run.py --chart-from without matplotlib.

matplotlib is the ``[bench]`` extra, not a test dependency, so the drawing itself is
checked by running the benchmark (bench/README.md shows the picture); here, what goes
into it and what happens when matplotlib is missing.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from bench import chart, run


def result(mode: str, flows: int, kam_cpu_us: float, seconds: float = 10.0, **more: object) -> dict:
    return {
        "mode": mode,
        "label": f"the {mode} mode",
        "server_processes": 1,
        "flows": flows,
        "failed": 0,
        "seconds": seconds,
        "flows_per_s": flows / seconds,
        "kam_cpu_us": kam_cpu_us,
        "srv_cpu_us": 0.0,
        "sipp_cpu_us": 0.0,
        "machine_busy_us": kam_cpu_us,
        **more,
    }


def data(*results: dict) -> dict:
    machine = {
        "date": "2026-12-02T10:46:44+00:00",
        "nproc": 2,
        "cpu": "AMD EPYC",
        "kamailio": "version: kamailio 5.6.3 (x86_64/linux) ",
    }
    return {"machine": machine, "args": {"children": 4}, "results": list(results)}


def test_a_bar_per_mode_with_its_rate_and_cpu_per_flow() -> None:
    bars = chart.bars(data(result("c", 40_000, 5_110_000.0), result("verify", 0, 0.0)))
    assert [(b.label, b.flows_per_s, b.failed) for b in bars] == [("the c mode", 4_000.0, 0), ("the verify mode", 0, 0)]
    assert bars[0].cpu_us == pytest.approx(127.75)
    assert math.isnan(bars[1].cpu_us)


def test_labels_name_failures_and_the_server_processes_when_they_vary() -> None:
    bars = chart.bars(
        data(
            result("noauth", 10, 1.0, server_processes=0),
            result("c", 10, 1.0, failed=1234),
            result("c", 10, 1.0, server_processes=2),
        )
    )
    assert [b.label for b in bars] == [
        "the noauth mode",
        "the c mode, server x1 (1,234 failed)",
        "the c mode, server x2",
    ]


def test_the_title_says_when_other_processes_disturbed_the_run() -> None:
    quiet = data(result("c", 10, 1_000_000.0))
    assert chart.title(quiet) == (
        "2026-12-02 10:46, 2 x AMD EPYC, kamailio 5.6.3, children=4, sipp REGISTER flows at saturation"
    )
    busy = data(result("c", 10, 1_000_000.0, machine_busy_us=12_600_000.0))  # 11.6 s of others in 10 s
    assert chart.other_load(busy) == pytest.approx(116.0)
    assert chart.title(busy).endswith("\nother processes used up to 116 % CPU meanwhile")


def test_without_matplotlib_the_chart_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    source = tmp_path / "result.json"
    source.write_text(json.dumps(data(result("c", 10, 1.0))))
    assert run.main(["--chart-from", str(source)]) == 1
    assert capsys.readouterr().err == f"no chart: matplotlib is not installed ({chart.INSTALL})\n"
    assert not (tmp_path / "result.png").exists()
