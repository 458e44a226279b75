"""`multichannel bench`: throughput, latency and recovery of the service next to a raw passthrough
and a Quix Streams peer, against one broker and registry, in one run.

Every variant reads the same pre-produced input topic with a group of its own and writes to
topics of its own. Throughput comes from the group's committed offsets, sampled from outside the
process (first to last commit); CPU time and peak RSS from /proc. Latency is measured in a second,
paced run at half the variant's median rate: the time from producing an event to seeing its
decision (for the passthrough: its copy) with a read_committed consumer.

This module is the driver: it runs the measurements of the other modules of `benchmarks` in the order
of the report's sections, and `benchmarks.report` writes the report.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from benchmarks.ceiling import measure_ceiling, measure_state_memory
from benchmarks.common import (
    ALOS,
    CEILING,
    EOS,
    EOS_CURRENT,
    EOS_TRACING,
    PASSTHROUGH,
    PEER,
    REALISTIC_EOS,
    TRACED_EVERY,
    BenchError,
    BenchOptions,
    RunResult,
    VariantResult,
    Workload,
    console,
    last_error_line,
    slug,
)
from benchmarks.kills import measure_repeated_kills
from benchmarks.latency import measure_latency
from benchmarks.otlp_sink import OtlpSink
from benchmarks.peer_check import compare_decisions, read_decisions
from benchmarks.profiling import profile_service
from benchmarks.recovery import measure_recovery
from benchmarks.report import targets, write_report
from benchmarks.shapes import run_shapes
from benchmarks.throughput import measure_throughput
from benchmarks.variants import Launch, Variants, drop_topics, peer_python
from benchmarks.workload import build_workload, produce_all, topic_size
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from schemas import SUBSCRIPTION_DECISION, SUBSCRIPTION_EVENT

Starter = Callable[[str, str], Launch]
"""Starts one run of a variant: (run label, input topic) -> its launch."""
RATE_ONLY = frozenset({EOS_CURRENT, EOS_TRACING})
"""Variants run for their rate next to the exactly-once service's: their latency would be the same batch cycle's."""


@dataclass
class _Bench:
    """One comparison's shared state: its settings, input, variants, the results so far, and its progress bar."""

    s: Settings
    opts: BenchOptions
    tag: str
    input_topic: str
    workload: Workload
    total: int
    variants: Variants
    starters: dict[str, Starter]
    results: dict[str, VariantResult]
    sub_decoder: Decoder
    dec_decoder: Decoder
    realistic: tuple[str, int, Starter] | None = None
    realistic_info: dict[str, Any] | None = None
    decision_topics: dict[str, str] = field(default_factory=dict)
    otlp_sink: OtlpSink | None = None
    """The collector the tracing-on runs export their spans to."""
    bar: tuple[Progress, TaskID] | None = None
    """The progress bar and its task, while the measurements run."""

    def event_ids(self, values: list[bytes]) -> list[str | None]:
        return [r["event_id"] if isinstance(r, dict) else None for r in self.sub_decoder.decode_values(values)]

    def causes(self, values: list[bytes]) -> list[str | None]:
        return [
            r["caused_by_event_id"] if isinstance(r, dict) else None for r in self.dec_decoder.decode_values(values)
        ]

    def steps(self) -> int:
        """The progress bar's steps: every throughput run, every latency run, and one per later section."""
        realistic = self.realistic is not None
        latency = len(self.starters) - len(RATE_ONLY & set(self.starters))
        return self.opts.runs * (len(self.starters) + realistic) + latency + 5 + realistic

    def step(self, description: str) -> None:
        assert self.bar is not None
        self.bar[0].update(self.bar[1], description=description)

    def advance(self) -> None:
        assert self.bar is not None
        self.bar[0].advance(self.bar[1])


def run_bench(settings: Settings, opts: BenchOptions, uv: Path) -> dict[str, Any]:
    """The whole comparison; writes the JSON, Markdown and PNG and returns the report."""
    started = time.monotonic()
    bench = _prepare(settings, opts, uv)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bench.bar = progress, progress.add_task("benchmark", total=bench.steps())
        try:
            sections = _measure(bench)
        finally:
            if bench.otlp_sink is not None:
                bench.otlp_sink.close()
    report = _report(bench, sections, started)
    write_report(report, opts.docs_dir)
    return report


def _prepare(settings: Settings, opts: BenchOptions, uv: Path) -> _Bench:
    """The input and partner topics, the workload published to them, the peer's virtualenv, the variants."""
    s = settings.model_copy(update={"input_partitions": opts.partitions, "output_partitions": opts.partitions})
    tag = uuid.uuid4().hex[:6]
    input_topic, partner_topic = f"bench-{tag}-subscriptions", f"bench-{tag}-partners"
    s = s.model_copy(update={"subscription_topic": input_topic, "partner_topic": partner_topic})
    ensure_topics(
        s.kafka_client_config(),
        {input_topic: (opts.partitions, "delete"), partner_topic: (s.partner_partitions, "compact")},
        1,
    )
    with console.status("generating and publishing the workload…"):
        workload = build_workload(s, opts)
        produce_all(s, partner_topic, workload.partner_messages)
        produce_all(s, input_topic, [(k, v) for _e, k, v in workload.account_messages], TRACED_EVERY)
    total = topic_size(s, input_topic, opts.partitions)
    console.print(
        f"workload: {total:,} account events, {len(workload.accounts):,} accounts, "
        f"{len(workload.partner_messages):,} partner events"
    )
    python = peer_python(opts, uv) if opts.peer else None
    sink = OtlpSink()
    variants = Variants(s, opts, python)
    starters: dict[str, Starter] = {
        PASSTHROUGH: variants.passthrough,
        ALOS: lambda label, topic: variants.service(label, topic, "at_least_once")[0],
        EOS: lambda label, topic: variants.service(label, topic, "exactly_once_v2")[0],
        EOS_CURRENT: lambda label, topic: variants.service(label, topic, "exactly_once_v2", rulebook="current")[0],
        EOS_TRACING: lambda label, topic: variants.service(
            label, topic, "exactly_once_v2", otel_traces_exporter="otlp", otel_exporter_otlp_endpoint=sink.url
        )[0],
    }
    if python is not None:
        starters[PEER] = variants.peer
    bench = _Bench(
        s,
        opts,
        tag,
        input_topic,
        workload,
        total,
        variants,
        starters,
        {name: VariantResult(name) for name in [*starters, CEILING]},
        Decoder(registry_client(s), SUBSCRIPTION_EVENT),
        Decoder(registry_client(s), SUBSCRIPTION_DECISION),
        otlp_sink=sink,
    )
    if opts.shapes is not None:
        with console.status("generating and publishing the realistic workload…"):
            bench.realistic, bench.realistic_info = _publish_realistic(s, opts, variants, tag)
        bench.results[REALISTIC_EOS] = VariantResult(REALISTIC_EOS)
    return bench


def _measure(bench: _Bench) -> dict[str, Any]:
    """Every measurement, in the order of the report's sections; returns the sections' figures."""
    # An unmeasured pass first: the broker's JIT compiler and the page cache warm up over the first runs
    # (rates rose run after run for every variant without it), and no variant should pay for that.
    bench.step("warming up the broker (not measured)")
    for name in (PASSTHROUGH, EOS):
        label = f"{bench.tag}-warmup-{slug(name)}"
        topic = bench.input_topic
        measure_throughput(bench.s, bench.starters[name](label, topic), topic, bench.total, None, 1800)
        drop_topics(bench.s, label)
    for run in range(bench.opts.runs):
        _throughput_runs(bench, run)
        _realistic_run(bench, run)
    ceiling_settings = _ceiling_runs(bench)
    sections: dict[str, Any] = {"peer_check": _peer_check(bench)}
    _latency_runs(bench)
    sections["steady_latency"] = _steady_latency(bench)
    bench.step("recovery")
    sections["recovery"] = measure_recovery(
        bench.variants, bench.s, f"{bench.tag}-{slug(EOS)}-0", bench.input_topic, bench.workload
    )
    console.print(f"  recovery: {sections['recovery']}")
    bench.step("repeated SIGKILLs, three instances")
    kills = measure_repeated_kills(
        bench.variants, bench.s, f"{bench.tag}-kills", bench.workload, bench.opts.kills, bench.opts.seed
    )
    sections["repeated_kills"] = kills
    console.print(f"  repeated kills: {kills}")
    bench.advance()
    sections["shapes"] = _shapes(bench)
    sections["state_memory"] = _state_memory(bench, ceiling_settings)
    bench.step("profile of the exactly-once service")
    sections["profile"], sections["profile_path"] = profile_service(
        bench.variants, bench.input_topic, bench.opts.profile_seconds
    )
    bench.advance()
    return sections


def _throughput_runs(bench: _Bench, run: int) -> None:
    """Run `run` of every variant over the shared input; the first run's outputs are kept for the peer
    check and the recovery, the later runs' topics dropped."""
    for name, start in bench.starters.items():
        label = f"{bench.tag}-{slug(name)}-{run}"
        bench.step(f"{name}, run {run + 1}/{bench.opts.runs}")
        launch = start(label, bench.input_topic)
        bench.decision_topics.setdefault(name, launch.decision_topic)
        accounts = None if name == PASSTHROUGH else len(bench.workload.accounts)
        result = measure_throughput(bench.s, launch, bench.input_topic, bench.total, accounts, 1800)
        bench.results[name].runs.append(result)
        console.print(f"  {name} run {run + 1}: {result.events_per_s:,.0f} events/s")
        if run > 0:  # the first run's outputs serve the peer check and the recovery
            drop_topics(bench.s, label)
        bench.advance()


def _realistic_run(bench: _Bench, run: int) -> None:
    """Run `run` of the exactly-once service on the realistic workload; a failure ends these runs, and the
    row says why (e.g. an account the service cannot write)."""
    info = bench.realistic_info
    if bench.realistic is None or info is None or "error" in info:
        return
    topic, events, start_realistic = bench.realistic
    label = f"{bench.tag}-realistic-{run}"
    bench.step(f"{REALISTIC_EOS}, run {run + 1}/{bench.opts.runs}")
    try:
        result = measure_throughput(bench.s, start_realistic(label, topic), topic, events, None, 1800)
    except BenchError as exc:  # the row says why (e.g. an account the service cannot write)
        info["error"] = f"{exc} ({last_error_line(bench.variants.run_dir / f'{label}.log')})"
        console.print(f"  [yellow]{REALISTIC_EOS} run {run + 1} failed: {info['error']}[/yellow]")
    else:
        bench.results[REALISTIC_EOS].runs.append(result)
        console.print(f"  {REALISTIC_EOS} run {run + 1}: {result.events_per_s:,.0f} events/s")
    drop_topics(bench.s, label)
    bench.advance()


def _ceiling_runs(bench: _Bench) -> Settings:
    """The service's own work without Kafka, once per run; returns the settings it ran with."""
    bench.step(CEILING)
    ceiling_settings = bench.variants._topics(f"{bench.tag}-ceiling").model_copy(update={"auto_register_schemas": True})
    workload = bench.workload
    for run in range(bench.opts.runs):
        ceiling = measure_ceiling(
            ceiling_settings,
            workload.partner_messages,
            [(k, v) for _e, k, v in workload.account_messages],
            ceiling_settings.batch_size,
        )
        bench.results[CEILING].runs.append(RunResult(ceiling.events_per_s, ceiling.seconds, 0.0, 0.0, None))
        console.print(f"  {CEILING} run {run + 1}: {ceiling.events_per_s:,.0f} events/s")
    bench.advance()
    return ceiling_settings


def _peer_check(bench: _Bench) -> str:
    """The peer's decisions against the exactly-once service's, from their first runs."""
    if PEER not in bench.decision_topics:
        return "not run (--no-peer)"
    bench.step("checking the peer's decisions against ours")
    ours = read_decisions(bench.s, bench.decision_topics[EOS])
    peer_check = compare_decisions(ours, read_decisions(bench.s, bench.decision_topics[PEER]))
    console.print(f"  peer check: {peer_check}")
    return peer_check


def _latency_runs(bench: _Bench) -> None:
    """Each variant's latency at half its median rate, into its results (the `RATE_ONLY` runs are there for their
    rate)."""
    for name, start in bench.starters.items():
        if name in RATE_ONLY:
            continue
        bench.step(f"{name}, latency")
        rate = (bench.results[name].median("events_per_s") or 1000) / 2
        label = f"{bench.tag}-{slug(name)}-latency"
        latency = measure_latency(
            bench.s,
            lambda topic, label=label, start=start: start(label, topic),  # type: ignore[misc]
            label,
            bench.workload,
            rate,
            bench.opts.latency_seconds,
            bench.event_ids if name == PASSTHROUGH else bench.causes,
        )
        r = bench.results[name]
        r.latency_rate, r.latency_p50_ms, r.latency_p99_ms = round(rate), latency.p50_ms, latency.p99_ms
        r.latency_samples, r.latency_breakdown = latency.samples, latency.breakdown
        r.latency_cpu = latency.cpu
        drop_topics(bench.s, label, f"bench-{label}-input")
        console.print(
            f"  {name} latency at {rate:,.0f}/s: p50 {latency.p50_ms} ms, p99 {latency.p99_ms} ms "
            f"({latency.samples} samples); phases {latency.breakdown}"
        )
        bench.advance()


def _steady_latency(bench: _Bench) -> dict[str, Any]:
    """The exactly-once service's latency at a steady 1,000 events/s."""
    bench.step(f"{EOS}, latency at a steady 1,000 events/s")
    label = f"{bench.tag}-{slug(EOS)}-steady"
    at_1000 = measure_latency(
        bench.s,
        lambda topic: bench.variants.service(label, topic, "exactly_once_v2")[0],
        label,
        bench.workload,
        1000.0,
        bench.opts.latency_seconds,
        bench.causes,
    )
    console.print(f"  steady 1,000/s: p50 {at_1000.p50_ms} ms, p99 {at_1000.p99_ms} ms; {at_1000.breakdown}")
    bench.advance()
    return {"rate": 1000, **asdict(at_1000)}


def _shapes(bench: _Bench) -> dict[str, Any] | None:
    """The CSP data shape sections (None when left out); a failure is reported and the later sections run."""
    if bench.opts.shapes is None:
        return None
    bench.step("CSP data shapes: big accounts, month-end storm")
    try:
        shapes = run_shapes(bench.variants, bench.s, bench.tag, bench.opts.shapes)
    except BenchError as exc:  # the report says so; the sections after it still run
        shapes = {"error": str(exc)}
    console.print(f"  shapes: {shapes}")
    bench.advance()
    return shapes


def _state_memory(bench: _Bench, ceiling_settings: Settings) -> dict[str, Any]:
    """Memory per account held, traced in a pass of its own over the workload."""
    bench.step("memory per account held")
    workload = bench.workload
    held = measure_state_memory(
        ceiling_settings, workload.partner_messages, [(k, v) for _e, k, v in workload.account_messages]
    )
    console.print(
        f"  state memory: {held.bytes_per_account:,.0f} B per account held, "
        f"{held.in_use_bytes_per_account:,.0f} B in use"
    )
    bench.advance()
    return asdict(held)


def _report(bench: _Bench, sections: dict[str, Any], started: float) -> dict[str, Any]:
    """The report's JSON: the run's facts, each variant's medians and runs, each section, the targets."""
    results = bench.results
    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "kafka": "4.3.1",
        "events": bench.total,
        "accounts": len(bench.workload.accounts),
        "partner_events": len(bench.workload.partner_messages),
        "partitions": bench.opts.partitions,
        "runs": bench.opts.runs,
        "variants": {name: _variant_json(r) for name, r in results.items()},
        "recovery": sections["recovery"],
        "steady_latency": sections["steady_latency"],
        "repeated_kills": sections["repeated_kills"],
        "state_memory": sections["state_memory"],
        "shapes": sections["shapes"],
        "realistic_workload": bench.realistic_info,
        "peer_check": sections["peer_check"],
        "profile_seconds": bench.opts.profile_seconds,
        "profile": sections["profile"],
        "profile_file": str(sections["profile_path"]),
        "wall_seconds": round(time.monotonic() - started),
        "tracing": {
            "traced_every": TRACED_EVERY,
            "otlp_requests": bench.otlp_sink.requests if bench.otlp_sink else 0,
            "otlp_bytes": bench.otlp_sink.bytes if bench.otlp_sink else 0,
        },
    }
    report["targets"] = targets(
        results,
        sections["recovery"],
        sections["steady_latency"],
        sections["repeated_kills"],
        sections["state_memory"],
        sections["shapes"],
    )
    return report


def _variant_json(r: VariantResult) -> dict[str, Any]:
    """One variant's row of the report: the medians of its runs, its latency run, and every run."""
    return {
        "events_per_s": r.median("events_per_s"),
        "cpu_s_per_1k": r.median("cpu_s_per_1k"),
        "peak_rss_mb": r.median("peak_rss_mb"),
        "bytes_per_account": r.median("bytes_per_account"),
        "latency_rate": r.latency_rate,
        "latency_p50_ms": r.latency_p50_ms,
        "latency_p99_ms": r.latency_p99_ms,
        "latency_samples": r.latency_samples,
        "latency_breakdown": r.latency_breakdown,
        "latency_cpu": r.latency_cpu,
        "runs": [x.events_per_s for x in r.runs],
        "run_details": [asdict(x) for x in r.runs],
    }


def _publish_realistic(
    s: Settings, opts: BenchOptions, variants: Variants, tag: str
) -> tuple[tuple[str, int, Callable[[str, str], Launch]], dict[str, Any]]:
    """The realistic workload on an input and a partner topic of its own: (input topic, its events, how to
    start the exactly-once service on it), and its size (events, accounts, partner events, largest account)."""
    topic, partners = f"bench-{tag}-realistic-subscriptions", f"bench-{tag}-realistic-partners"
    ensure_topics(
        s.kafka_client_config(),
        {topic: (opts.partitions, "delete"), partners: (s.partner_partitions, "compact")},
        1,
    )
    own = s.model_copy(update={"subscription_topic": topic, "partner_topic": partners})
    workload = build_workload(own, opts, "realistic")
    produce_all(own, partners, workload.partner_messages)
    produce_all(own, topic, [(k, v) for _e, k, v in workload.account_messages])
    events = topic_size(own, topic, opts.partitions)
    info: dict[str, Any] = {
        "events": events,
        "accounts": len(workload.accounts),
        "partner_events": len(workload.partner_messages),
    }
    console.print(f"realistic workload: {info}")

    def start(label: str, input_topic: str) -> Launch:
        return variants.service(label, input_topic, "exactly_once_v2", partner_topic=partners)[0]

    return (topic, events, start), info
