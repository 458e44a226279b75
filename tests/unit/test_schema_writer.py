"""The compiled Avro writers write exactly fastavro's bytes for the output records the engine makes."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from typing import Any, Final

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.engine import Classifier
from multichannel.model import CustomerStatus, Decision, NextAction, Reason, Rule
from multichannel.parse import parse_event
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision
from producers.generator import WorkloadGenerator, WorkloadSpec
from schemas import parsed_schema, schema_str
from schemas.wire import RecordEncoder, header
from schemas.writer import record_writer, writer_source

DECISION_NAME: Final = "subscription_decision"


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


MIXED: dict[str, Any] = {
    "type": "record",
    "name": "Mixed",
    "fields": [
        {"name": "text", "type": "string"},
        {"name": "null_last", "type": ["string", "null"]},
        {"name": "null_first", "type": ["null", "string"]},
        {"name": "flag", "type": "boolean"},
        {"name": "count", "type": "long"},
        {"name": "small", "type": ["null", "int"]},
        {"name": "symbol", "type": {"type": "enum", "name": "Symbol", "symbols": ["A", "B", "C"]}},
        {"name": "day", "type": [{"type": "int", "logicalType": "date"}, "null"]},
        {"name": "names", "type": {"type": "array", "items": "string"}},
        {"name": "nested", "type": {"type": "array", "items": {"type": "array", "items": "long"}}},
        {"name": "counts", "type": {"type": "map", "values": "int"}},
    ],
}
MIXED_WRITER = record_writer(MIXED, prefix=b"\x00head")


class Obj:
    """An object whose attributes are the fields of a record."""

    def __init__(self, fields: dict[str, object]) -> None:
        self.__dict__.update(fields)


@settings(max_examples=150, deadline=None)
@given(
    record=st.fixed_dictionaries(
        {
            "text": st.text(max_size=100),
            "null_last": st.none() | st.text(max_size=70),
            "null_first": st.none() | st.text(max_size=70),
            "flag": st.booleans(),
            "count": st.integers(-(2**63), 2**63 - 1),
            "small": st.none() | st.integers(-(2**31), 2**31 - 1),
            "symbol": st.sampled_from(["A", "B", "C"]),
            "day": st.none() | st.dates(),
            "names": st.lists(st.text(max_size=5), max_size=4) | st.lists(st.text(max_size=5), max_size=4).map(tuple),
            "nested": st.lists(st.lists(st.integers(-(2**40), 2**40), max_size=3), max_size=3),
            "counts": st.dictionaries(st.text(max_size=4), st.integers(-(2**31), 2**31 - 1), max_size=4),
        }
    )
)
def test_every_construct_is_written_as_fastavro_writes_it(record: dict[str, object]) -> None:
    """Unions with null first and last, lists and tuples, nested arrays, maps, the prefix; twice, so that
    the second write comes from the writers' memos."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(MIXED), record)
    for _ in range(2):
        assert MIXED_WRITER(Obj(record)) == b"\x00head" + buf.getvalue()


def test_the_generated_source_is_inspectable() -> None:
    """The generated writer's source can be read: one `write` function with its prefix and inline strings."""
    text, names = writer_source(json.loads(schema_str("customer_status")), prefix=b"\x00head")
    assert text.startswith("def write(o):")
    assert "b'\\x00head'" in text
    assert "f0_b = f0.encode()" in text  # strings are written inline
    assert all(name in text for name in names if name.startswith("_m"))


def test_an_encoder_without_a_generated_writer_writes_the_same_through_fastavro() -> None:
    """`object_writer` is the generated writer, or fastavro on the record's dict (an encoder given another
    writer schema): the same framed bytes either way."""
    decision = SubscriptionDecision(
        "P1", "C1", "S1", Decision.BLOCKED_UNTIL_TERM_END, Reason.TERM_ENDED, Rule.R7, (), None, (),
        datetime(2026, 3, 1, tzinfo=UTC), "e1", "v1",
    )  # fmt: skip
    generated = RecordEncoder("subscription_decision", "decisions-value", 7)
    through_fastavro = RecordEncoder("subscription_decision", "decisions-value", 7, writer=parsed_schema(DECISION_NAME))
    write = generated.object_writer(SubscriptionDecision.to_dict)
    assert write is not through_fastavro.object_writer(SubscriptionDecision.to_dict)
    assert write(decision) == through_fastavro.object_writer(SubscriptionDecision.to_dict)(decision)
    assert write(decision) == header(7) + fastavro_bytes(DECISION_NAME, decision)


def test_every_code_of_the_core_is_written_as_fastavro_writes_it() -> None:
    """Each rule, reason and next action of the core (contract 1.1's T1-E2 codes included) has its symbol."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    for rule, reason in zip(list(Rule), [*Reason, *Reason], strict=False):
        decision = SubscriptionDecision(
            "P1", "C1", "S1", Decision.CSP_SWITCH_PERMITTED, reason, rule, tuple(NextAction), None, (), at, None, "v",
        )  # fmt: skip
        check(decision)


def test_a_symbol_the_schema_lacks_is_a_value_error_naming_the_enum() -> None:
    """A code the schema does not have is refused as fastavro refuses it (ValueError), naming the enum."""
    decision = SubscriptionDecision(
        "P1", "C1", "S1", Decision.CSP_SWITCH_PERMITTED, Reason.TERM_ENDED, Rule.R5, (),
        None, (), datetime(2026, 3, 1, tzinfo=UTC), None, "v",
    )  # fmt: skip
    record = decision.to_dict() | {"next_actions": ["NOT_AN_ACTION"]}
    decision.next_actions = ("NOT_AN_ACTION",)  # type: ignore[assignment]
    with pytest.raises(ValueError, match="'NOT_AN_ACTION' is not a symbol of enum NextAction"):
        DECISION(decision)
    with pytest.raises(ValueError):
        fastavro.schemaless_writer(io.BytesIO(), parsed_schema(DECISION_NAME), record)
