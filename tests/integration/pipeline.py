"""Test support for the service on a real broker: publish events, run service processes, read
committed outputs, and compute what `classify` says for the same stream."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from multichannel.engine import Classifier
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from producers.generator import BadRecord
from producers.serde import EventEncoder
from schemas import CUSTOMER_STATUS, SUBSCRIPTION_DECISION

PROJECT_ROOT = Path(__file__).resolve().parents[2]

COMPARED_DECISION_FIELDS = (
    "decision",
    "reason",
    "rule",
    "next_actions",
    "blocked_until",
    "relationship_via_partner_ids",
    "caused_by_event_id",
)
COMPARED_STATUS_FIELDS = ("status", "decision_counts", "caused_by_event_id")


def settings_env(settings: Settings) -> dict[str, str]:
    """The MULTICHANNEL_ environment that gives a child process the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")}
    env.update(settings.to_env())
    return env


def publish(settings: Settings, items: Iterable[dict[str, Any] | BadRecord]) -> int:
    """Publish contract dicts (and bad records as the bytes they stand for); returns records written."""
    client = registry_client(settings)
    encoder = EventEncoder.for_settings(settings, client, auto_register=True)
    producer = Producer(
        {**settings.kafka_client_config(), "enable.idempotence": True, "linger.ms": 5, "partitioner": "murmur2_random"}
    )
    count = 0
    for item in items:
        topic, key, value = encode_item(settings, encoder, item)
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
        count += 1
    assert producer.flush(30) == 0
    return count


def encode_item(
    settings: Settings, encoder: EventEncoder, item: dict[str, Any] | BadRecord
) -> tuple[str, bytes, bytes]:
    """(topic, key, value) of one contract dict, or of the bytes a bad record stands for."""
    key: str | None
    if isinstance(item, BadRecord):
        event = item.event
        if isinstance(event, str):
            return settings.subscription_topic, b"C-bad", event.encode()
        raw = dict(event)
        key = item.key or str(raw.get("customer_id") or "C-bad")
        return settings.subscription_topic, key.encode(), _encode_raw(encoder, raw, settings)
    ev = parse_event(item)
    if isinstance(ev, PartnerProgramChanged):
        return settings.partner_topic, ev.partner_id.encode(), encoder.encode_partner_event(event_to_dict(ev))
    return settings.subscription_topic, ev.customer_id.encode(), encoder.encode_subscription_event(event_to_dict(ev))


def _encode_raw(encoder: EventEncoder, raw: dict[str, Any], settings: Settings) -> bytes:
    """An invalid event that still fits the Avro schema, so that the core (not Avro) rejects it."""
    from datetime import date, datetime

    fixed: dict[str, Any] = dict(raw)
    ts = fixed.get("occurred_at")
    if isinstance(ts, str):
        fixed["occurred_at"] = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    for k in ("term_start", "term_end"):
        if isinstance(fixed.get(k), str):
            fixed[k] = date.fromisoformat(fixed[k])
    return encoder.encode_subscription_event(fixed)


@dataclass
class ServiceProcess:
    """`multichannel run` as a child process (so that it can be SIGKILLed)."""

    settings: Settings
    log_path: Path
    instance_id: str = "0"
    defaults: tuple[str, ...] = ()
    """Settings left to their defaults: their variables are not set at all."""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ServiceProcess:
        env = settings_env(self.settings)
        env["MULTICHANNEL_INSTANCE_ID"] = self.instance_id
        env["MULTICHANNEL_METRICS_PORT"] = "0"
        for name in self.defaults:
            env.pop(f"MULTICHANNEL_{name.upper()}", None)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "run"], env=env, stdout=log, stderr=log
        )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def terminate(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout_s)

    def ops_url(self, deadline_s: float = 60.0) -> str:
        """The ops endpoint base URL, read from the service's `ops_endpoints` log line."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for line in self.log_path.read_text(errors="replace").splitlines()[::-1]:
                if '"ops_endpoints"' in line:
                    return f"http://127.0.0.1:{json.loads(line)['port']}"
            assert self.alive(), self.log_tail()
            time.sleep(0.05)  # waiting for a child process to write a log line: nothing to block on
        raise AssertionError(f"no ops endpoint logged:\n{self.log_tail()}")

    def wait_ready(self, deadline_s: float = 90.0) -> str:
        """Poll /readyz until 200 (state restored, partner table caught up); returns the ops URL."""
        base = self.ops_url(deadline_s)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return base
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
            assert self.alive(), self.log_tail()
            time.sleep(0.05)  # /readyz answers at once while restoring: pace the probe
        raise AssertionError(f"not ready in {deadline_s} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def later_terms(items: Iterable[dict[str, Any] | BadRecord], years: int = 8) -> list[dict[str, Any] | BadRecord]:
    """Term dates moved `years` on (a multiple of 4: a 29 February stays a date), each on its day of the month
    (the realistic shape's terms run from the 1st of a month to the 1st of a later one), beyond both the
    stream's clock and the wall clock, so that the service (wall-clock timers) and `classify` (event-time
    timers) see the same terms."""
    assert years % 4 == 0
    out: list[dict[str, Any] | BadRecord] = []
    for item in items:
        if isinstance(item, dict) and (item.get("term_start") or item.get("term_end")):
            moved = dict(item)
            for name in ("term_start", "term_end"):
                value = moved.get(name)
                if isinstance(value, str):
                    moved[name] = f"{int(value[:4]) + years:04d}{value[4:]}"
            out.append(moved)
        else:
            out.append(item)
    return out


def input_end_offsets(settings: Settings) -> dict[int, int]:
    c = Consumer({**settings.kafka_client_config(), "group.id": "probe-ends"})
    try:
        md = c.list_topics(settings.subscription_topic, timeout=10)
        parts = sorted(md.topics[settings.subscription_topic].partitions)
        return {p: _high_watermark(c, settings.subscription_topic, p) for p in parts}  # a restarted broker: asked again
    finally:
        c.close()


def committed_offsets(settings: Settings, partitions: Sequence[int]) -> dict[int, int]:
    c = Consumer({**settings.kafka_client_config(), "group.id": settings.application_id, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(settings.subscription_topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def wait_until_processed(settings: Settings, deadline_s: float, services: Sequence[ServiceProcess] = ()) -> None:
    """Poll until the group's committed offsets reach the input's end (each poll is a broker round trip)."""
    ends = input_end_offsets(settings)
    deadline = time.monotonic() + deadline_s
    while True:
        done = committed_offsets(settings, list(ends))
        if all(done.get(p, -1) >= end for p, end in ends.items() if end > 0):
            return
        for svc in services:
            if not svc.alive():
                raise AssertionError(f"service exited early:\n{svc.log_tail()}")
        if time.monotonic() > deadline:
            logs = "\n".join(svc.log_tail() for svc in services)
            raise AssertionError(f"not processed in {deadline_s} s: committed {done}, ends {ends}\n{logs}")
        _wait_for_progress(settings)


def _wait_for_progress(settings: Settings) -> None:
    """Block up to 0.5 s on the decision topic instead of sleeping."""
    c = Consumer({**settings.kafka_client_config(), "group.id": "probe-progress", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(settings.decision_topic, 0, -1)])
        c.consume(1, timeout=0.5)
    finally:
        c.close()


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every committed record of `topic`, read_committed, to the end."""
    admin_conf = settings.kafka_client_config()
    c = Consumer(
        {
            **admin_conf,
            "group.id": f"reader-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        pending = {p for p in parts if _high_watermark(c, topic, p) > 0}
        c.assign([TopicPartition(topic, p, 0) for p in sorted(pending)])
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for m in c.consume(10_000, timeout=1.0):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    continue
                out.append(m)
        assert not pending, f"could not read {topic} to its end"
        return sorted(out, key=lambda m: (m.partition(), m.offset()))
    finally:
        c.close()


_NOT_LEADING_YET = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
}


def _high_watermark(consumer: Consumer, topic: str, partition: int, deadline_s: float = 60.0) -> int:
    """The partition's high watermark, asked again while the broker answers with a retriable error (a broker
    that has just restarted answers NOT_LEADER_FOR_PARTITION until it leads its partitions again)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1])
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code not in _NOT_LEADING_YET or time.monotonic() > deadline:
                raise


def read_outputs(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    """(decisions, statuses, dead-letter messages), committed only."""
    client = registry_client(settings)
    decisions = Decoder(client, SUBSCRIPTION_DECISION).decode_batch(read_topic(settings, settings.decision_topic))
    statuses = Decoder(client, CUSTOMER_STATUS).decode_batch(read_topic(settings, settings.status_topic))
    for item in (*decisions, *statuses):
        assert isinstance(item, dict), item
    return decisions, statuses, read_topic(settings, settings.dead_letter_topic)  # type: ignore[return-value]


def expected_outputs(
    items: Iterable[dict[str, Any] | BadRecord], book: str = "seed"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the engine emits for the stream in arrival order (clock = event time, as `classify`), deciding
    with rule book `book`."""
    from multichannel.errors import InvalidEvent
    from multichannel.records import SubscriptionDecision
    from multichannel.rulebooks import rulebook

    engine = Classifier(rulebook=rulebook(book))
    clock = None
    decisions: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []
    records: list[Any] = []
    for item in items:
        if isinstance(item, BadRecord):
            continue
        try:
            ev = parse_event(item)
        except InvalidEvent:
            continue
        clock = ev.occurred_at if clock is None else max(clock, ev.occurred_at)
        records.extend(engine.fire_due(clock))
        records.extend(engine.apply(ev, clock) or ())
    for r in records:
        (decisions if isinstance(r, SubscriptionDecision) else statuses).append(r.to_dict())
    return decisions, statuses


def by_subscription(decisions: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], list[tuple[Any, ...]]]:
    out: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for d in decisions:
        key = (d["partner_id"], d["customer_id"], d["subscription_id"])
        out.setdefault(key, []).append(tuple(_norm(d[f]) for f in COMPARED_DECISION_FIELDS))
    return out


def by_account(statuses: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    out: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for s in statuses:
        out.setdefault((s["partner_id"], s["customer_id"]), []).append(
            tuple(_norm(s[f]) for f in COMPARED_STATUS_FIELDS)
        )
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), v) for k, v in value.items()))
    return None if value is None else str(value)


def count_committed(settings: Settings, topic: str) -> int:
    """Committed records of `topic` (read_committed), counted by consuming to the end of each partition."""
    return len(read_topic(settings, topic))
