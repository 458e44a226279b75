"""Contract 1.1 next to version 1, through the Confluent wire format and an in-process (mock://) registry: what a
version-1 producer wrote still decodes and means what it meant, contract 1.1's fields round-trip, and a reader on
the version-1 output schemas reads the new codes as UNKNOWN."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from config.settings import Settings
from consumers.serde import Decoder, OutputEncoders, event_decoder
from multichannel.errors import InvalidEvent
from multichannel.model import (
    Commerce,
    CustomerStatus,
    Decision,
    DelegatedAdminGranted,
    NextAction,
    PartnerProgramChanged,
    Program,
    Reason,
    Rule,
    SubscriptionPurchased,
)
from multichannel.parse import event_to_dict, parse_event, typed_subscription_event
from multichannel.records import CustomerStatusRecord, SubscriptionDecision
from producers.serde import EventEncoder
from schemas import SchemaName, parse, schema_str, subject_for, v1_schema_str
from schemas.wire import HEADER_SIZE, RecordEncoder
from tests.unit.test_serde import PARTNER_EVENT, PARTNER_TOPIC, SUB_TOPIC, SUBSCRIPTION_EVENTS, USAGE_PURCHASE, complete

WINDOW = date(2026, 1, 14)
EXPIRY = datetime(2026, 9, 1, 12, 0, 0, 250000, tzinfo=UTC)
NCE_PURCHASE = SUBSCRIPTION_EVENTS["subscription_purchased"] | {
    "event_id": "n1",
    "commerce": "nce",
    "cancellation_allowed_until": WINDOW,
}
NCE_RENEWAL = SUBSCRIPTION_EVENTS["subscription_renewed"] | {"event_id": "n2", "cancellation_allowed_until": WINDOW}
GRANT_WITH_EXPIRY = SUBSCRIPTION_EVENTS["delegated_admin_granted"] | {"event_id": "n3", "expires_at": EXPIRY}
EXPERT_PARTNER = PARTNER_EVENT | {"event_id": "n4", "program": "csp_direct", "azure_expert_msp": True}
V1_1_EVENTS = [NCE_PURCHASE, NCE_RENEWAL, GRANT_WITH_EXPIRY]


@pytest.fixture
def client() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://schema-versions"})


def v1_encoder(client: SchemaRegistryClient, name: SchemaName, topic: str) -> RecordEncoder:
    """A version-1 producer: version 1 registered under the subject, and records written with it."""
    schema_id = client.register_schema(subject_for(topic), Schema(v1_schema_str(name), "AVRO"))
    return RecordEncoder(name, subject_for(topic), schema_id, writer=parse(v1_schema_str(name)))


def read_as_v1(name: SchemaName, value: bytes) -> dict[str, Any]:
    """What a reader on the version-1 schema reads of a value of our (contract 1.1) schema."""
    record = fastavro.schemaless_reader(
        io.BytesIO(value[HEADER_SIZE:]), parse(schema_str(name)), parse(v1_schema_str(name))
    )
    assert isinstance(record, dict)
    return record


def test_version_1_records_decode_with_the_defaults_and_mean_what_they_meant(client: SchemaRegistryClient) -> None:
    """Every event of a version-1 producer decodes with contract 1.1's defaults (legacy, null, null; false), on
    the typed fast path as in the parser, to the event the same contract dict makes."""
    events = [*SUBSCRIPTION_EVENTS.values(), USAGE_PURCHASE]
    subscription = v1_encoder(client, "subscription_event", SUB_TOPIC)
    partner = v1_encoder(client, "partner_event", PARTNER_TOPIC)
    values = subscription.encode_batch(events)
    decoder = event_decoder(client, "subscription")
    decoded = decoder.decode_values(values)
    assert decoded == [complete(e) for e in events]
    for d in decoded:
        assert isinstance(d, dict)
        assert (d["commerce"], d["cancellation_allowed_until"], d["expires_at"]) == ("legacy", None, None)
    typed = decoder.decode_built(values, typed_subscription_event)
    # the generated reader of version 1 read every value and the typed path took it: none came back as a dict
    assert typed == [parse_event(e) for e in events]
    purchase = typed[0]
    assert isinstance(purchase, SubscriptionPurchased)
    assert (purchase.commerce, purchase.cancellation_allowed_until) == (Commerce.LEGACY, None)
    [partner_record] = event_decoder(client, "partner").decode_values([partner.encode(PARTNER_EVENT)])
    assert partner_record == PARTNER_EVENT | {"azure_expert_msp": False}
    assert isinstance(partner_record, dict)
    assert parse_event(partner_record) == parse_event(PARTNER_EVENT)


def test_version_1_and_1_1_records_decode_side_by_side(client: SchemaRegistryClient) -> None:
    """One batch of both versions' records: each decodes under its own writer schema, in order."""
    old = v1_encoder(client, "subscription_event", SUB_TOPIC)
    new = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)
    assert new.subscription.schema_id != old.schema_id
    plain = SUBSCRIPTION_EVENTS["subscription_purchased"]
    values = [old.encode(plain), new.encode_subscription_event(NCE_PURCHASE), old.encode(plain)]
    built = event_decoder(client, "subscription").decode_built(values, typed_subscription_event)
    assert built == [parse_event(plain), parse_event(NCE_PURCHASE), parse_event(plain)]
    assert [e.commerce for e in built] == [Commerce.LEGACY, Commerce.NCE, Commerce.LEGACY]  # type: ignore[union-attr]


def test_contract_1_1_fields_round_trip(client: SchemaRegistryClient) -> None:
    """commerce, the cancellation windows, the GDAP expiry and the Expert MSP mark encode and decode field for
    field, and the typed fast path makes the parser's events of them."""
    encoder = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)
    values = encoder.encode_subscription_events(V1_1_EVENTS)
    decoder = event_decoder(client, "subscription")
    assert decoder.decode_values(values) == [complete(e) for e in V1_1_EVENTS]
    events = decoder.decode_built(values, typed_subscription_event)
    assert events == [parse_event(e) for e in V1_1_EVENTS]
    grant = events[2]
    assert isinstance(grant, DelegatedAdminGranted) and grant.expires_at == EXPIRY.replace(microsecond=250000)
    for event, sent in zip(events, V1_1_EVENTS, strict=True):  # what a publisher encodes of the event: as sent
        assert not isinstance(event, dict | InvalidEvent)
        as_dict = event_to_dict(event)
        assert as_dict == {k: complete(sent)[k] for k in as_dict}
    [partner] = event_decoder(client, "partner").decode_values([encoder.encode_partner_event(EXPERT_PARTNER)])
    assert partner == EXPERT_PARTNER
    assert isinstance(partner, dict)
    assert parse_event(partner) == PartnerProgramChanged(
        "n4", PARTNER_EVENT["occurred_at"], "P1", Program.CSP_DIRECT, (), azure_expert_msp=True
    )


def test_a_version_1_reader_ignores_the_new_fields(client: SchemaRegistryClient) -> None:
    """An input reader on version 1 (a service not upgraded yet) reads a 1.1 record as the version-1 event."""
    encoder = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)
    record = read_as_v1("subscription_event", encoder.encode_subscription_event(NCE_PURCHASE))
    v1_fields = {k: v for k, v in complete(NCE_PURCHASE).items() if k in record}
    assert record == v1_fields and "commerce" not in record
    assert read_as_v1("partner_event", encoder.encode_partner_event(EXPERT_PARTNER)) == PARTNER_EVENT | {
        "event_id": "n4",
        "program": "csp_direct",
    }


NEW_CODES = SubscriptionDecision(
    "P1",
    "C1",
    "S1",
    Decision.ELIGIBLE_FOR_RELATIONSHIP_REQUEST,
    Reason.TRANSFER_NEEDS_RELATIONSHIP,
    Rule.T2,
    (
        NextAction.SEND_RESELLER_INVITATION_TO_CUSTOMER,
        NextAction.REQUEST_PARTNER_TRANSFER,
        NextAction.LINK_INDIRECT_PROVIDER,
    ),
    None,
    ("D1",),
    datetime(2026, 3, 1, tzinfo=UTC),
    None,
    "2026-12.1",
)


@pytest.mark.parametrize(
    ("rule", "reason", "actions"),
    [
        (Rule.T1, Reason.NCE_TRANSFER_AVAILABLE, (NextAction.REQUEST_PARTNER_TRANSFER,)),
        (Rule.T2, Reason.TRANSFER_NEEDS_RELATIONSHIP, NEW_CODES.next_actions),
        (Rule.E1, Reason.EA_BILLING_TRANSFER_AVAILABLE, (NextAction.REQUEST_EA_BILLING_TRANSFER,)),
        (Rule.R7, Reason.LICENSE_HELD_BY_OTHER_CSP_PARTNER, (NextAction.WAIT_FOR_TERM_END,)),
    ],
    ids=["T1", "T2", "E1", "R7 of current"],
)
def test_a_version_1_output_reader_reads_the_new_codes_as_unknown(
    client: SchemaRegistryClient, rule: Rule, reason: Reason, actions: tuple[NextAction, ...]
) -> None:
    """The service's generated writer writes contract 1.1's codes; our reader reads them back, a reader on the
    version-1 decision schema reads each new one as UNKNOWN and every other field as written."""
    encoders = OutputEncoders.for_settings(_settings(), client, auto_register=True)
    decision = SubscriptionDecision(**{**_fields(NEW_CODES), "rule": rule, "reason": reason, "next_actions": actions})
    value = encoders.decision.object_writer(SubscriptionDecision.to_dict)(decision)
    assert Decoder(client, "subscription_decision").decode(value) == decision.to_dict()
    old = read_as_v1("subscription_decision", value)
    v1_symbols = {"R7", "LICENSE_HELD_BY_OTHER_CSP_PARTNER", "LINK_INDIRECT_PROVIDER"}
    expected = decision.to_dict() | {
        "rule": rule.value if rule.value in v1_symbols else "UNKNOWN",
        "reason": reason.value if reason.value in v1_symbols else "UNKNOWN",
        "next_actions": [a.value if a.value in v1_symbols else "UNKNOWN" for a in actions],
    }
    assert old == expected


def test_a_version_1_status_reader_reads_the_status_as_written(client: SchemaRegistryClient) -> None:
    """The customer status changed only in its docs: a version-1 reader reads a status record whole."""
    encoders = OutputEncoders.for_settings(_settings(), client, auto_register=True)
    status = CustomerStatusRecord(
        "P1", "C1", CustomerStatus.MULTICHANNEL, {"ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 2}, NEW_CODES.decided_at, None,
        "2026-12.1",
    )  # fmt: skip
    value = encoders.status.object_writer(CustomerStatusRecord.to_dict)(status)
    assert read_as_v1("customer_status", value) == status.to_dict()


def _settings() -> Settings:
    return Settings(bootstrap_servers="unused:9092", schema_registry_url="mock://schema-versions")


def _fields(decision: SubscriptionDecision) -> dict[str, Any]:
    return {name: getattr(decision, name) for name in SubscriptionDecision.__dataclass_fields__}


def test_a_none_for_a_field_with_a_value_default_is_written_as_the_default(client: SchemaRegistryClient) -> None:
    """The encoder takes None as absent for commerce, azure_expert_msp and the provider list (fields that are
    no union with null), as the contract reads a null: the schema's default is written."""
    encoder = EventEncoder(client, subscription_topic=SUB_TOPIC, partner_topic=PARTNER_TOPIC, auto_register=True)
    purchase = SUBSCRIPTION_EVENTS["subscription_purchased"]
    assert encoder.encode_subscription_event(purchase | {"commerce": None}) == encoder.encode_subscription_event(
        purchase
    )
    partner = PARTNER_EVENT | {"azure_expert_msp": None, "indirect_provider_ids": None}
    [decoded] = event_decoder(client, "partner").decode_values(encoder.encode_partner_events([partner]))
    assert decoded == PARTNER_EVENT | {"azure_expert_msp": False, "indirect_provider_ids": []}
