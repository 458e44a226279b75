"""docs/benchmarks.png: throughput and latency per variant.

The rates span two orders of magnitude (the passthrough against the service and the peer), so both panels
use a log axis and label each bar with its figure; a variant without a latency run (the ceiling) is left
out of the latency panel rather than shown as an empty slot. Variant names are wrapped to a few words a
line so that no two labels overlap.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import console

LABEL_WIDTH = 14
"""Characters per line of a wrapped variant name under its bar."""


@dataclass(frozen=True)
class Panel:
    """One panel of the chart: a bar per series for each label, on a log axis when `log`."""

    title: str
    labels: list[str]
    series: dict[str, list[float]]
    log: bool
    value_format: str


def _label(name: str) -> str:
    return textwrap.fill(name, LABEL_WIDTH, break_on_hyphens=False)


def chart_panels(report: dict[str, Any]) -> list[Panel]:
    """Throughput of every variant with a rate, and latency (p50, p99) of every variant with a latency run."""
    variants = report["variants"]
    rated = [n for n, v in variants.items() if v.get("events_per_s")]
    timed = [n for n, v in variants.items() if v.get("latency_p50_ms") and v.get("latency_p99_ms")]
    return [
        Panel(
            "throughput (events/s, median of runs; log scale)",
            [_label(n) for n in rated],
            {"events/s": [float(variants[n]["events_per_s"]) for n in rated]},
            log=True,
            value_format="{:,.0f}",
        ),
        Panel(
            "latency at half the maximum rate (ms; log scale)",
            [_label(n) for n in timed],
            {
                "p50": [float(variants[n]["latency_p50_ms"]) for n in timed],
                "p99": [float(variants[n]["latency_p99_ms"]) for n in timed],
            },
            log=True,
            value_format="{:,.0f}",
        ),
    ]


def _log_limits(values: list[float]) -> tuple[float, float]:
    """From the power of ten below the smallest bar (so that it reads as a bar, not a sliver) to three
    times the largest (room for its label)."""
    low = min(values, default=1.0)
    return 10.0 ** math.floor(math.log10(max(low, 1e-9))), max(values, default=10.0) * 3


def chart_figure(report: dict[str, Any]) -> Any:
    """The chart as a matplotlib Figure (Agg), one axis per panel of `chart_panels`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    panels = chart_panels(report)
    fig = Figure(figsize=(14, 5.5))
    FigureCanvasAgg(fig)  # drawn and saved without pyplot's global state
    for ax, panel in zip(fig.subplots(1, len(panels)), panels, strict=True):
        width = 0.8 / max(len(panel.series), 1)
        for i, (name, values) in enumerate(panel.series.items()):
            offset = (i - (len(panel.series) - 1) / 2) * width
            bars = ax.bar([x + offset for x in range(len(values))], values, width=width, label=name)
            ax.bar_label(bars, labels=[panel.value_format.format(v) for v in values], fontsize=7, padding=2)
        ax.set_xticks(range(len(panel.labels)), panel.labels)
        ax.tick_params(axis="x", labelsize=8)
        if panel.log:
            ax.set_yscale("log")
            ax.set_ylim(*_log_limits([v for values in panel.series.values() for v in values]))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.set_title(panel.title)
        if len(panel.series) > 1:
            ax.legend()
    fig.suptitle(f"multichannel bench, {report['date']}, {report['cores']} cores")
    fig.tight_layout()
    return fig


def render_chart(report: dict[str, Any], path: Path) -> Path | None:
    """Writes the chart to `path`; None (and a note) without matplotlib, which only the bench group installs."""
    try:
        fig = chart_figure(report)
    except ImportError:
        console.print("[yellow]matplotlib missing (uv sync --group bench): no chart[/yellow]")
        return None
    fig.savefig(path, dpi=110)
    return path
