"""`typed_subscription_event` makes the event `parse_event` makes of the same record, or declines it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.errors import InvalidEvent
from multichannel.model import EventType
from multichannel.parse import MAX_ID_CHARS, MAX_QUANTITY, event_to_dict, parse_event, typed_subscription_event
from producers.generator import WorkloadGenerator, WorkloadSpec
from schemas import SUBSCRIPTION_EVENT, schema_str
from schemas.reader import field_names

SCHEMA = json.loads(schema_str(SUBSCRIPTION_EVENT))
NAMES = field_names(SCHEMA)


def _symbols(field: str) -> list[str]:
    (ftype,) = (f["type"] for f in SCHEMA["fields"] if f["name"] == field)
    return list(ftype[1]["symbols"])


ids = st.sampled_from(["P1", "C1", "", " ", "\u2003", " x ", "x" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1)]) | st.text(
    max_size=8
)
days = st.dates(date(2020, 1, 1), date(2030, 1, 1))
records = st.tuples(
    st.sampled_from([t.value for t in EventType] + ["unknown", "Subscription_Purchased"]),
    ids,
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    ids,
    ids,
    st.none() | ids,
    st.none() | ids,
    st.none() | st.sampled_from(_symbols("billing_model")),
    st.none() | st.sampled_from(_symbols("channel")),
    st.none() | ids,
    st.none() | st.sampled_from([-1, 0, 1, 25, MAX_QUANTITY]) | st.integers(-(2**31), 2**31 - 1),
    st.none() | days,
    st.none() | days,
)


def _parsed(fields: tuple[Any, ...]) -> Any:
    try:
        return parse_event(dict(zip(NAMES, fields, strict=True)))
    except InvalidEvent as exc:
        return exc


@settings(max_examples=600, deadline=None)
@given(fields=records)
def test_an_event_made_from_typed_fields_is_the_parsers_event(fields: tuple[Any, ...]) -> None:
    """An event built straight from typed Avro fields equals the parser's event for those fields."""
    fast = typed_subscription_event(fields)
    if fast is not None:
        assert fast == _parsed(fields)


def test_every_valid_event_of_a_generated_stream_is_made_from_its_fields() -> None:
    """The fast path declines only what the parser refuses: a valid stream never falls back."""
    spec = WorkloadSpec(seed=7, partners=10, customers=60, bad_rate=0.0, start=datetime(2026, 1, 1, tzinfo=UTC))
    count = 0
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, dict) and item["event_type"] != "partner_program_changed":
            event = parse_event(item)
            record = event_to_dict(event)
            fields = tuple(record.get(name) for name in NAMES)
            assert typed_subscription_event(fields) == event
            count += 1
        if count >= 3000:
            break
    assert count >= 200


def test_a_timestamp_the_parser_would_change_is_left_to_the_parser() -> None:
    """A timestamp with sub-millisecond digits is left to the parser, which truncates it."""
    at = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(microseconds=1500)
    fields = ("relationship_accepted", "e1", at, "P1", "C1", *(None,) * 8)
    assert typed_subscription_event(fields) is None
    assert _parsed(fields).occurred_at.microsecond == 1000
