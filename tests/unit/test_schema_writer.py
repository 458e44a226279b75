"""The compiled Avro writers write exactly fastavro's bytes for the output records the engine makes."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime

import fastavro
from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.engine import Classifier
from multichannel.model import CustomerStatus, Decision, NextAction, Reason, Rule
from multichannel.parse import parse_event
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision
from producers.generator import WorkloadGenerator, WorkloadSpec
from schemas import parsed_schema, schema_str
from schemas.writer import record_writer


def fastavro_bytes(name: str, record: OutputRecord) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(name), record.to_dict())  # type: ignore[arg-type]
    return buf.getvalue()


DECISION = record_writer(json.loads(schema_str("subscription_decision")))
STATUS = record_writer(json.loads(schema_str("customer_status")))


def check(record: OutputRecord) -> None:
    if isinstance(record, SubscriptionDecision):
        assert DECISION(record) == fastavro_bytes("subscription_decision", record)
    else:
        assert STATUS(record) == fastavro_bytes("customer_status", record)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_every_record_of_a_generated_stream_is_written_as_fastavro_writes_it(seed: int) -> None:
    """Decisions and statuses of a generated stream (all rules, timers, partner changes)."""
    engine = Classifier(transactional=False)
    spec = WorkloadSpec(seed=seed, partners=10, customers=40, bad_rate=0.0, partner_change_rate=0.3)
    clock = None
    records: list[OutputRecord] = []
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, dict):
            event = parse_event(item)
            if clock is None or event.occurred_at > clock:
                clock = event.occurred_at
                records += engine.fire_due(clock)
            records += engine.apply(event, clock) or []
    assert clock is not None
    records += engine.fire_due(datetime(2031, 1, 1, tzinfo=UTC))
    assert len(records) > 50
    for record in records:
        check(record)


@given(
    text=st.text(max_size=300),
    millis=st.integers(-(2**40), 2**42),
    days=st.integers(-700_000, 2_900_000),
    counts=st.dictionaries(st.sampled_from([d.value for d in Decision]), st.integers(0, 2**31 - 1)),
    actions=st.lists(st.sampled_from(list(NextAction)), max_size=5),
)
def test_edge_values_are_written_as_fastavro_writes_them(
    text: str, millis: int, days: int, counts: dict[str, int], actions: list[NextAction]
) -> None:
    """Unicode and empty strings, times before 1970, far dates, empty and large arrays and maps, nulls."""
    at = datetime.fromtimestamp(millis / 1000, tz=UTC).replace(microsecond=(millis % 1000) * 1000)
    day = date.fromordinal(719_163 + days)
    decision = SubscriptionDecision(
        text,
        text,
        text,
        Decision.BLOCKED_UNTIL_TERM_END,
        Reason.TERM_ENDED,
        Rule.R7,
        tuple(actions),
        day if days % 2 else None,
        (text,) * (days % 3),
        at,
        text if millis % 2 else None,
        text,
    )
    check(decision)
    check(CustomerStatusRecord(text, text, CustomerStatus.MULTICHANNEL, counts, at, None, text))
