"""Recovery: a restart's restore and first decision, then a SIGKILL and the next decision."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from benchmarks.common import BenchError, Workload, log_event
from benchmarks.latency import probe_clients
from benchmarks.variants import Launch, Variants, running
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from multichannel.parse import event_to_dict, parse_event
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION


def recovery_breakdown(log: Path, started_wall: float, first_decision_wall: float) -> dict[str, float | None]:
    """Seconds of each phase of a restart, from the service's log lines (wall-clock timestamps)."""

    def at(name: str) -> float | None:
        event = log_event(log, name)
        return None if event is None else datetime.fromisoformat(event["timestamp"]).timestamp()

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    starting, txn, partners = at("starting"), at("transactions_initialised"), at("partner_table_loaded")
    restored_event = log_event(log, "partitions_restored") or {}
    restored = at("partitions_restored")
    restore_s = restored_event.get("seconds")
    joined = None if restored is None or restore_s is None else restored - restore_s
    return {
        "process start and imports": span(started_wall, starting),
        "init_transactions": span(starting, txn),
        "partner table catch-up": span(txn, partners),
        "group join and assignment": span(partners, joined),
        "restore": restore_s,
        "first batch to a decision seen by a read_committed reader": span(restored, first_decision_wall),
    }


def consume_rate(settings: Settings, topic: str, partitions: int) -> int:
    """Records per second a bare client reads `topic` from the start to its end, keeping each record's
    value: what the restore's client can do with the changelog's records, without the service's work."""
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-consume-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        kept: dict[bytes | None, bytes | None] = {}
        count, started, pending = 0, time.monotonic(), set(ends)
        while pending:
            msgs = consumer.consume(50_000, 0) or [m for m in [consumer.poll(0.05)] if m is not None]
            for m in msgs:
                if m.error() is None:
                    kept[m.key()] = m.value()
                    count += 1
            for tp in consumer.position([TopicPartition(topic, p) for p in sorted(pending)]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
        return round(count / max(time.monotonic() - started, 1e-6))
    finally:
        consumer.close()


def measure_recovery(
    variants: Variants, settings: Settings, label: str, input_topic: str, workload: Workload
) -> dict[str, Any]:
    """Restart an exactly-once run that has processed the whole input (`label`): time its restore and
    its first decision; then SIGKILL it during a steady trickle and time the next decision."""
    launch, s = variants.service(label, input_topic, "exactly_once_v2", static_membership=True)
    decoder = Decoder(registry_client(settings), SUBSCRIPTION_DECISION)
    result: dict[str, Any] = {}
    t_start, t_start_wall = time.monotonic(), time.time()
    restart_log = launch.log.with_name(f"{label}-restart.log")
    launch_b = Launch(launch.argv, launch.env, launch.group, launch.decision_topic, restart_log)
    producer, reader = probe_clients(s, s.decision_topic, "latest")
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    counter = iter(range(10**9))

    def trickle() -> None:
        i = next(counter)
        pid, cid = workload.accounts[i % len(workload.accounts)]
        event = {
            "event_type": "subscription_purchased",
            "event_id": f"bench-recovery-{uuid.uuid4().hex}",
            "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "partner_id": pid,
            "customer_id": cid,
            "subscription_id": f"S-bench-recovery-{i}",
            "offer_id": "AZURE-PLAN",
            "billing_model": "usage",
            "channel": "microsoft_direct",
        }
        value = encoder.encode_subscription_event(event_to_dict(parse_event(event)))
        sent[event["event_id"]] = time.monotonic()
        producer.produce(input_topic, value=value, key=cid.encode())
        producer.poll(0)

    def read() -> None:
        msgs = [m for m in reader.consume(500, 0.05) if m.error() is None]
        now = time.monotonic()
        for rec in decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict) and rec["caused_by_event_id"] in sent:
                seen.setdefault(rec["caused_by_event_id"], now)

    def steady(until: Callable[[], bool], limit_s: float, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + limit_s
        while not until():
            if time.monotonic() > deadline:
                raise BenchError(f"recovery: no decision in {limit_s:.0f} s (pid {proc.pid}); see {variants.run_dir}")
            trickle()
            read()

    try:
        with running(launch_b) as proc_b:
            steady(lambda: bool(seen), 300, proc_b)
            restored = log_event(restart_log, "partitions_restored") or {}
            result["restart_to_first_decision_s"] = round(min(seen.values()) - t_start, 2)
            result["restore_records"] = restored.get("changelog_records")
            result["restore_accounts"] = restored.get("accounts")
            result["restore_seconds"] = restored.get("seconds")
            result["restore_records_per_s"] = restored.get("records_per_s")
            result["changelog_consume_records_per_s"] = consume_rate(s, s.changelog_topic, s.input_partitions)
            first_wall = t_start_wall + (min(seen.values()) - t_start)
            result["breakdown"] = recovery_breakdown(restart_log, t_start_wall, first_wall)
            steady(lambda: len(seen) >= 50, 60, proc_b)
            proc_b.kill()
            killed = time.monotonic()
            proc_b.wait()
        kill_log = launch.log.with_name(f"{label}-after-kill.log")
        with running(Launch(launch.argv, launch.env, launch.group, launch.decision_topic, kill_log)) as proc_c:
            steady(lambda: any(sent[e] > killed for e in seen), 300, proc_c)
            first = min(t for e, t in seen.items() if sent[e] > killed)
            result["sigkill_to_first_decision_s"] = round(first - killed, 2)
            again = log_event(kill_log, "partitions_restored") or {}
            result["restore_after_kill_seconds"] = again.get("seconds")
    finally:
        reader.close()
        producer.flush(10)
    return result
