"""Fuzzed input through the core's validation and the offline command: any value of any field either
parses into an event that the Avro input schemas can carry, or is refused with a reason code and a
bounded message; a bad line never stops `classify`."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumers.classify_runner import classify_stream
from multichannel.errors import MAX_MESSAGE_CHARS, REASON_CODES, InvalidEvent
from multichannel.model import PartnerProgramChanged
from multichannel.parse import MAX_ID_CHARS, event_to_dict, parse_event
from schemas import PARTNER_EVENT, SUBSCRIPTION_EVENT
from schemas.wire import RecordEncoder

EVENT_TYPES = (
    "subscription_purchased",
    "subscription_cancelled",
    "subscription_renewed",
    "relationship_accepted",
    "relationship_ended",
    "delegated_admin_granted",
    "delegated_admin_revoked",
    "partner_program_changed",
)
VALID = {
    "event_type": "subscription_purchased",
    "event_id": "e1",
    "occurred_at": "2026-03-01T09:30:00Z",
    "partner_id": "P1",
    "customer_id": "C1",
    "subscription_id": "S1",
    "offer_id": "O1",
    "billing_model": "license",
    "channel": "csp",
    "seller_partner_id": "P2",
    "quantity": 3,
    "term_start": "2026-03-01",
    "term_end": "2027-03-01",
    "program": "csp_indirect_reseller",
    "indirect_provider_ids": ["P3"],
}
SUBSCRIPTION_ENCODER = RecordEncoder(SUBSCRIPTION_EVENT, "fuzz-subscription", 1)
PARTNER_ENCODER = RecordEncoder(PARTNER_EVENT, "fuzz-partner", 2)
FIELDS = tuple(VALID)

texts = st.one_of(
    st.sampled_from(["", " ", "license", "usage", "csp", "advisor", "none", "csp_direct", *EVENT_TYPES]),
    st.text(max_size=40),
    st.integers(min_value=MAX_ID_CHARS - 2, max_value=MAX_ID_CHARS + 2).map(lambda n: "x" * n),
    st.integers(min_value=1000, max_value=300_000).map(lambda n: "[/bold]" + "é" * n),
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat() + "Z"),
    st.dates().map(date.isoformat),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    texts,
    timestamps,
    st.lists(texts, max_size=3),
    st.integers(min_value=99, max_value=102).map(lambda n: [f"P{i}" for i in range(n)]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def event_like(draw: st.DrawFn) -> dict[str, Any]:
    """A contract event with any of its fields replaced, dropped or added."""
    event: dict[str, Any] = dict(VALID, event_type=draw(st.sampled_from(EVENT_TYPES)))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            del event[name]
        else:
            event[name] = draw(values)
    return event


def _encodes(event: Any) -> bytes:
    encoder = PARTNER_ENCODER if isinstance(event, PartnerProgramChanged) else SUBSCRIPTION_ENCODER
    return encoder.encode(event_to_dict(event))


@settings(max_examples=400, deadline=None)
@given(event_like())
@example(dict(VALID, occurred_at="0001-01-01T00:00:00+05:00"))  # before the first datetime: was an OverflowError
@example(dict(VALID, occurred_at="9999-12-31T23:59:59-05:00"))  # after the last one
@example(dict(VALID, quantity=2**40))  # parsed, then refused by the Avro int: was a ValueError in `produce`
@example(dict(VALID, subscription_id="s" * 1_000_000))  # a megabyte id would go into every output record
@example(dict(VALID, event_type="partner_program_changed", indirect_provider_ids=[f"P{i}" for i in range(10_000)]))
def test_any_field_value_parses_into_an_encodable_event_or_is_refused_with_a_reason(event: dict[str, Any]) -> None:
    """parse_event raises nothing but InvalidEvent (a contract reason, a message of at most 1000
    characters), and whatever it accepts the input topic's Avro schema can carry."""
    try:
        parsed = parse_event(event)
    except InvalidEvent as exc:
        assert exc.reason in REASON_CODES
        assert 0 < len(exc.message) <= MAX_MESSAGE_CHARS
        return
    value = _encodes(parsed)
    assert len(value) < 64 * 1024, "a valid event is small, whatever its input"


def _json(event: dict[str, Any]) -> bytes:
    """The stdlib writes what orjson will not (integers beyond 64 bits, infinities): lines to reject."""
    return json.dumps(event, ensure_ascii=False).encode()


lines = st.one_of(
    event_like().map(_json),
    st.binary(max_size=200),
    event_like().map(lambda e: _json(e)[: len(_json(e)) // 2]),
    st.just(b'{"event_type": "\xff\xfe"}'),
    st.just(b"[1, 2]"),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(lines, min_size=1, max_size=30))
def test_classify_reads_any_bytes_to_the_end_with_one_dead_letter_per_bad_line(batch: list[bytes]) -> None:
    """Every line of any input is applied, a duplicate, or exactly one dead_letter line naming it."""
    batch = [line.replace(b"\n", b" ").replace(b"\r", b" ") for line in batch]
    sink = io.BytesIO()
    counts = classify_stream(batch, sink, as_of=datetime(2030, 1, 1, tzinfo=UTC))
    out = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    dead = [r for r in out if r["record_type"] == "dead_letter"]
    blank = sum(1 for line in batch if not line.strip())
    assert counts.applied + counts.duplicates + counts.dead_letters + blank == len(batch)
    assert len(dead) == counts.dead_letters == len({r["line"] for r in dead})
    assert all(r["reason"] in REASON_CODES and len(r["message"]) <= MAX_MESSAGE_CHARS for r in dead)
