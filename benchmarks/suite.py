"""`multichannel bench`: throughput, latency and recovery of the service next to a raw passthrough
and a Quix Streams peer, against one broker and registry, in one run.

Every variant reads the same pre-produced input topic with a group of its own and writes to
topics of its own. Throughput comes from the group's committed offsets, sampled from outside the
process (first to last commit); CPU time and peak RSS from /proc. Latency is measured in a second,
paced run at half the variant's median rate: the time from producing an event to seeing its
decision (for the passthrough: its copy) with a read_committed consumer.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks.ceiling import measure_ceiling, measure_state_memory
from benchmarks.chart import render_chart
from benchmarks.common import (
    ALOS,
    CEILING,
    EOS,
    PASSTHROUGH,
    PEER,
    REALISTIC_EOS,
    BenchError,
    BenchOptions,
    RunResult,
    VariantResult,
    console,
    last_error_line,
    slug,
)
from benchmarks.kills import measure_repeated_kills
from benchmarks.latency import measure_latency
from benchmarks.peer_check import compare_decisions, read_decisions
from benchmarks.profiling import profile_service
from benchmarks.recovery import measure_recovery
from benchmarks.report import render_markdown, targets
from benchmarks.shapes import run_shapes
from benchmarks.throughput import measure_throughput
from benchmarks.variants import Launch, Variants, drop_topics, peer_python
from benchmarks.workload import build_workload, produce_all, topic_size
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from schemas import SUBSCRIPTION_DECISION, SUBSCRIPTION_EVENT


def run_bench(settings: Settings, opts: BenchOptions, uv: Path) -> dict[str, Any]:
    """The whole comparison; writes the JSON, Markdown and PNG and returns the report."""
    started = time.monotonic()
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
        produce_all(s, input_topic, [(k, v) for _e, k, v in workload.account_messages])
    total = topic_size(s, input_topic, opts.partitions)
    console.print(
        f"workload: {total:,} account events, {len(workload.accounts):,} accounts, "
        f"{len(workload.partner_messages):,} partner events"
    )
    python = peer_python(opts, uv) if opts.peer else None
    variants = Variants(s, opts, python)
    starters: dict[str, Callable[[str, str], Launch]] = {
        PASSTHROUGH: variants.passthrough,
        ALOS: lambda label, topic: variants.service(label, topic, "at_least_once")[0],
        EOS: lambda label, topic: variants.service(label, topic, "exactly_once_v2")[0],
    }
    if python is not None:
        starters[PEER] = variants.peer
    results = {name: VariantResult(name) for name in [*starters, CEILING]}
    decision_topics: dict[str, str] = {}
    sub_decoder = Decoder(registry_client(s), SUBSCRIPTION_EVENT)
    dec_decoder = Decoder(registry_client(s), SUBSCRIPTION_DECISION)

    def event_ids(values: list[bytes]) -> list[str | None]:
        return [r["event_id"] if isinstance(r, dict) else None for r in sub_decoder.decode_values(values)]

    def causes(values: list[bytes]) -> list[str | None]:
        return [r["caused_by_event_id"] if isinstance(r, dict) else None for r in dec_decoder.decode_values(values)]

    realistic: tuple[str, int, Callable[[str, str], Launch]] | None = None
    realistic_info: dict[str, Any] | None = None
    if opts.shapes is not None:
        with console.status("generating and publishing the realistic workload…"):
            realistic, realistic_info = _publish_realistic(s, opts, variants, tag)
        results[REALISTIC_EOS] = VariantResult(REALISTIC_EOS)
    steps = opts.runs * (len(starters) + (realistic is not None)) + len(starters) + 5 + (realistic is not None)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("benchmark", total=steps)
        # An unmeasured pass first: the broker's JIT compiler and the page cache warm up over the first runs
        # (rates rose run after run for every variant without it), and no variant should pay for that.
        progress.update(task, description="warming up the broker (not measured)")
        for name in (PASSTHROUGH, EOS):
            label = f"{tag}-warmup-{slug(name)}"
            measure_throughput(s, starters[name](label, input_topic), input_topic, total, None, 1800)
            drop_topics(s, label)
        for run in range(opts.runs):
            for name, start in starters.items():
                label = f"{tag}-{slug(name)}-{run}"
                progress.update(task, description=f"{name}, run {run + 1}/{opts.runs}")
                launch = start(label, input_topic)
                decision_topics.setdefault(name, launch.decision_topic)
                accounts = None if name == PASSTHROUGH else len(workload.accounts)
                result = measure_throughput(s, launch, input_topic, total, accounts, 1800)
                results[name].runs.append(result)
                console.print(f"  {name} run {run + 1}: {result.events_per_s:,.0f} events/s")
                if run > 0:  # the first run's outputs serve the peer check and the recovery
                    drop_topics(s, label)
                progress.advance(task)
            if realistic is not None and realistic_info is not None and "error" not in realistic_info:
                topic, events, start_realistic = realistic
                label = f"{tag}-realistic-{run}"
                progress.update(task, description=f"{REALISTIC_EOS}, run {run + 1}/{opts.runs}")
                try:
                    result = measure_throughput(s, start_realistic(label, topic), topic, events, None, 1800)
                except BenchError as exc:  # the row says why (e.g. an account the service cannot write)
                    realistic_info["error"] = f"{exc} ({last_error_line(variants.run_dir / f'{label}.log')})"
                    console.print(f"  [yellow]{REALISTIC_EOS} run {run + 1} failed: {realistic_info['error']}[/yellow]")
                else:
                    results[REALISTIC_EOS].runs.append(result)
                    console.print(f"  {REALISTIC_EOS} run {run + 1}: {result.events_per_s:,.0f} events/s")
                drop_topics(s, label)
                progress.advance(task)
        progress.update(task, description=CEILING)
        ceiling_settings = variants._topics(f"{tag}-ceiling").model_copy(update={"auto_register_schemas": True})
        for run in range(opts.runs):
            ceiling = measure_ceiling(
                ceiling_settings,
                workload.partner_messages,
                [(k, v) for _e, k, v in workload.account_messages],
                ceiling_settings.batch_size,
            )
            results[CEILING].runs.append(RunResult(ceiling.events_per_s, ceiling.seconds, 0.0, 0.0, None))
            console.print(f"  {CEILING} run {run + 1}: {ceiling.events_per_s:,.0f} events/s")
        progress.advance(task)
        peer_check = "not run (--no-peer)"
        if PEER in decision_topics:
            progress.update(task, description="checking the peer's decisions against ours")
            ours = read_decisions(s, decision_topics[EOS])
            peer_check = compare_decisions(ours, read_decisions(s, decision_topics[PEER]))
            console.print(f"  peer check: {peer_check}")
        for name, start in starters.items():
            progress.update(task, description=f"{name}, latency")
            rate = (results[name].median("events_per_s") or 1000) / 2
            label = f"{tag}-{slug(name)}-latency"
            latency = measure_latency(
                s,
                lambda topic, label=label, start=start: start(label, topic),  # type: ignore[misc]
                label,
                workload,
                rate,
                opts.latency_seconds,
                event_ids if name == PASSTHROUGH else causes,
            )
            r = results[name]
            r.latency_rate, r.latency_p50_ms, r.latency_p99_ms = round(rate), latency.p50_ms, latency.p99_ms
            r.latency_samples, r.latency_breakdown = latency.samples, latency.breakdown
            r.latency_cpu = latency.cpu
            drop_topics(s, label, f"bench-{label}-input")
            console.print(
                f"  {name} latency at {rate:,.0f}/s: p50 {latency.p50_ms} ms, p99 {latency.p99_ms} ms "
                f"({latency.samples} samples); phases {latency.breakdown}"
            )
            progress.advance(task)
        progress.update(task, description=f"{EOS}, latency at a steady 1,000 events/s")
        label = f"{tag}-{slug(EOS)}-steady"
        at_1000 = measure_latency(
            s,
            lambda topic: variants.service(label, topic, "exactly_once_v2")[0],
            label,
            workload,
            1000.0,
            opts.latency_seconds,
            causes,
        )
        steady = {"rate": 1000, **asdict(at_1000)}
        console.print(f"  steady 1,000/s: p50 {at_1000.p50_ms} ms, p99 {at_1000.p99_ms} ms; {at_1000.breakdown}")
        progress.advance(task)
        progress.update(task, description="recovery")
        recovery = measure_recovery(variants, s, f"{tag}-{slug(EOS)}-0", input_topic, workload)
        console.print(f"  recovery: {recovery}")
        progress.update(task, description="repeated SIGKILLs, three instances")
        kills = measure_repeated_kills(variants, s, f"{tag}-kills", workload, opts.kills, opts.seed)
        console.print(f"  repeated kills: {kills}")
        progress.advance(task)
        shapes: dict[str, Any] | None = None
        if opts.shapes is not None:
            progress.update(task, description="CSP data shapes: big accounts, month-end storm")
            try:
                shapes = run_shapes(variants, s, tag, opts.shapes)
            except BenchError as exc:  # the report says so; the sections after it still run
                shapes = {"error": str(exc)}
            console.print(f"  shapes: {shapes}")
            progress.advance(task)
        progress.update(task, description="memory per account held")
        held = measure_state_memory(
            ceiling_settings, workload.partner_messages, [(k, v) for _e, k, v in workload.account_messages]
        )
        memory = asdict(held)
        console.print(
            f"  state memory: {held.bytes_per_account:,.0f} B per account held, "
            f"{held.in_use_bytes_per_account:,.0f} B in use"
        )
        progress.advance(task)
        progress.update(task, description="profile of the exactly-once service")
        profile, profile_path = profile_service(variants, input_topic, opts.profile_seconds)
        progress.advance(task)

    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "kafka": "4.3.1",
        "events": total,
        "accounts": len(workload.accounts),
        "partner_events": len(workload.partner_messages),
        "partitions": opts.partitions,
        "runs": opts.runs,
        "variants": {
            name: {
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
            for name, r in results.items()
        },
        "recovery": recovery,
        "steady_latency": steady,
        "repeated_kills": kills,
        "state_memory": memory,
        "shapes": shapes,
        "realistic_workload": realistic_info,
        "peer_check": peer_check,
        "profile_seconds": opts.profile_seconds,
        "profile": profile,
        "profile_file": str(profile_path),
        "wall_seconds": round(time.monotonic() - started),
    }
    report["targets"] = targets(results, recovery, steady, kills, memory, shapes)
    dashboard = opts.docs_dir / "dashboard-benchmarks.md"
    if dashboard.exists():  # the dashboard's own figures, measured by make bench-dashboard
        report["dashboard"] = dashboard.read_text().split("\n", 1)[1].replace("\n## ", "\n### ").strip()
    opts.docs_dir.mkdir(parents=True, exist_ok=True)
    (opts.docs_dir / "benchmarks.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    chart = render_chart(report, opts.docs_dir / "benchmarks.png")
    (opts.docs_dir / "benchmarks.md").write_text(render_markdown(report, chart))
    return report


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
