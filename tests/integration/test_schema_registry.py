"""Serde and schema commands against a real broker and a real Apicurio registry (Confluent API).

Every test uses its own topics (from `settings_factory`), hence its own subjects, so tests do
not see each other's schema versions.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from typer.testing import CliRunner

from cli.main import app
from config.settings import Settings
from consumers.serde import Decoder, OutputEncoders, check_key, event_decoder, topic_schemas
from multichannel.errors import SchemaMismatch
from producers.serde import EventEncoder
from schemas import SCHEMAS_DIR, parse, schema_str, subject_for
from schemas.wire import RecordEncoder, header
from tests.unit.test_serde import (
    ACCOUNT_STATE,
    DECISION,
    PARTNER_EVENT,
    STATUS,
    SUBSCRIPTION_EVENTS,
    TIMER_DECISION,
    USAGE_PURCHASE,
    complete,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], schema_registry_url: str) -> Settings:
    return settings_factory().model_copy(update={"schema_registry_url": schema_registry_url})


def new_client(schema_registry_url: str) -> SchemaRegistryClient:
    """A fresh client: nothing cached, so the consumer side really asks the registry for writer schemas."""
    return SchemaRegistryClient({"url": schema_registry_url})


def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(settings.kafka_client_config() | {"enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def consume(settings: Settings, topic: str, count: int, timeout_s: float = 30.0) -> list[Message]:
    consumer = Consumer(
        settings.kafka_client_config()
        | {"group.id": f"{topic}-reader", "enable.auto.commit": False, "isolation.level": "read_committed"}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            for message in consumer.consume(count - len(messages), timeout=1.0):
                assert message.error() is None, message.error()
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == count
    return messages


def test_every_event_type_round_trips_through_broker_and_registry(settings: Settings, schema_registry_url: str) -> None:
    """Every event type, encoded against the registry and sent through the broker, decodes field for field."""
    encoder = EventEncoder.for_settings(settings, new_client(schema_registry_url), auto_register=True)
    events = [*SUBSCRIPTION_EVENTS.values(), USAGE_PURCHASE]
    produce(
        settings,
        settings.subscription_topic,
        [
            (e["customer_id"].encode(), v)
            for e, v in zip(events, encoder.encode_subscription_events(events), strict=True)
        ],
    )
    produce(settings, settings.partner_topic, [(b"P1", encoder.encode_partner_event(PARTNER_EVENT))])

    client = new_client(schema_registry_url)
    messages = consume(settings, settings.subscription_topic, len(events))
    decoded = event_decoder(client, "subscription").decode_batch(messages)
    by_id = {d["event_id"]: d for d in decoded if isinstance(d, dict)}
    assert by_id == {e["event_id"]: complete(e) for e in events}  # field for field, every type
    for message, event in zip(messages, decoded, strict=True):
        check_key("subscription", message.key(), event)

    [partner_message] = consume(settings, settings.partner_topic, 1)
    [partner] = event_decoder(client, "partner").decode_batch([partner_message])
    assert partner == complete(PARTNER_EVENT, "partner_event")
    check_key("partner", partner_message.key(), partner)


def test_output_records_round_trip_through_broker_and_registry(settings: Settings, schema_registry_url: str) -> None:
    """Decisions, statuses and changelog records decode after a trip through the broker and the registry."""
    encoders = OutputEncoders.for_settings(settings, new_client(schema_registry_url), auto_register=True)
    produce(
        settings,
        settings.decision_topic,
        [(b"C1", encoders.decision.encode(DECISION)), (b"C1", encoders.decision.encode(TIMER_DECISION))],
    )
    produce(settings, settings.status_topic, [(b"P1:C1", encoders.status.encode(STATUS))])
    produce(settings, settings.changelog_topic, [(b"P1:C1", encoders.changelog.encode(ACCOUNT_STATE))])

    client = new_client(schema_registry_url)
    decisions = Decoder(client, "subscription_decision").decode_batch(consume(settings, settings.decision_topic, 2))
    assert decisions == [DECISION, TIMER_DECISION]
    assert Decoder(client, "customer_status").decode_batch(consume(settings, settings.status_topic, 1)) == [STATUS]
    changelog = consume(settings, settings.changelog_topic, 1)
    assert Decoder(client, "account_state").decode_batch(changelog) == [ACCOUNT_STATE]


def test_a_newer_producer_is_read_by_the_current_consumer(settings: Settings, schema_registry_url: str) -> None:
    """A compatible v2 (new optional field, new channel) registered and written; our reader decodes it."""
    client = new_client(schema_registry_url)
    EventEncoder.for_settings(settings, client, auto_register=True)
    newer = json.loads(schema_str("subscription_event"))
    newer["fields"].append({"name": "promo_code", "type": ["null", "string"], "default": None, "doc": "v2"})
    next(f for f in newer["fields"] if f["name"] == "channel")["type"][1]["symbols"].append("marketplace")
    subject = subject_for(settings.subscription_topic)
    client.set_compatibility(subject, "BACKWARD")
    v2_id = client.register_schema(subject, Schema(json.dumps(newer), "AVRO"))
    v2 = RecordEncoder("subscription_event", subject, v2_id, writer=parse(json.dumps(newer)))
    event = SUBSCRIPTION_EVENTS["subscription_purchased"] | {"channel": "marketplace", "promo_code": "SPRING"}
    produce(settings, settings.subscription_topic, [(b"C1", v2.encode(event))])

    [decoded] = event_decoder(new_client(schema_registry_url), "subscription").decode_batch(
        consume(settings, settings.subscription_topic, 1)
    )
    assert decoded == complete(SUBSCRIPTION_EVENTS["subscription_purchased"]) | {"channel": "UNKNOWN"}


def test_an_id_unknown_to_the_registry_is_a_schema_mismatch_naming_it(schema_registry_url: str) -> None:
    """A value framed with a schema id the registry does not know is a SCHEMA_MISMATCH naming that id."""
    [result] = event_decoder(new_client(schema_registry_url), "subscription").decode_values(
        [header(987_654_321) + b"\x02\x00"]
    )
    assert isinstance(result, SchemaMismatch)
    assert "987654321" in result.message


# --- `multichannel schemas register` / `check` ----------------------------------------------------------------


def run_cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "MULTICHANNEL_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MULTICHANNEL_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "MULTICHANNEL_SUBSCRIPTION_TOPIC": settings.subscription_topic,
        "MULTICHANNEL_PARTNER_TOPIC": settings.partner_topic,
        "MULTICHANNEL_DECISION_TOPIC": settings.decision_topic,
        "MULTICHANNEL_STATUS_TOPIC": settings.status_topic,
        "MULTICHANNEL_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "MULTICHANNEL_APPLICATION_ID": settings.application_id,
        "COLUMNS": "250",
    }
    result = CliRunner().invoke(app, ["schemas", *args], env=env)
    return result.exit_code, result.output


def schemas_copy(tmp_path: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    copy = tmp_path / "schemas"
    copy.mkdir()
    for avsc in SCHEMAS_DIR.glob("*.avsc"):
        shutil.copy(avsc, copy)
    if edit is not None:
        path = copy / "subscription_event.avsc"
        schema = json.loads(path.read_text())
        edit(schema)
        path.write_text(json.dumps(schema, indent=2))
    return copy


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def test_register_then_check_passes_and_shows_every_subject(settings: Settings, schema_registry_url: str) -> None:
    """`register` sets every subject to BACKWARD at version 1, again without a new version, and `check` then passes."""
    code, output = run_cli(settings, "register")
    assert code == 0, output
    subjects = [subject_for(t) for t in topic_schemas(settings)]
    assert all(s in output for s in subjects), output
    client = new_client(schema_registry_url)
    for subject in subjects:
        assert client.get_compatibility(subject) == "BACKWARD"
        assert client.get_latest_version(subject).version == 1
    code, output = run_cli(settings, "register")  # idempotent: same ids, no new versions
    assert code == 0, output
    assert all(client.get_latest_version(s).version == 1 for s in subjects)

    code, output = run_cli(settings, "check")
    assert code == 0, output
    assert "INCOMPATIBLE" not in output


def test_check_before_register_passes(settings: Settings) -> None:
    """`check` passes before anything is registered and says the subjects are not registered."""
    code, output = run_cli(settings, "check")
    assert code == 0, output
    assert "not registered" in output


@pytest.mark.parametrize(
    ("edit", "field_named", "says"),
    [
        (
            lambda s: s["fields"].append({"name": "region", "type": "string", "doc": "required, no default"}),
            "region",
            "field 'region' is in the local schema but not in registered version 1 and has no default",
        ),
        (
            lambda s: field(s, "quantity").__setitem__("type", ["null", "string"]),
            "quantity",
            "registered version 1 writes int, which the local schema cannot read as [null, string]",
        ),
        (
            lambda s: field(s, "event_id").__setitem__("type", "long"),
            "event_id",
            "type changed from string (registered version 1) to long (the local schema)",
        ),
    ],
    ids=["field added without default", "optional field retyped", "required field retyped"],
)
def test_check_fails_on_a_breaking_change_naming_the_field(
    settings: Settings, tmp_path: Path, edit: Callable[[dict[str, Any]], None], field_named: str, says: str
) -> None:
    """`check` fails on a breaking schema change naming the field, and `register` refuses it too."""
    assert run_cli(settings, "register")[0] == 0
    broken = str(schemas_copy(tmp_path, edit))
    code, output = run_cli(settings, "check", "--schemas-dir", broken)
    assert code == 1, output
    subject = subject_for(settings.subscription_topic)
    assert f"{subject}: SubscriptionEvent.{field_named}: {says}" in output, output
    # ... and the registry itself refuses to register it
    code, output = run_cli(settings, "register", "--schemas-dir", broken)
    assert code == 1, output


def test_removing_a_field_without_default_breaks_forward_not_backward(settings: Settings, tmp_path: Path) -> None:
    """BACKWARD (new readers, old records) allows removing a field; FULL also protects old readers and refuses it."""
    assert run_cli(settings, "register")[0] == 0
    removed = schemas_copy(tmp_path, lambda s: s["fields"].remove(field(s, "event_id")))
    code, output = run_cli(settings, "check", "--schemas-dir", str(removed))
    assert code == 0, output
    code, output = run_cli(settings, "check", "--schemas-dir", str(removed), "--compatibility", "FULL")
    assert code == 1, output
    assert f"{subject_for(settings.subscription_topic)}: SubscriptionEvent.event_id" in output, output


def test_a_compatible_change_passes_check_and_registers(
    settings: Settings, tmp_path: Path, schema_registry_url: str
) -> None:
    """An optional field with a default passes `check` and registers as version 2."""
    assert run_cli(settings, "register")[0] == 0
    added = schemas_copy(
        tmp_path,
        lambda s: s["fields"].append(
            {"name": "region", "type": ["null", "string"], "default": None, "doc": "optional, with default"}
        ),
    )
    code, output = run_cli(settings, "check", "--schemas-dir", str(added))
    assert code == 0, output
    code, output = run_cli(settings, "register", "--schemas-dir", str(added))
    assert code == 0, output
    assert new_client(schema_registry_url).get_latest_version(subject_for(settings.subscription_topic)).version == 2


def test_the_changelog_reads_the_earlier_releases_avro_states_and_its_own_compact_ones(
    settings: Settings, schema_registry_url: str
) -> None:
    """An account state written as the registered Avro record (the earlier release's changelog) and the
    same state in the compact format decode to the same account, side by side in one restore batch."""
    from consumers.codec import ServiceCodec
    from consumers.state_format import encode_account
    from multichannel.codec import state_from_record
    from multichannel.state import Account

    encoders = OutputEncoders.for_settings(settings, new_client(schema_registry_url), auto_register=True)
    legacy = encoders.changelog.encode(ACCOUNT_STATE)
    state = state_from_record(ACCOUNT_STATE)
    codec = ServiceCodec(settings)
    compact = encode_account(Account.restore(state), "view")
    assert legacy[0] == 0 and compact[0] == 2
    assert codec.decode_states([legacy, compact, legacy]) == [state, state, state]
