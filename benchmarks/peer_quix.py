"""The benchmark's peer: the same classification as a Quix Streams application, exactly-once on.

It is written the way that library's documentation shows: an `Application`, Avro topics through
the Schema Registry, a stateful `apply` keeping each account in Quix's RocksDB state (with its
changelog topics), and branches to the decision and status topics. The rules are this project's
pure core (`multichannel`, standard library only), so the comparison measures the frameworks,
not two rule implementations; the bench checks that both emit the same decisions.

Quix Streams pins older confluent-kafka and pydantic releases, so this file runs in its own
virtual environment (made by `benchmarks.variants.peer_python`), with the repository on `sys.path`.
Usage: `python peer_quix.py CONFIG.json` (`Variants.peer` in benchmarks/variants.py writes its keys).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as RegistryAvroDeserializer
from quixstreams import Application, State
from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig

from multichannel.codec import state_from_record, state_to_record
from multichannel.engine import Classifier
from multichannel.model import PartnerProgramChanged
from multichannel.parse import parse_event
from multichannel.partners import PartnerTable
from multichannel.records import SubscriptionDecision

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
_DATES = frozenset({"term_start", "term_end", "blocked_until"})
_TIMES = frozenset({"occurred_at", "evaluated_at"})


def _schema(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((SCHEMAS / f"{name}.avsc").read_text())
    return result


def _to_json(value: Any) -> Any:
    """State values must be JSON: dates and times as ISO strings."""
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _from_json(value: Any, name: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _from_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, str):
        if name in _TIMES:
            return datetime.fromisoformat(value)
        if name in _DATES:
            return date.fromisoformat(value)
    return value


def load_partner_table(conf: dict[str, Any]) -> PartnerTable:
    """Reference data at start-up: read the whole partner topic into the table."""
    registry = SchemaRegistryClient({"url": conf["schema_registry_url"]})
    deserialize = RegistryAvroDeserializer(registry, json.dumps(_schema("partner_event")))
    consumer = Consumer(
        {
            "bootstrap.servers": conf["bootstrap_servers"],
            "group.id": conf["group"] + "-partners",
            "enable.partition.eof": True,
        }
    )
    meta = consumer.list_topics(conf["partner_topic"], timeout=30).topics[conf["partner_topic"]]
    consumer.assign([TopicPartition(conf["partner_topic"], p, OFFSET_BEGINNING) for p in meta.partitions])
    table = PartnerTable()
    loader = Classifier(transactional=False, partners=table)
    remaining = set(meta.partitions)
    clock = datetime.now(UTC)
    while remaining:
        for msg in consumer.consume(1000, 1.0):
            if msg.error():
                remaining.discard(msg.partition())
                continue
            loader.apply(parse_event(deserialize(msg.value(), None)), clock)
    consumer.close()
    return table


def main() -> None:
    conf = json.loads(Path(sys.argv[1]).read_text())
    partners = load_partner_table(conf)
    registry = SchemaRegistryClientConfig(url=conf["schema_registry_url"])
    app = Application(
        broker_address=conf["bootstrap_servers"],
        consumer_group=conf["group"],
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        state_dir=conf["state_dir"],
        loglevel="WARNING",
    )
    source = app.topic(
        conf["input_topic"],
        key_deserializer="str",
        value_deserializer=AvroDeserializer(_schema("subscription_event"), schema_registry_client_config=registry),
    )
    decisions = app.topic(
        conf["decision_topic"],
        key_serializer="str",
        value_serializer=AvroSerializer(_schema("subscription_decision"), schema_registry_client_config=registry),
    )
    statuses = app.topic(
        conf["status_topic"],
        key_serializer="str",
        value_serializer=AvroSerializer(_schema("customer_status"), schema_registry_client_config=registry),
    )

    def classify(value: dict[str, Any], state: State) -> list[dict[str, Any]]:
        """One event against the account kept in state (the message key is the customer)."""
        event = parse_event(value)
        assert not isinstance(event, PartnerProgramChanged)
        engine = Classifier(transactional=False, partners=partners)
        stored = state.get(event.partner_id)
        if stored is not None:
            engine.load([state_from_record(_from_json(stored))])
        records = engine.apply(event, datetime.now(UTC))
        if records is not None:
            account = engine.get((event.partner_id, event.customer_id))
            assert account is not None
            state.set(event.partner_id, _to_json(state_to_record(account)))
        return [
            {"kind": "decision" if isinstance(r, SubscriptionDecision) else "status", "record": r.to_dict()}
            for r in records or ()
        ]

    sdf = app.dataframe(source)
    sdf = sdf.apply(classify, stateful=True, expand=True)
    sdf[sdf["kind"] == "decision"].apply(lambda item: item["record"]).to_topic(decisions)
    sdf[sdf["kind"] == "status"].apply(lambda item: item["record"]).to_topic(statuses)
    app.run()


if __name__ == "__main__":
    main()
