"""The peer's decisions against the exactly-once service's, per subscription."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from benchmarks.common import BenchError
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from schemas import SUBSCRIPTION_DECISION

DecisionKey = tuple[str, str, str]


def read_decisions(settings: Settings, topic: str) -> dict[DecisionKey, list[tuple[Any, ...]]]:
    """Every committed decision of `topic`, per subscription in emission order (no timestamps)."""
    decoder = Decoder(registry_client(settings), SUBSCRIPTION_DECISION)
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"bench-compare-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.output_partitions)])
    open_partitions = set(range(settings.output_partitions))
    out: dict[DecisionKey, list[tuple[Any, ...]]] = {}
    try:
        while open_partitions:
            msgs = consumer.consume(5000, 1.0)
            good = []
            for m in msgs:
                if m.error() is not None:
                    open_partitions.discard(m.partition() or 0)
                else:
                    good.append(m.value() or b"")
            for rec in decoder.decode_values(good):
                if isinstance(rec, dict):
                    key = (rec["partner_id"], rec["customer_id"], rec["subscription_id"])
                    out.setdefault(key, []).append(
                        (
                            rec["decision"],
                            rec["reason"],
                            rec["rule"],
                            tuple(rec["next_actions"]),
                            rec["blocked_until"],
                            tuple(rec["relationship_via_partner_ids"]),
                        )
                    )
    finally:
        consumer.close()
    return out


def compare_decisions(ours: dict[DecisionKey, list[Any]], peer: dict[DecisionKey, list[Any]]) -> str:
    """Raise BenchError naming the first differences; return a one-line summary when equal."""
    differ = sorted(k for k in ours.keys() | peer.keys() if ours.get(k) != peer.get(k))
    if differ:
        sample = "; ".join(f"{k}: ours {ours.get(k)} peer {peer.get(k)}" for k in differ[:3])
        raise BenchError(f"the peer's decisions differ from ours for {len(differ)} subscriptions: {sample}")
    records = sum(len(v) for v in ours.values())
    return f"equal: {records} decisions over {len(ours)} subscriptions"
