"""Repeated SIGKILLs of one of three instances on a steady trickle, and the time to the next decision."""

from __future__ import annotations

import json
import random
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import BenchError, Workload
from benchmarks.latency import probe_clients
from benchmarks.variants import Variants
from config.registry import registry_client
from config.settings import PROJECT_ROOT, Settings
from consumers.serde import Decoder
from consumers.topics import ensure_topics
from multichannel.parse import event_to_dict, parse_event
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION


def _owned_partitions(log: Path) -> set[int]:
    """The input partitions an instance held when its log ends: restored ones minus revoked ones."""
    owned: set[int] = set()
    if not log.exists():
        return owned
    for line in log.read_text(errors="replace").splitlines():
        if '"partitions_' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "partitions_restored":
            owned |= set(entry.get("partitions", []))
        elif entry.get("event") == "partitions_revoked":
            owned -= set(entry.get("partitions", []))
    return owned


def measure_repeated_kills(
    variants: Variants, settings: Settings, label: str, workload: Workload, kills: int, seed: int
) -> dict[str, Any]:
    """Three instances with the shipped defaults (static membership) on a steady trickle of events into a
    fresh input topic; every 3-10 s (seeded) one of them is SIGKILLed and started again at once, as a
    supervisor would. Per kill: the time from the kill to the first decision for an event sent after it on
    a partition the killed instance owned."""
    topic = f"bench-{label}-input"
    ensure_topics(settings.kafka_client_config(), {topic: (settings.input_partitions, "delete")}, 1)
    launch, s = variants.service(label, topic, "exactly_once_v2")
    producer, reader = probe_clients(s, s.decision_topic, "earliest")  # delivery reports name the partitions
    encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
    decoder = Decoder(registry_client(s), SUBSCRIPTION_DECISION)
    rng = random.Random(seed)
    sent: dict[str, float] = {}
    partition: dict[str, int] = {}
    seen: dict[str, float] = {}
    counter = iter(range(10**9))
    rate = 200.0

    def delivered(event_id: str) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is None:
                partition[event_id] = msg.partition()

        return report

    def trickle(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            pid, cid = workload.accounts[i % len(workload.accounts)]
            event_id = f"bench-kills-{i}"
            event = {
                "event_type": "subscription_purchased",
                "event_id": event_id,
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "partner_id": pid,
                "customer_id": cid,
                "subscription_id": f"S-bench-kills-{i}",
                "offer_id": "AZURE-PLAN",
                "billing_model": "usage",
                "channel": "microsoft_direct",
            }
            value = encoder.encode_subscription_event(event_to_dict(parse_event(event)))
            sent[event_id] = time.monotonic()
            producer.produce(topic, value=value, key=cid.encode(), on_delivery=delivered(event_id))
        producer.poll(0)

    def read() -> None:
        msgs = [m for m in reader.consume(500, 0.02) if m.error() is None]
        now = time.monotonic()
        for rec in decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict):
                seen.setdefault(rec["caused_by_event_id"], now)

    incarnations = [0, 0, 0]
    procs: list[subprocess.Popen[bytes] | None] = [None, None, None]

    def log_of(i: int) -> Path:
        return launch.log.with_name(f"{label}-{i}-{incarnations[i]}.log")

    def start(i: int) -> None:
        env = {**launch.env, "MULTICHANNEL_INSTANCE_ID": str(i)}
        with log_of(i).open("wb") as out:
            procs[i] = subprocess.Popen(launch.argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)

    events: list[tuple[float, set[int]]] = []
    began = time.monotonic()
    sent_count = 0

    def pace() -> None:
        nonlocal sent_count
        due = int((time.monotonic() - began) * rate) - sent_count
        if due > 0:
            trickle(due)
            sent_count += due
        read()

    try:
        for i in range(3):
            start(i)
        settle = time.monotonic() + 120
        while not all(_owned_partitions(log_of(i)) for i in range(3)) or not seen:
            if time.monotonic() > settle:
                raise BenchError(f"repeated kills: the three instances did not start; see {variants.run_dir}")
            pace()
        next_kill = time.monotonic() + rng.uniform(3, 10)
        while len(events) < kills:
            pace()
            if time.monotonic() < next_kill:
                continue
            victim = rng.randrange(3)
            owned = _owned_partitions(log_of(victim))
            proc = procs[victim]
            assert proc is not None
            proc.kill()
            killed = time.monotonic()
            proc.wait()
            events.append((killed, owned))
            incarnations[victim] += 1
            start(victim)
            next_kill = time.monotonic() + rng.uniform(3, 10)
        tail = time.monotonic() + 60
        while time.monotonic() < tail and not all(
            any(sent[e] > k and partition.get(e) in owned for e in seen) for k, owned in events if owned
        ):
            pace()
    finally:
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        reader.close()
        producer.flush(10)
    recoveries: list[float | None] = []
    for killed, owned in events:
        after = [t for e, t in seen.items() if sent.get(e, 0) > killed and partition.get(e) in owned]
        recoveries.append(round(min(after) - killed, 2) if after else None)
    measured = sorted(r for r in recoveries if r is not None)
    return {
        "kills": len(events),
        "seed": seed,
        "recovered": len(measured),
        "median_s": round(statistics.median(measured), 2) if measured else None,
        "max_s": max(measured) if measured else None,
        "per_kill_s": recoveries,
    }
