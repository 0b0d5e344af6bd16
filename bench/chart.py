"""The benchmark's picture: flows/s and Kamailio CPU per flow of each mode, from run.py's JSON.

Two panels side by side, one bar per mode in the order run, so that a mode that is
fast because it burns more CPU shows as such. It is drawn from the JSON that
``bench/run.py --json`` writes (``--chart-from`` redraws one without re-running), so
the picture and the table never come from different runs. matplotlib is the optional
``[bench]`` extra: the benchmark and its table work without it, and this module says
how to install it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

INSTALL = ".venv/bin/pip install -e '.[bench]'"


class MissingMatplotlib(Exception):
    """matplotlib is not installed; the message says how to install it."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One mode's numbers; ``cpu_us`` is NaN when the mode completed no flow."""

    label: str
    flows_per_s: float
    cpu_us: float
    failed: int


def bars(data: dict) -> list[Bar]:
    """One bar per result, labelled with the server's processes where a run measured more
    than one setting of it, and with the failed calls where there were any."""
    results = data["results"]
    several = len({r["server_processes"] for r in results if r["server_processes"]}) > 1
    out = []
    for r in results:
        label = r["label"]
        if several and r["server_processes"]:
            label += f", server x{r['server_processes']}"
        if r["failed"]:
            label += f" ({r['failed']:,} failed)"
        cpu = r["kam_cpu_us"] / r["flows"] if r["flows"] else math.nan
        out.append(Bar(label, r["flows_per_s"], cpu, r["failed"]))
    return out


def other_load(data: dict) -> float:
    """The most CPU (% of one core) that processes other than Kamailio, the server and sipp
    used during any mode's run: on a shared machine, how far to trust the ratios."""
    loads = [
        max(0.0, r["machine_busy_us"] - r["kam_cpu_us"] - r["srv_cpu_us"] - r["sipp_cpu_us"]) / 1e4 / r["seconds"]
        for r in data["results"]
        if r["seconds"]
    ]
    return max(loads, default=0.0)


def title(data: dict) -> str:
    m, a = data["machine"], data["args"]
    kamailio = m["kamailio"].removeprefix("version: ").split(" (")[0]
    text = (
        f"{m['date'][:16].replace('T', ' ')}, {m['nproc']} x {m['cpu']}, {kamailio}, "
        f"children={a['children']}, sipp REGISTER flows at saturation"
    )
    other = other_load(data)
    return text + (f"\nother processes used up to {other:.0f} % CPU meanwhile" if other > 10 else "")


def draw(data: dict, path: Path) -> None:
    """Write the PNG; MissingMatplotlib if it cannot be drawn here."""
    try:
        import matplotlib
    except ImportError:
        raise MissingMatplotlib(f"no chart: matplotlib is not installed ({INSTALL})") from None
    matplotlib.use("Agg")  # a file, no display
    from matplotlib import pyplot, ticker

    shown = bars(data)
    labels = [b.label for b in shown]
    fig, (rate_ax, cpu_ax) = pyplot.subplots(1, 2, figsize=(12, 0.55 * len(shown) + 1.6), sharey=True)
    panels = (
        (rate_ax, [b.flows_per_s for b in shown], "flows/s (higher is better)", "#3b75af", ",.0f"),
        (cpu_ax, [b.cpu_us for b in shown], "Kamailio CPU µs per flow (lower is better)", "#d9822b", ",.1f"),
    )
    for ax, values, heading, colour, spec in panels:
        drawn = [0.0 if math.isnan(v) else v for v in values]
        ax.barh(labels, drawn, color=colour)
        ax.set_title(heading, fontsize=11)
        ax.xaxis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        top = max(drawn, default=0.0) or 1.0
        ax.set_xlim(0, top * 1.18)
        for y, v in enumerate(values):
            ax.text(
                (0 if math.isnan(v) else v) + top * 0.01, y, "no flows" if math.isnan(v) else format(v, spec),
                va="center", fontsize=9,
            )  # fmt: skip
    rate_ax.invert_yaxis()  # the first mode run on top (the axes share it)
    fig.suptitle(title(data), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
