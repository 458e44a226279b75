"""Encode → decode through the Confluent wire format with an in-process (mock://) registry.

Each test gets its own mock client: the mock's store belongs to the instance.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder, OutputEncoders, check_key, event_decoder, topic_schemas
from multichannel.errors import InvalidEvent, InvalidField, KeyMismatch, SchemaMismatch, UnknownEventType
from producers.serde import EventEncoder
from schemas import SCHEMA_NAMES, parse, parsed_schema, schema_str, subject_for
from schemas.wire import RecordEncoder, RegistryUnavailableError, SchemaNotRegisteredError, header

AT = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
SUB_TOPIC, PARTNER_TOPIC = "billing.subscription-events.v1", "partner.program-events.v1"


def _base(event_type: str, n: int) -> dict[str, Any]:
    return {"event_type": event_type, "event_id": f"e{n}", "occurred_at": AT, "partner_id": "P1", "customer_id": "C1"}


SUBSCRIPTION_EVENTS: dict[str, dict[str, Any]] = {
    "subscription_purchased": _base("subscription_purchased", 1)
    | {
        "subscription_id": "S1",
        "offer_id": "O365_E3",
        "billing_model": "license",
        "channel": "third_party",
        "seller_partner_id": "P9",
        "quantity": 25,
        "term_start": date(2026, 1, 1),
        "term_end": date(2027, 1, 1),
    },
    "subscription_cancelled": _base("subscription_cancelled", 2) | {"subscription_id": "S1"},
    "subscription_renewed": _base("subscription_renewed", 3) | {"subscription_id": "S1", "term_end": date(2028, 1, 1)},
    "relationship_accepted": _base("relationship_accepted", 4),
    "relationship_ended": _base("relationship_ended", 5),
    "delegated_admin_granted": _base("delegated_admin_granted", 6),
    "delegated_admin_revoked": _base("delegated_admin_revoked", 7),
}
USAGE_PURCHASE = _base("subscription_purchased", 8) | {
    "subscription_id": "S2",
    "offer_id": "AZURE",
    "billing_model": "usage",
    "channel": "microsoft_direct",
}
PARTNER_EVENT: dict[str, Any] = {
    "event_type": "partner_program_changed",
    "event_id": "p1",
    "occurred_at": AT,
    "partner_id": "P1",
    "program": "csp_indirect_reseller",
    "indirect_provider_ids": ["D1", "D2"],
}
DECISION: dict[str, Any] = {
    "partner_id": "P1",
    "customer_id": "C1",
    "subscription_id": "S1",
    "decision": "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
    "reason": "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
    "rule": "R9",
    "next_actions": [
        "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER",
        "SEND_PROVIDER_INVITATION_TO_CUSTOMER",
        "REQUEST_DELEGATED_ADMIN_FOR_RESELLER",
    ],
    "blocked_until": date(2027, 1, 1),
    "relationship_via_partner_ids": ["D1", "D2"],
    "decided_at": AT,
    "caused_by_event_id": "e1",
    "rulebook_version": "2026-11.1",
}
TIMER_DECISION = DECISION | {
    "decision": "CSP_SWITCH_PERMITTED",
    "reason": "TERM_ENDED",
    "rule": "R5",
    "next_actions": ["OFFER_CSP_SUBSCRIPTION"],
    "blocked_until": None,
    "relationship_via_partner_ids": [],
    "caused_by_event_id": None,
}
STATUS: dict[str, Any] = {
    "partner_id": "P1",
    "customer_id": "C1",
    "status": "MULTICHANNEL",
    "decision_counts": {"ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 1, "CSP_SWITCH_PERMITTED": 2},
    "decided_at": AT,
    "caused_by_event_id": None,
    "rulebook_version": "2026-11.1",
}
FLAG = {"active": True, "occurred_at": AT, "event_id": "e4"}
ACCOUNT_STATE: dict[str, Any] = {
    "partner_id": "P1",
    "customer_id": "C1",
    "relationship": FLAG,
    "delegated_admin": None,
    "subscriptions": [
        {
            "subscription_id": "S1",
            "purchase": {
                "event_id": "e1",
                "occurred_at": AT,
                "offer_id": "O365_E3",
                "billing_model": "license",
                "channel": "third_party",
                "seller_partner_id": "P9",
                "quantity": 25,
                "term_start": date(2026, 1, 1),
                "term_end": date(2027, 1, 1),
            },
            "cancellation": None,
            "renewal": {"event_id": "e3", "occurred_at": AT, "term_end": date(2028, 1, 1)},
            "decision": {
                "decision": "BLOCKED_UNTIL_TERM_END",
                "reason": "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
                "rule": "R10",
                "next_actions": ["SUPPORT_UNDER_RELATIONSHIP", "WAIT_FOR_TERM_END_OR_CANCELLATION"],
                "blocked_until": date(2028, 1, 1),
                "relationship_via_partner_ids": [],
            },
        },
        {
            "subscription_id": "S2",
            "purchase": None,
            "cancellation": {"event_id": "e2", "occurred_at": AT},
            "renewal": None,
            "decision": None,
        },
    ],
    "status": {"status": "MULTICHANNEL", "decision_counts": {"BLOCKED_UNTIL_TERM_END": 1}},
    "recent_event_ids": ["e1", "e2", "e3", "e4"],
    "evaluated_at": datetime(2026, 3, 2, 11, 22, 33, 123456, tzinfo=UTC),
}


def complete(event: dict[str, Any], schema: str = "subscription_event") -> dict[str, Any]:
    """The event as decoded: every schema field present, absent optional ones as None (or [])."""
    defaults = {f["name"]: f.get("default") for f in parsed_schema(schema)["fields"]}  # type: ignore[arg-type]
    return defaults | event


@pytest.fixture
def client() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://serde-tests"})


@pytest.fixture
def encoder(client: SchemaRegistryClient) -> EventEncoder:
    return EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)


@pytest.fixture
def settings() -> Settings:
    return Settings(bootstrap_servers="unused:9092", schema_registry_url="mock://serde-tests")


# --- round trips ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [*SUBSCRIPTION_EVENTS.values(), USAGE_PURCHASE], ids=lambda e: e["event_id"])
def test_every_subscription_event_round_trips_field_for_field(
    client: SchemaRegistryClient, encoder: EventEncoder, event: dict[str, Any]
) -> None:
    """Every subscription event type encodes with its schema id and decodes field for field, with UTC timestamps."""
    value = encoder.encode_subscription_event(event)
    assert value[:5] == header(encoder.subscription.schema_id)
    [decoded] = event_decoder(client, "subscription").decode_batch([(b"C1", value)])
    assert decoded == complete(event)
    assert isinstance(decoded, dict)
    assert decoded["occurred_at"] == AT and decoded["occurred_at"].tzinfo is not None


def test_partner_event_round_trips(client: SchemaRegistryClient, encoder: EventEncoder) -> None:
    """A partner event round-trips, and one without providers (or the Expert MSP mark) decodes with an empty
    list (and false)."""
    value = encoder.encode_partner_event(PARTNER_EVENT)
    assert event_decoder(client, "partner").decode(value) == PARTNER_EVENT | {"azure_expert_msp": False}
    expert = PARTNER_EVENT | {"program": "csp_direct", "azure_expert_msp": True}
    del expert["indirect_provider_ids"]
    decoded = event_decoder(client, "partner").decode(encoder.encode_partner_event(expert))
    assert decoded == expert | {"indirect_provider_ids": []}


def test_batch_encoding_equals_one_by_one(encoder: EventEncoder) -> None:
    """Encoding a batch gives the same bytes as encoding its events one by one."""
    events = list(SUBSCRIPTION_EVENTS.values())
    assert encoder.encode_subscription_events(events) == [encoder.encode_subscription_event(e) for e in events]
    assert encoder.encode_partner_events([PARTNER_EVENT]) == [encoder.encode_partner_event(PARTNER_EVENT)]


@pytest.mark.parametrize(
    ("attr", "record", "schema"),
    [
        ("decision", DECISION, "subscription_decision"),
        ("decision", TIMER_DECISION, "subscription_decision"),
        ("status", STATUS, "customer_status"),
        ("changelog", ACCOUNT_STATE, "account_state"),
    ],
)
def test_output_records_round_trip(
    client: SchemaRegistryClient, settings: Settings, attr: str, record: dict[str, Any], schema: Any
) -> None:
    """Each output record encodes under its topic's subject and decodes back equal."""
    encoders = OutputEncoders.for_settings(settings, client, auto_register=True)
    encoder: RecordEncoder = getattr(encoders, attr)
    assert encoder.subject == subject_for(next(t for t, s in topic_schemas(settings).items() if s == schema))
    assert Decoder(client, schema).decode(encoder.encode(record)) == record


def test_topic_schemas_cover_every_avro_topic(settings: Settings) -> None:
    """Every Avro topic has its schema; the dead-letter topic, which keeps raw bytes, has none."""
    mapping = topic_schemas(settings)
    assert sorted(mapping.values()) == sorted(SCHEMA_NAMES)
    assert settings.dead_letter_topic not in mapping
    assert mapping[settings.changelog_topic] == "account_state"


def test_registry_client_honours_mock_urls(settings: Settings) -> None:
    """A `mock://` registry URL gives the in-memory registry client."""
    assert type(registry_client(settings)).__name__ == "MockSchemaRegistryClient"


def test_decode_batch_accepts_message_objects(client: SchemaRegistryClient, encoder: EventEncoder) -> None:
    """decode_batch reads keys and values from Kafka message objects."""

    class Message:
        def __init__(self, key: bytes, value: bytes) -> None:
            self._k, self._v = key, value

        def key(self) -> bytes:
            return self._k

        def value(self) -> bytes:
            return self._v

    values = encoder.encode_subscription_events(SUBSCRIPTION_EVENTS.values())
    decoded = event_decoder(client, "subscription").decode_batch([Message(b"C1", v) for v in values])
    assert decoded == [complete(e) for e in SUBSCRIPTION_EVENTS.values()]


def test_decoded_events_pass_the_core_parser(client: SchemaRegistryClient, encoder: EventEncoder) -> None:
    """Every decoded event is one the core parser accepts."""
    core = pytest.importorskip("multichannel.parse")
    values = encoder.encode_subscription_events([*SUBSCRIPTION_EVENTS.values(), USAGE_PURCHASE])
    for decoded in event_decoder(client, "subscription").decode_values(values):
        assert not isinstance(decoded, InvalidEvent)
        core.parse_event(decoded)
    core.parse_event(event_decoder(client, "partner").decode(encoder.encode_partner_event(PARTNER_EVENT)))


# --- poison ---------------------------------------------------------------------------------------------------


def poison(encoder: EventEncoder) -> dict[str, bytes | None]:
    good = encoder.encode_subscription_event(SUBSCRIPTION_EVENTS["subscription_purchased"])
    return {
        "no magic byte": b"\x01" + good[1:],
        "json": json.dumps({"event_type": "relationship_accepted"}).encode(),
        "unknown schema id": b"\x00" + struct.pack(">I", 4242) + good[5:],
        "garbage body": good[:5] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        "truncated body": good[:-4],
        "trailing bytes": good + b"\x00",
        "header only": good[:5],
        "too short": b"\x00\x00",
        "empty": b"",
        "null value": None,
    }


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("no magic byte", "magic byte 1"),
        ("json", "magic byte 123"),
        ("unknown schema id", "unknown schema id 4242"),
        ("garbage body", "does not match schema id"),
        ("truncated body", "does not match schema id"),
        ("trailing bytes", "1 bytes left"),
        ("header only", "5 bytes"),
        ("too short", "2 bytes"),
        ("empty", "0 bytes"),
        ("null value", "0 bytes"),
    ],
)
def test_each_poison_kind_decodes_to_schema_mismatch(
    client: SchemaRegistryClient, encoder: EventEncoder, kind: str, says: str
) -> None:
    """Each kind of poison value decodes to a SCHEMA_MISMATCH saying what is wrong."""
    [result] = event_decoder(client, "subscription").decode_values([poison(encoder)[kind]])
    assert type(result) is SchemaMismatch
    assert result.reason == "SCHEMA_MISMATCH"
    assert says in result.message


def test_poison_does_not_spoil_the_rest_of_the_batch(client: SchemaRegistryClient, encoder: EventEncoder) -> None:
    """Poison values in a batch become SCHEMA_MISMATCH and the good values around them decode."""
    good = encoder.encode_subscription_events(SUBSCRIPTION_EVENTS.values())
    bad = list(poison(encoder).values())
    mixed = [v for pair in zip(good, bad, strict=False) for v in pair]
    results = event_decoder(client, "subscription").decode_values(mixed)
    assert results[0::2] == [complete(e) for e in SUBSCRIPTION_EVENTS.values()]
    assert all(isinstance(r, SchemaMismatch) for r in results[1::2])


def test_decode_raises_what_decode_batch_returns(client: SchemaRegistryClient) -> None:
    """decode raises the SchemaMismatch that decode_batch would return."""
    with pytest.raises(SchemaMismatch, match="magic byte"):
        event_decoder(client, "subscription").decode(b"\x07garbage")


def test_a_record_of_another_schema_is_a_schema_mismatch(client: SchemaRegistryClient, settings: Settings) -> None:
    """A decision written to the input topic by mistake: a valid id, but not a subscription event."""
    value = OutputEncoders.for_settings(settings, client, auto_register=True).decision.encode(DECISION)
    [result] = event_decoder(client, "subscription").decode_values([value])
    assert isinstance(result, SchemaMismatch)


def test_a_non_avro_schema_id_is_a_schema_mismatch(client: SchemaRegistryClient) -> None:
    """A value under a registered JSON schema is a SCHEMA_MISMATCH naming the schema type."""
    schema_id = client.register_schema("json-topic-value", Schema('{"type": "object"}', "JSON"))
    [result] = event_decoder(client, "subscription").decode_values([header(schema_id) + b"{}"])
    assert isinstance(result, SchemaMismatch)
    assert "JSON" in result.message


def test_an_unknown_event_type_decodes_for_the_parser_to_reject(
    client: SchemaRegistryClient, encoder: EventEncoder
) -> None:
    """event_type is a string: a type from a newer producer reaches parse_event by name (UNKNOWN_EVENT_TYPE)."""
    value = encoder.encode_subscription_event(_base("subscription_paused", 9))
    decoded = event_decoder(client, "subscription").decode(value)
    assert decoded["event_type"] == "subscription_paused"
    core = pytest.importorskip("multichannel.parse")
    with pytest.raises(UnknownEventType, match="subscription_paused"):
        core.parse_event(decoded)


# --- schema evolution -----------------------------------------------------------------------------------------


def _evolved(edit: Any) -> str:
    schema = json.loads(schema_str("subscription_event"))
    edit(schema)
    return json.dumps(schema)


def test_records_of_an_older_writer_decode_with_defaults(client: SchemaRegistryClient) -> None:
    """v0 had no quantity/term_start and fewer channels: our reader fills the defaults."""

    def older(s: dict[str, Any]) -> None:
        s["fields"] = [f for f in s["fields"] if f["name"] not in ("quantity", "term_start")]
        channel = next(f for f in s["fields"] if f["name"] == "channel")
        channel["type"][1]["symbols"] = ["UNKNOWN", "microsoft_direct", "csp"]

    old_id = client.register_schema(subject_for(SUB_TOPIC), Schema(_evolved(older), "AVRO"))
    old_encoder = RecordEncoder("subscription_event", subject_for(SUB_TOPIC), old_id, writer=parse(_evolved(older)))
    event = SUBSCRIPTION_EVENTS["subscription_purchased"] | {"channel": "csp"}
    del event["quantity"], event["term_start"]
    decoded = event_decoder(client, "subscription").decode(old_encoder.encode(event))
    assert decoded == complete(event)
    assert decoded["quantity"] is None and decoded["term_start"] is None


def test_records_of_a_newer_writer_decode_to_what_we_know(client: SchemaRegistryClient) -> None:
    """v2 added a field and a channel: the field is dropped, the new channel reads as the enum default."""

    def newer(s: dict[str, Any]) -> None:
        s["fields"].append({"name": "promo_code", "type": ["null", "string"], "default": None, "doc": "new"})
        channel = next(f for f in s["fields"] if f["name"] == "channel")
        channel["type"][1]["symbols"].append("marketplace")

    new_id = client.register_schema(subject_for(SUB_TOPIC), Schema(_evolved(newer), "AVRO"))
    new_encoder = RecordEncoder("subscription_event", subject_for(SUB_TOPIC), new_id, writer=parse(_evolved(newer)))
    event = SUBSCRIPTION_EVENTS["subscription_purchased"] | {"channel": "marketplace", "promo_code": "X"}
    decoded = event_decoder(client, "subscription").decode(new_encoder.encode(event))
    expected = complete(SUBSCRIPTION_EVENTS["subscription_purchased"]) | {"channel": "UNKNOWN"}
    assert decoded == expected
    core = pytest.importorskip("multichannel.parse")
    with pytest.raises(InvalidField, match="channel"):  # dead-lettered as INVALID_FIELD, not a crash
        core.parse_event(decoded)


# --- schema ids -----------------------------------------------------------------------------------------------


def test_encoders_need_registered_schemas_unless_auto_register(client: SchemaRegistryClient) -> None:
    """Encoders refuse unregistered schemas unless told to register them, then find the same ids."""
    with pytest.raises(SchemaNotRegisteredError, match="schemas register"):
        EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC)
    registered = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)
    looked_up = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC)
    assert looked_up.subscription.schema_id == registered.subscription.schema_id
    assert looked_up.partner.schema_id == registered.partner.schema_id


def test_the_encoder_writes_under_its_own_schema_id_not_a_newer_latest(client: SchemaRegistryClient) -> None:
    """An encoder writes under its own schema's id even when a newer version is latest."""
    ours = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)
    newer = _evolved(lambda s: s["fields"].append({"name": "x", "type": "int", "default": 0, "doc": "new"}))
    newer_id = client.register_schema(subject_for(SUB_TOPIC), Schema(newer, "AVRO"))
    assert client.get_latest_version(subject_for(SUB_TOPIC)).schema_id == newer_id
    again = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC)
    assert again.subscription.schema_id == ours.subscription.schema_id != newer_id


# --- registry failures are not dead letters -------------------------------------------------------------------


class FailingRegistry:
    """A registry that answers every request with HTTP 503."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise SchemaRegistryError(503, 50300, "unavailable")

        return fail


def test_an_unreachable_registry_raises_instead_of_dead_lettering(encoder: EventEncoder) -> None:
    """An unreachable registry raises RegistryUnavailableError instead of dead-lettering good records."""
    value = encoder.encode_subscription_event(SUBSCRIPTION_EVENTS["relationship_accepted"])
    unreachable = SchemaRegistryClient({"url": "http://127.0.0.1:9", "max.retries": 0, "timeout": 2})
    with pytest.raises(RegistryUnavailableError, match="fetching schema id"):
        event_decoder(unreachable, "subscription").decode_values([value])
    with pytest.raises(RegistryUnavailableError):
        event_decoder(FailingRegistry(), "subscription").decode_values([value])  # type: ignore[arg-type]
    with pytest.raises(RegistryUnavailableError):
        EventEncoder(unreachable, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC)


def test_writer_schemas_are_fetched_once_per_id(client: SchemaRegistryClient, encoder: EventEncoder) -> None:
    """Each writer schema id is fetched from the registry once, an unknown one included."""
    calls: list[int] = []
    get_schema = client.get_schema

    def counting(schema_id: int, *args: Any, **kwargs: Any) -> Any:
        calls.append(schema_id)
        return get_schema(schema_id, *args, **kwargs)

    client.get_schema = counting  # type: ignore[method-assign]
    decoder = event_decoder(client, "subscription")
    values = encoder.encode_subscription_events(SUBSCRIPTION_EVENTS.values())
    unknown = b"\x00" + struct.pack(">I", 4242) + values[0][5:]
    decoder.decode_values([*values, unknown, unknown])
    decoder.decode_values([*values, unknown])
    assert calls == [encoder.subscription.schema_id, 4242]


# --- keys -----------------------------------------------------------------------------------------------------


class ParsedPartnerEvent:
    partner_id = "P1"


def test_check_key_accepts_the_payload_id() -> None:
    """A record key equal to the payload's customer_id (partner_id on the partner topic) is accepted."""
    check_key("subscription", b"C1", SUBSCRIPTION_EVENTS["relationship_accepted"])
    check_key("subscription", "C1", SUBSCRIPTION_EVENTS["relationship_accepted"])
    check_key("partner", b"P1", PARTNER_EVENT)
    check_key("partner", b"P1", ParsedPartnerEvent())


@pytest.mark.parametrize(
    ("kind", "key", "event"),
    [
        ("subscription", b"C2", SUBSCRIPTION_EVENTS["relationship_accepted"]),
        ("subscription", b"P1", SUBSCRIPTION_EVENTS["relationship_accepted"]),  # the partner id is not the key
        ("subscription", None, SUBSCRIPTION_EVENTS["relationship_accepted"]),
        ("subscription", b"\xff\xfe", SUBSCRIPTION_EVENTS["relationship_accepted"]),
        ("partner", b"C1", PARTNER_EVENT),
        ("partner", b"P2", ParsedPartnerEvent()),
    ],
)
def test_check_key_rejects_other_keys(kind: Any, key: bytes | None, event: Any) -> None:
    """Any other record key is a KEY_MISMATCH."""
    with pytest.raises(KeyMismatch) as caught:
        check_key(kind, key, event)
    assert caught.value.reason == "KEY_MISMATCH"
