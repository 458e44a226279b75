"""The report: its targets rows, its JSON and docs/benchmarks.md."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmarks.chart import render_chart
from benchmarks.common import (
    CEILING,
    EOS,
    EOS_CURRENT,
    EOS_TRACING,
    PASSTHROUGH,
    PEER,
    PHASES,
    REALISTIC_EOS,
    TRACED_EVERY,
    Target,
    VariantResult,
)
from benchmarks.shape_report import render_sections, shape_targets


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def _phases_text(breakdown: dict[str, Any], at: int) -> str:
    """The phases' p50 (at=0) or p99 (at=1) in ms, for the targets' notes."""
    names = [*PHASES, "visible"]
    parts = [f"{n} {breakdown[n][at]:g}" for n in names if breakdown.get(n) and breakdown[n][at] is not None]
    return ", ".join(parts) + " ms" if parts else "no phase figures"


def _check(name: str, value: float | None, goal: float, higher: bool, unit: str = "", bound: str = "") -> Target:
    """One target's row: met or not, and for one not met by how much (and `bound`: what bounds it)."""
    met = None if value is None else (value >= goal if higher else value <= goal)
    note = ""
    if met is False and value:
        factor = goal / value if higher else value / goal
        note = f"{factor:.2f}x short; {bound}" if bound else f"{factor:.2f}x short"
    return (name, "n/a" if value is None else f"{value}{unit}", met, note)


def targets(
    results: dict[str, VariantResult],
    recovery: dict[str, Any],
    steady: dict[str, Any] | None = None,
    kills: dict[str, Any] | None = None,
    memory: dict[str, Any] | None = None,
    shapes: dict[str, Any] | None = None,
) -> list[Target]:
    """The Targets table's rows: the service's rate and latency, its recovery and memory, the CSP shapes."""
    rows = _service_targets(results, steady) + _recovery_targets(recovery, kills, memory)
    if shapes:
        rows += shape_targets(shapes)
    return rows


def _service_targets(results: dict[str, VariantResult], steady: dict[str, Any] | None) -> list[Target]:
    """Rate against the peer and the ceiling, latency at half the maximum rate and at a steady 1,000/s."""
    rate = {name: r.median("events_per_s") for name, r in results.items()}
    rows: list[Target] = []
    eos = results.get(EOS)
    to_ceiling = _ratio(rate.get(EOS), rate.get(CEILING))
    rows.append(
        _check(
            "exactly-once / Quix peer ≥ 10",
            _ratio(rate.get(EOS), rate.get(PEER)),
            10.0,
            True,
            bound=f"bound: the service's own per-event work, the ceiling: exactly-once runs at {to_ceiling} of it, "
            "and the ceiling's time is Python per event (the profile below)",
        )
    )
    rows += _same_input_targets(rate)
    rows.append(
        _check(
            "exactly-once / ceiling (own work without Kafka) ≥ 0.75",
            to_ceiling,
            0.75,
            True,
            bound="bound: the client and transaction time per batch (see where the latency goes)",
        )
    )
    half = eos.latency_breakdown if eos else {}
    cpu = eos.latency_cpu if eos else {}
    busy = (
        f"CPU at this rate: the service {cpu.get('variant')} cores, the broker {cpu.get('broker')}, the probe "
        f"{cpu.get('probe')}, of {os.cpu_count()}; "
    )
    rows.append(
        _check(
            "p99 latency ≤ 150 ms at half the maximum rate",
            eos.latency_p99_ms if eos else None,
            150,
            False,
            " ms",
            f"bound: the batch cycle, whose phases run one after the other: the service's Python per event "
            f"(process) and the broker's transaction round trips; {busy}p99 of the phases: {_phases_text(half, 1)}",
        )
    )
    rows.append(
        _check(
            "p50 latency ≤ 60 ms at half the maximum rate",
            eos.latency_p50_ms if eos else None,
            60,
            False,
            " ms",
            f"bound: as for p99; p50 of the phases: {_phases_text(half, 0)}",
        )
    )
    rows.append(
        _check(
            "p99 latency ≤ 100 ms at a steady 1,000 events/s",
            (steady or {}).get("p99_ms"),
            100,
            False,
            " ms",
            "bound: the batch cycle: a record that arrives while a batch is being committed waits for that commit "
            "(wait), then for its own batch's commit; the broker uses "
            f"{((steady or {}).get('cpu') or {}).get('broker')} cores at this rate; p99 of the phases: "
            f"{_phases_text((steady or {}).get('breakdown') or {}, 1)}",
        )
    )
    return rows


def _same_input_targets(rate: dict[str, float | None]) -> list[Target]:
    """The exactly-once service's variants against its own rate on the same input: rule book, tracing."""
    same = "both on the same input in the same run"
    compared = (
        (
            EOS_CURRENT,
            "exactly-once under rule book current / seed ≥ 0.9",
            0.9,
            f"{same}; current evaluates T1-T3 and E1, E2 before R8-R10",
        ),
        (
            EOS_TRACING,
            "exactly-once, tracing on / off ≥ 0.95",
            0.95,
            f"{same}; on: a span per batch and per phase exported over OTLP, and a span per traced record "
            f"(1 in {TRACED_EVERY}) whose outputs are produced one by one",
        ),
    )
    return [
        _check(label, _ratio(rate.get(name), rate.get(EOS)), target, True, bound=bound)
        for name, label, target, bound in compared
        if name in rate
    ]


def _recovery_targets(
    recovery: dict[str, Any], kills: dict[str, Any] | None, memory: dict[str, Any] | None
) -> list[Target]:
    """The restore's rate, SIGKILL to the next decision (one instance, then three), memory per account."""
    rows: list[Target] = []
    bare = recovery.get("changelog_consume_records_per_s")
    rows.append(
        _check(
            "restore ≥ 250,000 records/s",
            recovery.get("restore_records_per_s"),
            250_000,
            True,
            " records/s",
            f"bound: the client's read of the changelog (a bare client reads {bare} records/s of the same "
            f"changelog; the restore runs at {_ratio(recovery.get('restore_records_per_s'), bare)} of it), then, per "
            "account kept, its record, its subscriptions' header lines, its index entries and its timers",
        )
    )
    rows.append(
        _check(
            "SIGKILL → first decision ≤ 3 s",
            recovery.get("sigkill_to_first_decision_s"),
            3,
            False,
            " s",
            "see where the restart's time goes",
        )
    )
    rows.append(
        _check(
            "memory per account held ≤ 2,048 bytes",
            (memory or {}).get("bytes_per_account"),
            2048,
            False,
            " B",
            "bound: an account held is its state's values, compressed (see memory per account held; one in use "
            "costs its Python objects)",
        )
    )
    median, worst = (kills or {}).get("median_s"), (kills or {}).get("max_s")
    met = None if median is None or worst is None else median <= 3 and worst <= 10
    rows.append(
        (
            "kill → next decision, 3 instances, repeated SIGKILLs: median ≤ 3 s, max ≤ 10 s",
            "n/a" if median is None else f"median {median} s, max {worst} s",
            met,
            "the restart of the killed instance (see where the restart's time goes)" if met is False else "",
        )
    )
    return rows


def render_markdown(report: dict[str, Any], chart: Path | None) -> str:
    """docs/benchmarks.md from a report: the variants' table, each measurement's section, the targets, then
    how it is measured."""
    lines = _variants_table(report) + _recovery_section(report["recovery"])
    lines += _latency_section(report) + _kills_section(report) + _memory_section(report)
    if report.get("shapes"):
        lines += render_sections(report["shapes"])
    lines += _targets_section(report) + _closing_sections(report, chart) + _profile_section(report) + _HOW_MEASURED
    return "\n".join(lines) + "\n"


def _variants_table(report: dict[str, Any]) -> list[str]:
    """The opening paragraph, one row per variant, and each variant's runs."""
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `multichannel bench` on {report['date']} on a machine with {report['cores']} cores "
        f"(Kafka {report['kafka']}, one local broker, Python {report['python']}). Workload: "
        f"{report['events']:,} account events over {report['accounts']:,} accounts, {report['partitions']} input "
        f"partitions, {report['partner_events']:,} partner events. Rates are medians of {report['runs']} runs; "
        "latency is measured in a separate run paced at half the median rate. Do not edit by hand."
        + _realistic_sentence(report),
        "",
        "| variant | events/s | ratio to passthrough | CPU s / 1k events | peak RSS MB | bytes / account "
        "| latency rate | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = report["variants"].get(PASSTHROUGH, {}).get("events_per_s")
    for name, v in report["variants"].items():
        cells = [
            name,
            f"{v['events_per_s']:,.0f}" if v["events_per_s"] else "n/a",
            f"{v['events_per_s'] / base:.2f}" if base and v["events_per_s"] else "n/a",
            f"{v['cpu_s_per_1k']:.4f}" if v["cpu_s_per_1k"] else "n/a",
            f"{v['peak_rss_mb']:.0f}" if v["peak_rss_mb"] else "n/a",
            f"{v['bytes_per_account']:,.0f}" if v["bytes_per_account"] else "n/a",
            f"{v['latency_rate']:,.0f}/s" if v["latency_rate"] else "n/a",
            f"{v['latency_p50_ms']}" if v["latency_p50_ms"] is not None else "n/a",
            f"{v['latency_p99_ms']}" if v["latency_p99_ms"] is not None else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Runs (events/s): "
        + "; ".join(f"{n}: {', '.join(f'{r:,.0f}' for r in v['runs'])}" for n, v in report["variants"].items()),
    ]
    return lines


def _recovery_section(rec: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Recovery",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| changelog records restored | {rec.get('restore_records')} |",
        f"| accounts restored | {rec.get('restore_accounts')} |",
        f"| restore seconds | {rec.get('restore_seconds')} |",
        f"| restore records/s | {rec.get('restore_records_per_s')} |",
        f"| a bare client reading the same changelog, records/s | {rec.get('changelog_consume_records_per_s')} |",
        f"| restart to first decision (s) | {rec.get('restart_to_first_decision_s')} |",
        f"| SIGKILL to first decision (s, restart at once, static membership) | "
        f"{rec.get('sigkill_to_first_decision_s')} |",
        "",
        "Where the restart's time goes (seconds, from the service's log lines):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *[
            f"| {phase} | {value if value is not None else 'n/a'} |"
            for phase, value in rec.get("breakdown", {}).items()
        ],
    ]


def _targets_section(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Targets",
        "",
        "| target | measured | met | short by, and what bounds it |",
        "|---|---:|:---:|---|",
    ]
    for name, value, met, note in report["targets"]:
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {value} | {verdict} | {note} |")
    return lines


def _closing_sections(report: dict[str, Any], chart: Path | None) -> list[str]:
    """The peer check, the pointers to the scale and dashboard figures, and the chart."""
    lines = ["", "## Peer check", "", f"Quix Streams peer against the exactly-once service: {report['peer_check']}."]
    lines += [
        "",
        "## State at scale",
        "",
        "A million accounts, memory per account and the restore of every partition and of one alone: "
        "`make bench-scale`, in [benchmarks-scale.md](benchmarks-scale.md).",
    ]
    dashboard = report.get("dashboard")
    if dashboard:
        lines += [
            "",
            "## Dashboard",
            "",
            "From `make bench-dashboard` (`docs/dashboard-benchmarks.md`, its last run):",
            "",
        ]
        lines += dashboard.splitlines()
    if chart is not None:
        lines += ["", f"![throughput and latency per variant]({chart.name})"]
    return lines


def _profile_section(report: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Where the exactly-once service spends its time",
        "",
        f"cProfile of the service catching up on the input for {report['profile_seconds']:.0f} s, "
        "top 25 functions by own time:",
        "",
        "```",
        report["profile"].rstrip(),
        "```",
        "",
    ]


_HOW_MEASURED = [
    "## How it is measured",
    "",
    "- Every variant reads the same pre-produced input topic with a consumer group of its own. Throughput is "
    "the group's committed offsets between the first and the last commit, sampled every 100 ms from "
    "outside the process; CPU time and peak RSS (VmHWM) are read from /proc. Bytes per account is peak RSS "
    "minus RSS at the first commit, divided by the accounts. Before the measured runs, the passthrough and "
    "the exactly-once service each read the input once, unmeasured: without that warm-up of the broker "
    "(its JIT compiler, the page cache), the first runs of every variant were slower than the later ones.",
    "- The passthrough consumes batches of 2,000, produces the same bytes with `produce_batch` and commits "
    "offsets asynchronously: no decoding, no state, no transactions.",
    "- The peer is a Quix Streams application (`benchmarks/peer_quix.py`, exactly-once, RocksDB state "
    "with changelog topics, Avro through the registry, its default 5 s commit interval) in its own virtual "
    "environment, with the same pure rule core. Its decisions are checked equal to ours per subscription.",
    "- The ceiling is the service's own per-event work with Kafka taken away (`benchmarks/ceiling.py`): the "
    "same input values in memory, then batch by batch the service's codec and engine: decode, validate, "
    "classify, encode decisions, statuses and changed account states. No client, broker or transaction.",
    "- Latency: a fresh input topic, events produced at half the variant's median rate (and, for the "
    "exactly-once service, at a steady 1,000 events/s), each timed from produce to the first decision it "
    "caused as seen by a `read_committed` consumer (passthrough: its copy). The probe's producer lingers "
    "1 ms and its reader fetches with `fetch.wait.max.ms` 5, so neither holds records back; at the "
    "passthrough's half rate (hundreds of thousands per second) the probe's own Python loop, which sends "
    "and decodes every record, is the bound, and its figures say so rather than the passthrough's.",
    "- Repeated SIGKILLs, memory per account held, changelog bytes per input event, the big account and "
    "the month-end storm: see their sections above (`benchmarks/shapes.py` for the last three; "
    "`python -m benchmarks.shapes --quick` runs them alone at small sizes).",
]


def _realistic_sentence(report: dict[str, Any]) -> str:
    info = report.get("realistic_workload")
    if not info:
        return ""
    return (
        f" The row `{REALISTIC_EOS}` reads the generator's realistic shape instead (heavy-tailed account sizes "
        "up to 20,000 subscriptions, terms ending on the 1st of a month, late partner changes): "
        f"{info['events']:,} account events over {info['accounts']:,} accounts, {info['partner_events']:,} "
        "partner events, on topics of its own."
        + (f" It was not measured: {info['error']}." if info.get("error") else "")
    )


def _ms(pair: Any) -> str:
    if not pair:
        return "n/a"
    return " / ".join("n/a" if x is None else f"{x:g}" for x in pair)


def _latency_section(report: dict[str, Any]) -> list[str]:
    """Each latency run's phases: the service's per-batch histograms and the write-to-visible time."""
    runs: list[tuple[str, Any, Any]] = [
        (name, v.get("latency_rate"), v.get("latency_breakdown") or {})
        for name, v in report["variants"].items()
        if v.get("latency_rate")
    ]
    steady = report.get("steady_latency")
    if steady:
        runs.append((f"{EOS}, steady", steady["rate"], steady.get("breakdown") or {}))
    columns = [*PHASES, "visible"]
    lines = [
        "",
        "## Where the latency goes",
        "",
        "p50 / p99 in ms of each phase during the latency runs. `wait` is the age of a batch's oldest input "
        "record when the batch starts (producer linger, fetch, and queueing behind the batch before it); "
        "`process` decodes, classifies and encodes; `produce` hands the records to the client; `offsets` adds "
        "the input offsets to the transaction; `commit` delivers the batch's records and commits. These are "
        "per batch, from the service's `multichannel_batch_phase_seconds` histogram (so bucket bounds). "
        "`visible` is per output record, from its write (the record's timestamp) to its arrival at the "
        "probe's `read_committed` reader: it contains the commit, and the reader's own fetch. `CPU cores` is "
        "what the variant's process, the broker and the probe itself (which sends every event and decodes "
        "every output) each used of the machine's cores over the paced part of the run. When `process` "
        "reaches a whole batch (2,000 records) and `wait` grows, the service is not keeping up with the rate: "
        "its cycle (process, then produce, offsets and commit, one after the other) is longer than the time "
        "the batch took to arrive.",
        "",
        "| run | rate/s | end to end | " + " | ".join(columns) + " | CPU cores: variant / broker / probe |",
        "|---|---:|---:|" + "---:|" * len(columns) + "---:|",
    ]
    for name, rate, phases in runs:
        if name.endswith(", steady"):
            end = (steady or {}).get("p50_ms"), (steady or {}).get("p99_ms")
            cpu = (steady or {}).get("cpu") or {}
        else:
            v = report["variants"][name]
            end = v.get("latency_p50_ms"), v.get("latency_p99_ms")
            cpu = v.get("latency_cpu") or {}
        cores = " / ".join("n/a" if cpu.get(k) is None else f"{cpu[k]:.2f}" for k in ("variant", "broker", "probe"))
        cells = [name, f"{rate:,.0f}", _ms(end), *[_ms(phases.get(c)) for c in columns], cores]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _kills_section(report: dict[str, Any]) -> list[str]:
    kills = report.get("repeated_kills")
    if not kills:
        return []
    per_kill = ", ".join("n/a" if x is None else f"{x:g}" for x in kills["per_kill_s"])
    return [
        "",
        "## Repeated SIGKILLs, three instances",
        "",
        f"Three instances with the shipped defaults (static membership) on a steady 200 events/s; every 3-10 s "
        f"(seed {kills['seed']}) one is SIGKILLed and started again at once. From each kill to the first "
        "decision for an event sent after it on a partition the killed instance owned: "
        f"median {kills['median_s']} s, max {kills['max_s']} s over {kills['kills']} kills "
        f"({kills['recovered']} measured). Per kill (s): {per_kill}.",
    ]


def _memory_section(report: dict[str, Any]) -> list[str]:
    memory = report.get("state_memory")
    if not memory:
        return []
    lines = [
        "",
        "## Memory per account held",
        "",
        f"{memory['bytes_per_account']:,.0f} bytes per account held: the Python memory the engine holds per "
        f"account after the whole workload ({memory['accounts']:,} accounts, about ten events each), traced by "
        "allocation site (tracemalloc, in a pass of its own), with the accounts held as the service holds those "
        "past its `MULTICHANNEL_ACCOUNTS_IN_USE` most recently used ones (and a restored one until its first "
        "use): their state's values, joined and compressed. An account in use, as working objects, costs "
        f"{memory.get('in_use_bytes_per_account', 0):,.0f} bytes; the largest allocation sites in use:",
        "",
        "| allocation site | bytes per account |",
        "|---|---:|",
    ]
    lines += [f"| `{site}` | {size:,.0f} |" for site, size in memory["sites"]]
    return lines


def write_report(report: dict[str, Any], docs_dir: Path) -> None:
    """benchmarks.json, .png and .md under `docs_dir`, with the dashboard's own figures (measured by make
    bench-dashboard) when docs_dir has them."""
    dashboard = docs_dir / "dashboard-benchmarks.md"
    if dashboard.exists():  # the dashboard's own figures, measured by make bench-dashboard
        report["dashboard"] = dashboard.read_text().split("\n", 1)[1].replace("\n## ", "\n### ").strip()
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    chart = render_chart(report, docs_dir / "benchmarks.png")
    (docs_dir / "benchmarks.md").write_text(render_markdown(report, chart))
