"""The benchmark's workload: generated, encoded and published once, read by every variant."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import BenchError, BenchOptions, Workload
from config.registry import registry_client
from config.settings import Settings
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from producers.generator import BadRecord, Shape, WorkloadGenerator, WorkloadSpec
from producers.serde import EventEncoder


def avoid_near_deadlines(event: dict[str, Any], today: date) -> None:
    """No term may end today or tomorrow: a timer firing during the run would make the
    comparison with the peer (which has no timers) depend on the hour of the run."""
    end = event.get("term_end")
    if end is not None and date.fromisoformat(end) in (today, today + timedelta(days=1)):
        event["term_end"] = (date.fromisoformat(end) + timedelta(days=2)).isoformat()


def build_workload(settings: Settings, opts: BenchOptions, shape: Shape = "uniform") -> Workload:
    """`opts.events` account events over about `opts.accounts` accounts (ten events each), plus the
    partner table. Valid events only: the peer has no dead-letter path to compare. `realistic`: the
    generator's CSP shape (heavy-tailed account sizes up to 20,000 subscriptions, terms ending on the 1st
    of a month, late partner changes), cut at `opts.events` in arrival order."""
    today = datetime.now(UTC).date()
    spec = WorkloadSpec(
        seed=opts.seed,
        partners=max(50, opts.accounts // 100),
        customers=max(1, int(opts.accounts / 1.25)),
        start=datetime.combine(today - timedelta(days=420), datetime.min.time(), tzinfo=UTC),
        days=300,
        bad_rate=0.0,
        duplicate_rate=0.01,
        subscription_counts=opts.subscription_counts,
        shape=shape,
    )
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    partners: list[tuple[bytes, bytes]] = []
    accounts: list[tuple[str, bytes, bytes]] = []
    seen: dict[tuple[str, str], None] = {}
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, BadRecord):
            continue
        avoid_near_deadlines(item, today)
        event = parse_event(item)
        record = event_to_dict(event)
        if isinstance(event, PartnerProgramChanged):
            partners.append((event.partner_id.encode(), encoder.encode_partner_event(record)))
            continue
        accounts.append((event.event_id, event.customer_id.encode(), encoder.encode_subscription_event(record)))
        seen[event.partner_id, event.customer_id] = None
        if len(accounts) >= opts.events:
            break
    return Workload(partners, accounts, list(seen))


def produce_all(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]], traced_every: int = 0) -> None:
    """Publish `messages`; with `traced_every`, every so many carries a sampled W3C traceparent of its own trace."""
    producer = Producer(
        {**settings.kafka_client_config(), "linger.ms": 20, "compression.type": "lz4", "enable.idempotence": True}
    )
    for i, (key, value) in enumerate(messages):
        headers: list[tuple[str, str | bytes | None]] | None = None
        if traced_every and i % traced_every == 0:
            headers = [("traceparent", f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01".encode())]
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise BenchError(f"could not publish the workload to {topic}")


def topic_size(settings: Settings, topic: str, partitions: int) -> int:
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"bench-size-{uuid.uuid4().hex}"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions))
    finally:
        consumer.close()
