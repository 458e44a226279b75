"""The benchmark report rendered from fixed reports: the same Markdown and targets rows, byte for byte, as
the renders kept in tests/unit/data/bench (docs/benchmarks.md's layout must not move when the code does)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import RunResult, VariantResult
from benchmarks.report import render_markdown, targets

DATA = Path(__file__).parent / "data" / "bench"


def _results(report: dict[str, Any]) -> dict[str, VariantResult]:
    """The variants' results as the driver holds them, rebuilt from a report's JSON."""
    out = {}
    for name, v in report["variants"].items():
        out[name] = VariantResult(
            name,
            [RunResult(**run) for run in v["run_details"]],
            v["latency_rate"],
            v["latency_p50_ms"],
            v["latency_p99_ms"],
            v["latency_samples"],
            {phase: (pair[0], pair[1]) for phase, pair in v["latency_breakdown"].items()},
            v["latency_cpu"],
        )
    return out


def test_the_last_runs_report_renders_as_it_did() -> None:
    """docs/benchmarks.json of the last run (copied): every section, table, row and word as before."""
    report = json.loads((DATA / "report.json").read_text())
    assert render_markdown(report, Path("benchmarks.png")) == (DATA / "report.md").read_text()


@pytest.mark.parametrize(("name", "chart"), [("report-shapes", None), ("report-errors", Path("benchmarks.png"))])
def test_reports_with_the_csp_shapes_render_and_target_as_they_did(
    name: str, chart: Path | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the CSP data shape sections (measured, or failed part way) and the realistic row: the targets
    rows recomputed from the measurements, and the Markdown, equal the kept renders."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # a targets note names the machine's cores
    report = json.loads((DATA / f"{name}.json").read_text())
    rows = targets(
        _results(report),
        report["recovery"],
        report["steady_latency"],
        report["repeated_kills"],
        report["state_memory"],
        report["shapes"],
    )
    assert [list(row) for row in rows] == report["targets"]
    assert render_markdown(report, chart) == (DATA / f"{name}.md").read_text()
