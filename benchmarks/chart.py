"""docs/benchmarks.png: throughput and latency per variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import console


def render_chart(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib missing (uv sync --group bench): no chart[/yellow]")
        return None
    names = list(report["variants"])
    rates = [report["variants"][n]["events_per_s"] or 0 for n in names]
    p50 = [report["variants"][n]["latency_p50_ms"] or 0 for n in names]
    p99 = [report["variants"][n]["latency_p99_ms"] or 0 for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    short = [n.replace(", ", "\n") for n in names]
    left.bar(short, rates, color="#3b6ea5")
    left.set_title("throughput (events/s, median of runs)")
    right.bar([i - 0.2 for i in range(len(names))], p50, width=0.4, label="p50")
    right.bar([i + 0.2 for i in range(len(names))], p99, width=0.4, label="p99")
    right.set_xticks(range(len(names)), short)
    right.set_yscale("log")
    right.set_title("latency at half the maximum rate (ms)")
    right.legend()
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"multichannel bench, {report['date']}, {report['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
