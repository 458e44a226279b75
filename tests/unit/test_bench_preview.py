"""The rule-book preview's benchmark report rendered from a fixed run: the Markdown, byte for byte, as kept in
tests/unit/data/bench (docs/benchmarks-preview.md's layout must not move when the code does)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bench_preview import render_preview

DATA = Path(__file__).parent / "data" / "bench"


def test_the_preview_report_renders_as_it_did() -> None:
    """A 1,000,000-account run's JSON renders to the kept Markdown: every sentence, column and figure."""
    report = json.loads((DATA / "preview-report.json").read_text())
    assert render_preview(report) == (DATA / "preview-report.md").read_text()


def test_the_report_shows_each_runs_figures() -> None:
    """Each run's row holds its worker count, seconds, accounts per second and peak memory."""
    report = json.loads((DATA / "preview-report.json").read_text())
    text = render_preview(report)
    for run in report["runs"]:
        rate = f"{round(run['accounts'] / run['seconds']):,}"
        assert f"| {run['workers']} | {run['seconds']} | {rate} | {run['peak_rss_mb']:,} |" in text
