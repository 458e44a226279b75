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
from benchmarks.variants import Launch, Variants
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


class _Trickle:
    """A steady 200 events/s of new purchases into the kill run's input, and a read_committed reader of its
    decisions: when each event was sent, on which partition it landed, when its decision was seen."""

    rate = 200.0

    def __init__(self, s: Settings, topic: str, workload: Workload) -> None:
        self.topic, self.workload = topic, workload
        self.producer, self.reader = probe_clients(s, s.decision_topic, "earliest")  # delivery reports name partitions
        self.encoder = EventEncoder.for_settings(s, registry_client(s), auto_register=True)
        self.decoder = Decoder(registry_client(s), SUBSCRIPTION_DECISION)
        self.sent: dict[str, float] = {}
        self.partition: dict[str, int] = {}
        self.seen: dict[str, float] = {}
        self.counter = iter(range(10**9))
        self.began = time.monotonic()
        self.sent_count = 0

    def _delivered(self, event_id: str) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is None:
                self.partition[event_id] = msg.partition()

        return report

    def _send(self, n: int) -> None:
        for _ in range(n):
            i = next(self.counter)
            pid, cid = self.workload.accounts[i % len(self.workload.accounts)]
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
            value = self.encoder.encode_subscription_event(event_to_dict(parse_event(event)))
            self.sent[event_id] = time.monotonic()
            self.producer.produce(self.topic, value=value, key=cid.encode(), on_delivery=self._delivered(event_id))
        self.producer.poll(0)

    def _read(self) -> None:
        msgs = [m for m in self.reader.consume(500, 0.02) if m.error() is None]
        now = time.monotonic()
        for rec in self.decoder.decode_values([m.value() or b"" for m in msgs]):
            if isinstance(rec, dict):
                self.seen.setdefault(rec["caused_by_event_id"], now)

    def pace(self) -> None:
        """Send what the rate says is due by now, then read what is visible."""
        due = int((time.monotonic() - self.began) * self.rate) - self.sent_count
        if due > 0:
            self._send(due)
            self.sent_count += due
        self._read()

    def recovered(self, killed: float, owned: set[int]) -> list[float]:
        """When decisions were seen for events sent after `killed` on one of the `owned` partitions."""
        return [t for e, t in self.seen.items() if self.sent.get(e, 0) > killed and self.partition.get(e) in owned]

    def answered(self, killed: float, owned: set[int]) -> bool:
        """Whether a decision was seen for an event sent after `killed` on one of the `owned` partitions."""
        return any(self.sent[e] > killed and self.partition.get(e) in owned for e in self.seen)

    def close(self) -> None:
        self.reader.close()
        self.producer.flush(10)


class _Instances:
    """Three instances of the service, each started again under a log of its own after every kill."""

    def __init__(self, launch: Launch, label: str) -> None:
        self.launch, self.label = launch, label
        self.incarnations = [0, 0, 0]
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None, None]

    def log_of(self, i: int) -> Path:
        return self.launch.log.with_name(f"{self.label}-{i}-{self.incarnations[i]}.log")

    def start(self, i: int) -> None:
        env = {**self.launch.env, "MULTICHANNEL_INSTANCE_ID": str(i)}
        with self.log_of(i).open("wb") as out:
            self.procs[i] = subprocess.Popen(
                self.launch.argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
            )

    def kill_and_restart(self, victim: int) -> tuple[float, set[int]]:
        """SIGKILL `victim`, then start it again at once: (when it was killed, the partitions it owned)."""
        owned = _owned_partitions(self.log_of(victim))
        proc = self.procs[victim]
        assert proc is not None
        proc.kill()
        killed = time.monotonic()
        proc.wait()
        self.incarnations[victim] += 1
        self.start(victim)
        return killed, owned

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


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
    rng = random.Random(seed)
    trickle = _Trickle(s, topic, workload)
    instances = _Instances(launch, label)
    events: list[tuple[float, set[int]]] = []
    try:
        for i in range(3):
            instances.start(i)
        settle = time.monotonic() + 120
        while not all(_owned_partitions(instances.log_of(i)) for i in range(3)) or not trickle.seen:
            if time.monotonic() > settle:
                raise BenchError(f"repeated kills: the three instances did not start; see {variants.run_dir}")
            trickle.pace()
        next_kill = time.monotonic() + rng.uniform(3, 10)
        while len(events) < kills:
            trickle.pace()
            if time.monotonic() < next_kill:
                continue
            events.append(instances.kill_and_restart(rng.randrange(3)))
            next_kill = time.monotonic() + rng.uniform(3, 10)
        tail = time.monotonic() + 60
        while time.monotonic() < tail and not all(trickle.answered(k, owned) for k, owned in events if owned):
            trickle.pace()
    finally:
        instances.stop()
        trickle.close()
    recoveries: list[float | None] = []
    for killed, owned in events:
        after = trickle.recovered(killed, owned)
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
