"""The rule-book preview over a large deployment (`python -m benchmarks.bench_preview`, `make bench-preview`).

A deployment's committed state is written to a local broker as the service would have left it: the accounts of
`benchmarks.preview_workload` applied under `seed` in chunks (so that the bench never holds them all) and
written as changelog 0x03 records with their partner views, the service's partner table topic and the
partner topic (Avro, through the registry). Then `multichannel rules preview --to current` runs on it as a
user runs it, once per worker count, timed from outside with the memory of its whole process tree sampled;
and the changelog is read alone once, for what the reading costs without the comparison. Writes
docs/benchmarks-preview.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
from confluent_kafka import Producer

from benchmarks.preview_workload import account_events, partner_events
from config.registry import registry_client
from config.settings import PROJECT_ROOT, Settings
from consumers.changelog import account_key_bytes, read_changelog
from consumers.state_format import encode_partner_entry, entity_records
from consumers.topics import ensure_topics
from multichannel.engine import Classifier
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from multichannel.partners import PartnerTable
from multichannel.rulebooks import SEED
from producers.serde import EventEncoder

CHUNK = 25_000
"""Accounts applied and written per chunk: what the generator holds at once."""
SAMPLE_S = 0.2


@dataclass(frozen=True)
class Written:
    accounts: int
    records: int
    seconds: float


def _producer(settings: Settings) -> Producer:
    return Producer(
        {
            **settings.kafka_client_config(),
            "linger.ms": 50,
            "compression.type": "lz4",
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
    )


def _send(producer: Producer, topic: str, key: bytes, value: bytes, partition: int = -1) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def write_partners(settings: Settings, today: date) -> PartnerTable:
    """The partner topic (Avro) and the service's partner table topic; the table they give."""
    table = PartnerTable(settings.dedup_window)
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    producer = _producer(settings)
    for item in partner_events(today):
        event = parse_event(item)
        assert isinstance(event, PartnerProgramChanged)
        table.apply(event)
        value = encoder.encode_partner_event(event_to_dict(event))
        _send(producer, settings.partner_topic, event.partner_id.encode(), value)
    table.commit()
    for pid, entry in table.entries.items():
        _send(producer, settings.partner_table_topic, pid.encode(), encode_partner_entry(pid, entry))
    producer.flush(60)
    return table


def _chunks(accounts: int, today: date, seed: int) -> Iterator[list[dict[str, Any]]]:
    rng = random.Random(seed)
    for start in range(0, accounts, CHUNK):
        yield [e for n in range(start, min(accounts, start + CHUNK)) for e in account_events(rng, today, n)]


def write_changelog(settings: Settings, table: PartnerTable, accounts: int, clock: datetime, seed: int) -> Written:
    """The accounts applied under seed at `clock`, a chunk at a time, written as the service writes them."""
    started = time.monotonic()
    producer = _producer(settings)
    topic, parts, window = settings.changelog_topic, settings.input_partitions, settings.dedup_window
    records = 0
    for events in _chunks(accounts, clock.date(), seed):
        engine = Classifier(rulebook=SEED, partners=table, dedup_window=window)
        for item in events:
            engine.apply(parse_event(item), clock)
        for key, acct, sids, appended, fields_moved in engine.changes():
            partition = zlib.crc32(key[1].encode()) % parts
            view = engine.account_view(acct)
            for k, v in entity_records(
                account_key_bytes(*key), acct, sids, appended, window, fields_moved=fields_moved, partner_view=view
            ):
                _send(producer, topic, k, v, partition)
                records += 1
        producer.poll(0)
    if producer.flush(300):
        raise RuntimeError(f"could not write the changelog to {topic}")
    return Written(accounts, records, round(time.monotonic() - started, 1))


def _tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(sum, largest) resident memory of a process and its children, in bytes."""
    sizes = []
    for p in [proc, *proc.children(recursive=True)]:
        with suppress(psutil.Error):
            sizes.append(p.memory_info().rss)
    return sum(sizes), max(sizes, default=0)


def run_preview(settings: Settings, workers: int, out: Path) -> dict[str, Any]:
    """The command as a user runs it: wall seconds, peak memory of its process tree (summed, and its largest
    process), and the summary it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")} | settings.to_env()
    argv = [str(Path(sys.executable).with_name("multichannel")), "rules", "preview", "--to", "current"]
    argv += ["--workers", str(workers), "--output", str(out)]
    load = os.getloadavg()[0]  # the cores are shared: what else ran is part of the figure
    log = out.with_suffix(".log")
    started = time.monotonic()
    with log.open("w") as errors:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        ps = psutil.Process(proc.pid)
        peak_sum = peak_one = 0
        while proc.poll() is None:
            total, largest = _tree_rss(ps)
            peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
            time.sleep(SAMPLE_S)  # sampling period of the outside observer
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"preview with {workers} workers exited {proc.returncode}: {log.read_text()[-2000:]}")
    summary = orjson.loads(out.read_bytes().rsplit(b"\n", 2)[-2])
    return {
        "workers": workers,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_sum / 2**20),
        "largest_process_mb": round(peak_one / 2**20),
        "accounts": summary["accounts"],
        "subscriptions": summary["subscriptions"],
        "changed": summary["changed"],
        "stale": summary["stale"],
        "load_average": round(load, 1),
    }


def read_alone(settings: Settings) -> dict[str, Any]:
    """Every changelog partition read to its high watermark, one at a time, keeping the latest values (the
    preview's reading, without decoding or comparing)."""
    started = time.monotonic()
    records = keys = 0
    for p in range(settings.input_partitions):
        [part] = read_changelog(settings.kafka_client_config(), settings.changelog_topic, [p], "bench-read")
        records += part.records_read
        keys += len(part.values)
    return {"seconds": round(time.monotonic() - started, 1), "records": records, "keys": keys}


def bench_settings(base: Settings, tag: str, partitions: int) -> Settings:
    """Topics of their own: the changelog and partner table of application `bench-preview-<tag>`."""
    s = base.model_copy(
        update={
            "application_id": f"bench-preview-{tag}",
            "partner_topic": f"bench-preview-{tag}-partners",
            "input_partitions": partitions,
        }
    )
    ensure_topics(
        s.kafka_client_config(),
        {
            s.changelog_topic: (partitions, "compact"),
            s.partner_table_topic: (s.partner_partitions, "compact"),
            s.partner_topic: (s.partner_partitions, "compact"),
        },
        1,
    )
    return s


def run_bench(base: Settings, accounts: int, partitions: int, workers: list[int], seed: int) -> dict[str, Any]:
    """Write the deployment's state, then preview it once per worker count and read it once alone."""
    s = bench_settings(base, uuid.uuid4().hex[:6], partitions)
    clock = datetime.now(UTC).replace(microsecond=0)
    table = write_partners(s, clock.date())
    written = write_changelog(s, table, accounts, clock, seed)
    print(f"wrote {written.records:,} changelog records in {written.seconds} s", file=sys.stderr)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp:
        for n in workers:
            runs.append(run_preview(s, n, Path(tmp) / f"preview-{n}.jsonl"))
            print(f"preview, {n} worker(s): {runs[-1]}", file=sys.stderr)
    return {
        "date": clock.date().isoformat(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "accounts": accounts,
        "partitions": partitions,
        "changelog_records": written.records,
        "write_seconds": written.seconds,
        "read_alone": read_alone(s),
        "runs": runs,
    }


def render_preview(report: dict[str, Any]) -> str:
    """docs/benchmarks-preview.md."""
    read = report["read_alone"]
    lines = [
        "# Benchmark of the rule-book preview",
        "",
        f"Produced by `make bench-preview` on {report['date']} on a machine with {report['cores']} cores (one "
        f"local broker, Python {report['python']}): `multichannel rules preview --to current` over the committed "
        f"state of a seed deployment of {report['accounts']:,} accounts ({report['changelog_records']:,} changelog "
        f"records in {report['partitions']} partitions, written in {report['write_seconds']} s; not part of the "
        "preview). Peak memory is sampled from outside every 0.2 s over the command's process tree. Do not edit "
        "by hand.",
        "",
        "| workers | seconds | accounts/s | peak RSS, MB (all processes) | largest process, MB | subscriptions "
        "| changed | load average at start |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['workers']} | {r['seconds']} | {round(r['accounts'] / r['seconds']):,} | {r['peak_rss_mb']:,} "
            f"| {r['largest_process_mb']:,} | {r['subscriptions']:,} | {r['changed']:,} | {r['load_average']} |"
        )
    lines += [
        "",
        f"Reading alone (every partition to its high watermark, one at a time, latest value per key kept, no "
        f"decoding): {read['records']:,} records in {read['seconds']} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--docs-dir", type=Path, default=PROJECT_ROOT / "docs")
    args = parser.parse_args()
    from config.endpoints import resolve
    from consumers.runtime import tune_gc
    from deploy.local.stack import local_stack

    tune_gc()
    base = Settings()
    with ExitStack() as stack:
        if not base.bootstrap_servers:
            stack.enter_context(local_stack(base.cache_dir, base.local_state_dir))
        report = run_bench(resolve(base), args.accounts, args.partitions, args.workers, args.seed)
    args.docs_dir.mkdir(parents=True, exist_ok=True)
    (args.docs_dir / "benchmarks-preview.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.docs_dir / "benchmarks-preview.md").write_text(render_preview(report))
    print(render_preview(report))


if __name__ == "__main__":
    main()
