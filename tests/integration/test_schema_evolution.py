"""Contract 1.1 rolled out as a user would, on a real broker, a real Apicurio registry and the service: version 1
registered first, `schemas check` and `schemas register` for 1.1, a version-1 producer and `multichannel produce`
with 1.1's fields writing to the same topics, the service deciding with `current`, and the outputs read with the
current schemas and with version 1's."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from config.settings import Settings
from consumers.serde import topic_schemas
from multichannel.model import PartnerProgramChanged
from multichannel.parse import event_to_dict, parse_event
from schemas import (
    PARTNER_EVENT,
    SUBSCRIPTION_EVENT,
    V1_DIR,
    SchemaName,
    parse,
    schema_str,
    subject_for,
    v1_schema_str,
)
from schemas.wire import HEADER_SIZE, RecordEncoder, unpack_schema_id, writer_schema_text
from tests.integration.pipeline import (
    PROJECT_ROOT,
    ServiceProcess,
    by_account,
    by_subscription,
    expected_outputs,
    read_outputs,
    read_topic,
    settings_env,
    wait_until_processed,
)
from tests.integration.test_schema_registry import run_cli

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LICENSE = {"billing_model": "license", "quantity": 5, "term_start": "2026-01-01", "term_end": "2040-01-01"}


def at(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")


def event(minute: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {"event_type": kind, "event_id": f"x{minute}", "occurred_at": at(minute), **fields}


# Written by `multichannel produce`, with contract 1.1's fields.
PARTNERS_1_1 = [
    event(0, "partner_program_changed", partner_id="P1", program="csp_direct", azure_expert_msp=True),
]
SUBSCRIPTIONS_1_1 = [
    # usage from a direct EA, the partner an Azure Expert MSP, no relationship: E2
    event(10, "subscription_purchased", partner_id="P1", customer_id="C1", subscription_id="S1", offer_id="AZ",
          billing_model="usage", channel="enterprise_agreement"),
    # new commerce held by another CSP partner, no relationship yet: T2 (T1 after the version-1 relationship below)
    event(11, "subscription_purchased", partner_id="P1", customer_id="C3", subscription_id="S3", offer_id="M365",
          channel="csp", seller_partner_id="P9", commerce="nce", cancellation_allowed_until="2026-01-08", **LICENSE),
    # new commerce from a volume channel, its cancellation window closed: R9, then R10 with WAIT_FOR_TERM_END
    event(12, "subscription_purchased", partner_id="P1", customer_id="C4", subscription_id="S4", offer_id="M365",
          channel="open", commerce="nce", cancellation_allowed_until="2026-01-08", **LICENSE),
    event(13, "delegated_admin_granted", partner_id="P1", customer_id="C4", expires_at="2039-06-01T00:00:00Z"),
]  # fmt: skip
# Written by a producer on version 1 of the schemas: no field of contract 1.1.
PARTNERS_1 = [event(1, "partner_program_changed", partner_id="P9", program="csp_direct")]
SUBSCRIPTIONS_1 = [
    # a license held by another CSP partner, legacy as every version-1 purchase: R7 as in seed
    event(20, "subscription_purchased", partner_id="P1", customer_id="C2", subscription_id="S2", offer_id="M365",
          channel="csp", seller_partner_id="P9", **LICENSE),
    event(21, "relationship_accepted", partner_id="P1", customer_id="C3"),
    event(22, "relationship_accepted", partner_id="P1", customer_id="C4"),
]  # fmt: skip
FINAL = {  # subscription → (rule, reason, next actions) of its last decision
    "S1": ("E2", "TRANSFER_NEEDS_RELATIONSHIP", ("SEND_RELATIONSHIP_REQUEST", "REQUEST_EA_BILLING_TRANSFER")),
    "S2": ("R7", "LICENSE_HELD_BY_OTHER_CSP_PARTNER", ("WAIT_FOR_TERM_END_OR_CANCELLATION",)),
    "S3": ("T1", "NCE_TRANSFER_AVAILABLE", ("REQUEST_PARTNER_TRANSFER",)),
    "S4": ("R10", "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END", ("SUPPORT_UNDER_RELATIONSHIP", "WAIT_FOR_TERM_END")),
}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(rulebook="current")


def produce_file(settings: Settings, path: Path, events: list[dict[str, Any]]) -> None:
    """`multichannel produce` of a JSON-lines file, as a user runs it."""
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "produce", str(path)],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"published {len(events)}, rejected 0, undelivered 0" in done.stderr, done.stderr


def produce_as_version_1(settings: Settings, client: SchemaRegistryClient, events: list[dict[str, Any]]) -> None:
    """A producer that knows only version 1: its records carry version 1's schema id and fields."""
    encoders: dict[str, RecordEncoder] = {}
    inputs: tuple[tuple[SchemaName, str], ...] = (
        (SUBSCRIPTION_EVENT, settings.subscription_topic),
        (PARTNER_EVENT, settings.partner_topic),
    )
    for name, topic in inputs:
        version_1 = client.get_version(subject_for(topic), 1)
        assert version_1.schema_id is not None and same_text(version_1.schema.schema_str, v1_schema_str(name))
        encoders[name] = RecordEncoder(name, subject_for(topic), version_1.schema_id, writer=parse(v1_schema_str(name)))
    producer = Producer(settings.kafka_client_config() | {"enable.idempotence": True})
    for item in events:
        ev = parse_event(item)
        if isinstance(ev, PartnerProgramChanged):
            topic, key, value = settings.partner_topic, ev.partner_id, encoders[PARTNER_EVENT].encode(event_to_dict(ev))
        else:
            topic, key = settings.subscription_topic, ev.customer_id
            value = encoders[SUBSCRIPTION_EVENT].encode(event_to_dict(ev))
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def same_text(registered: str | None, local: str) -> bool:
    return parse(registered or "") == parse(local)


def read_with(client: SchemaRegistryClient, reader_text: str, value: bytes) -> dict[str, Any]:
    """A value read as a client on `reader_text` reads it: the writer schema from the registry, resolved."""
    writer = parse(writer_schema_text(client, unpack_schema_id(value, 1)[0]))
    record = fastavro.schemaless_reader(io.BytesIO(value[HEADER_SIZE:]), writer, parse(reader_text))
    assert isinstance(record, dict)
    return record


def as_version_1(record: dict[str, Any], name: SchemaName) -> dict[str, Any]:
    """What a version-1 reader must see of a record: each code that version 1's enums lack as UNKNOWN."""
    known: dict[str, set[str]] = {}
    for field in json.loads(v1_schema_str(name))["fields"]:
        kind = field["type"]
        if isinstance(kind, dict) and kind["type"] == "array":
            kind = kind["items"]
        if isinstance(kind, dict) and kind["type"] == "enum":
            known[field["name"]] = set(kind["symbols"])
    out = dict(record)
    for field, symbols in known.items():
        value = record[field]
        if isinstance(value, list):
            out[field] = [v if v in symbols else "UNKNOWN" for v in value]
        else:
            out[field] = value if value in symbols else "UNKNOWN"
    return out


def test_version_1_and_1_1_producers_through_the_service_read_by_old_and_new_readers(
    settings: Settings, tmp_path: Path
) -> None:
    """Version 1 registered first; `schemas check` passes contract 1.1 against it and `schemas register` adds
    version 2 of every subject whose schema changed; events of a version-1 producer and of `multichannel produce` with
    1.1's fields, side by side on the same topics, are decided by the service with `current` as the offline
    engine decides them; the current reader sees the new codes, a version-1 reader sees them as UNKNOWN."""
    code, output = run_cli(settings, "register", "--schemas-dir", str(V1_DIR))
    assert code == 0, output
    code, output = run_cli(settings, "check")
    assert code == 0, output
    assert "INCOMPATIBLE" not in output and output.count("compatible") == len(topic_schemas(settings)), output
    code, output = run_cli(settings, "register")
    assert code == 0, output
    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    versions = {name: client.get_latest_version(subject_for(t)).version for t, name in topic_schemas(settings).items()}
    assert versions == {
        "subscription_event": 2,
        "partner_event": 2,
        "subscription_decision": 2,
        "customer_status": 1,  # its docs changed only: the registry finds it the same schema as version 1
        "account_state": 1,  # unchanged by contract 1.1
    }

    produce_file(settings, tmp_path / "partners.jsonl", PARTNERS_1_1)
    produce_as_version_1(settings, client, PARTNERS_1)
    svc = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        svc.wait_ready()
        produce_file(settings, tmp_path / "subscriptions.jsonl", SUBSCRIPTIONS_1_1)
        produce_as_version_1(settings, client, SUBSCRIPTIONS_1)
        wait_until_processed(settings, 120, [svc])
        assert svc.terminate() == 0
    finally:
        if svc.alive():
            svc.kill()

    decisions, statuses, dead_letters = read_outputs(settings)
    assert dead_letters == []
    want_decisions, want_statuses = expected_outputs(
        PARTNERS_1_1 + PARTNERS_1 + SUBSCRIPTIONS_1_1 + SUBSCRIPTIONS_1, "current"
    )
    assert by_subscription(decisions) == by_subscription(want_decisions)
    assert by_account(statuses) == by_account(want_statuses)
    last = {d["subscription_id"]: (d["rule"], d["reason"], tuple(d["next_actions"])) for d in decisions}
    assert last == FINAL
    assert {d["rulebook_version"] for d in decisions} == {"2026-12.1"}

    # a reader still on version 1 of the output schemas
    values = [m.value() for m in read_topic(settings, settings.decision_topic)]
    old = [read_with(client, v1_schema_str("subscription_decision"), v) for v in values]
    assert old == [as_version_1(d, "subscription_decision") for d in decisions]
    old_last = {d["subscription_id"]: (d["rule"], d["reason"], tuple(d["next_actions"])) for d in old}
    assert old_last == {
        "S1": ("UNKNOWN", "UNKNOWN", ("SEND_RELATIONSHIP_REQUEST", "UNKNOWN")),
        "S2": FINAL["S2"],
        "S3": ("UNKNOWN", "UNKNOWN", ("UNKNOWN",)),
        "S4": ("R10", "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END", ("SUPPORT_UNDER_RELATIONSHIP", "UNKNOWN")),
    }
    status_values = [m.value() for m in read_topic(settings, settings.status_topic)]
    assert [read_with(client, v1_schema_str("customer_status"), v) for v in status_values] == statuses
    assert schema_str("customer_status") != v1_schema_str("customer_status")  # in its docs only
