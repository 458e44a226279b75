"""The benchmark chart's panels from a fixed report: every bar reads (log axes, a figure on each), no empty
slot (a variant without a latency run is left out of that panel), and names wrapped so labels do not overlap."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.chart import LABEL_WIDTH, _log_limits, chart_panels
from benchmarks.common import CEILING, EOS, PASSTHROUGH, PEER, REALISTIC_EOS

REPORT = Path(__file__).parent / "data" / "bench" / "report-shapes.json"


def _name(label: str) -> str:
    return label.replace("\n", " ")


def test_throughput_panel_is_log_scaled_with_every_variant() -> None:
    """The passthrough is about 15 times the service: on a log axis, from the power of ten below the
    smallest bar, the peer's bar is a bar and not a sliver."""
    report = json.loads(REPORT.read_text())
    throughput, _latency = chart_panels(report)
    assert throughput.log
    assert [_name(label) for label in throughput.labels] == list(report["variants"])
    (rates,) = throughput.series.values()
    assert rates[0] == report["variants"][PASSTHROUGH]["events_per_s"]
    low, high = _log_limits(rates)
    assert (low, high) == (1000.0, rates[0] * 3), "the peer's 2,477 events/s sit above a floor of 1,000"


def test_latency_panel_leaves_out_the_ceiling_and_every_bar_has_data() -> None:
    """The ceiling (and the realistic row, which has no latency run) get no slot; every other variant has
    a p50 and a p99 bar, each with a figure."""
    report = json.loads(REPORT.read_text())
    _throughput, latency = chart_panels(report)
    assert latency.log
    assert [_name(label) for label in latency.labels] == [PASSTHROUGH, "service, at-least-once", EOS, PEER]
    assert CEILING not in map(_name, latency.labels) and REALISTIC_EOS not in map(_name, latency.labels)
    assert set(latency.series) == {"p50", "p99"}
    for values in latency.series.values():
        assert len(values) == len(latency.labels)
        assert all(v > 0 for v in values)
    assert latency.series["p99"][2] == report["variants"][EOS]["latency_p99_ms"]


def test_variant_names_are_wrapped_to_short_lines() -> None:
    """Each name under a bar is at most LABEL_WIDTH characters a line, so neighbouring labels do not meet."""
    report = json.loads(REPORT.read_text())
    for panel in chart_panels(report):
        for label in panel.labels:
            assert all(len(line) <= LABEL_WIDTH for line in label.splitlines()), label
    assert max(len(name) for name in report["variants"]) > 2 * LABEL_WIDTH
