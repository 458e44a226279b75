"""State at scale: the exactly-once service over a large account population, once, then its restore.

`multichannel bench --scale` runs this instead of the side-by-side comparison (which repeats every
variant three times and would take hours at this size): the workload is published, the exactly-once
service processes it once (rate, peak RSS, memory per account), then it is restarted and restores every
partition from the changelog, and one partition is read alone. Writes docs/benchmarks-scale.md and .json.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from benchmarks.common import BenchOptions, log_event
from benchmarks.recovery import consume_rate
from benchmarks.throughput import measure_throughput
from benchmarks.variants import Launch, Variants, running
from benchmarks.workload import build_workload, produce_all, topic_size
from config.settings import Settings
from consumers.changelog import read_changelog
from consumers.topics import ensure_topics

console = Console(stderr=True)


def _wait_for_restore(launch: Launch, deadline_s: float) -> dict[str, Any]:
    """Start the service on a changelog it has written and wait for its `partitions_restored` line."""
    with running(launch) as proc:
        deadline = time.monotonic() + deadline_s
        while (restored := log_event(launch.log, "partitions_restored")) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no restore within {deadline_s:.0f} s; see {launch.log}")
            time.sleep(0.5)  # pacing the read of the child's log
        return restored


def run_scale(settings: Settings, opts: BenchOptions) -> dict[str, Any]:
    """One to three subscriptions per account (about three events each), so that the events reach about
    every account: the population is what is measured here."""
    started = time.monotonic()
    opts = replace(opts, subscription_counts=(1, 2, 3))
    tag = uuid.uuid4().hex[:6]
    s = settings.model_copy(
        update={
            "input_partitions": opts.partitions,
            "output_partitions": opts.partitions,
            "subscription_topic": f"scale-{tag}-subscriptions",
            "partner_topic": f"scale-{tag}-partners",
        }
    )
    ensure_topics(
        s.kafka_client_config(),
        {s.subscription_topic: (opts.partitions, "delete"), s.partner_topic: (s.partner_partitions, "compact")},
        1,
    )
    with console.status(f"generating and publishing {opts.events:,} events…"):
        workload = build_workload(s, opts)
        produce_all(s, s.partner_topic, workload.partner_messages)
        produce_all(s, s.subscription_topic, [(k, v) for _e, k, v in workload.account_messages])
    total = topic_size(s, s.subscription_topic, opts.partitions)
    accounts = len(workload.accounts)
    del workload  # the service's memory is what is measured; the bench's own copy can go
    console.print(f"workload: {total:,} account events over {accounts:,} accounts")
    variants = Variants(s, opts, None)
    launch, service_settings = variants.service(f"{tag}-eos", s.subscription_topic, "exactly_once_v2")
    run = measure_throughput(s, launch, s.subscription_topic, total, accounts, 7200)
    console.print(f"  exactly-once: {run.events_per_s:,} events/s, peak RSS {run.peak_rss_mb:,.0f} MB")
    restart = Launch(launch.argv, launch.env, launch.group, launch.decision_topic, launch.log.with_name("restart.log"))
    restored = _wait_for_restore(restart, 1800)
    console.print(f"  restore of every partition: {restored}")
    one = read_changelog(
        service_settings.kafka_client_config(), service_settings.changelog_topic, [0], f"scale-{tag}-one"
    )[0]
    bare = consume_rate(service_settings, service_settings.changelog_topic, opts.partitions)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "events": total,
        "accounts": accounts,
        "partitions": opts.partitions,
        "events_per_s": run.events_per_s,
        "peak_rss_mb": run.peak_rss_mb,
        "bytes_per_account": run.bytes_per_account,
        "restore_all": {k: restored.get(k) for k in ("changelog_records", "accounts", "seconds", "records_per_s")},
        "restore_one": {
            "partition": one.partition,
            "changelog_records": one.records_read,
            "accounts": len(one.values),
            "seconds": round(one.seconds, 3),
        },
        "changelog_consume_records_per_s": bare,
        "wall_seconds": round(time.monotonic() - started),
    }
    opts.docs_dir.mkdir(parents=True, exist_ok=True)
    (opts.docs_dir / "benchmarks-scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (opts.docs_dir / "benchmarks-scale.md").write_text(render_scale(report))
    return report


def render_scale(report: dict[str, Any]) -> str:
    every, one = report["restore_all"], report["restore_one"]
    return "\n".join(
        [
            "# Benchmarks at scale",
            "",
            f"Produced by `multichannel bench --scale` on {report['date']} on a machine with {report['cores']} "
            f"cores (one local broker, Python {report['python']}): {report['events']:,} account events over "
            f"{report['accounts']:,} accounts (one to three subscriptions each), {report['partitions']} input "
            "partitions, one exactly-once instance. Do not edit by hand.",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| exactly-once, events/s (one run) | {report['events_per_s']:,} |",
            f"| peak RSS, MB | {report['peak_rss_mb']:,.0f} |",
            f"| bytes per account (peak RSS minus RSS at the first commit, per account) | "
            f"{report['bytes_per_account']:,} |",
            f"| restore of all {report['partitions']} partitions: changelog records | {every['changelog_records']:,} |",
            f"| restore of all partitions: accounts | {every['accounts']:,} |",
            f"| restore of all partitions: seconds | {every['seconds']} |",
            f"| restore of all partitions: records/s | {every['records_per_s']:,} |",
            f"| restore of partition {one['partition']} alone: records, accounts | "
            f"{one['changelog_records']:,}, {one['accounts']:,} |",
            f"| restore of partition {one['partition']} alone: seconds (read only) | {one['seconds']} |",
            f"| a bare client reading the whole changelog, records/s | {report['changelog_consume_records_per_s']:,} |",
            f"| wall time of the run, s | {report['wall_seconds']:,} |",
            "",
        ]
    )
