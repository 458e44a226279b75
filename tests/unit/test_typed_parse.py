"""`typed_subscription_event` makes the event `parse_event` makes of the same record, or declines it."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.errors import InvalidEvent, InvalidField
from multichannel.model import Commerce, EventType
from multichannel.parse import MAX_ID_CHARS, MAX_QUANTITY, event_to_dict, parse_event, typed_subscription_event
from producers.generator import WorkloadGenerator, WorkloadSpec
from schemas import SUBSCRIPTION_EVENT, schema_str
from schemas.reader import field_names

SCHEMA = json.loads(schema_str(SUBSCRIPTION_EVENT))
NAMES = field_names(SCHEMA)


def _symbols(field: str) -> list[str]:
    (ftype,) = (f["type"] for f in SCHEMA["fields"] if f["name"] == field)
    return list((ftype[1] if isinstance(ftype, list) else ftype)["symbols"])


ids = st.sampled_from(["P1", "C1", "", " ", "\u2003", " x ", "x" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1)]) | st.text(
    max_size=8
)
days = st.dates(date(2020, 1, 1), date(2030, 1, 1))
instants = st.datetimes(timezones=st.just(UTC))
"""UTC instants, some with sub-millisecond digits (a value the parser truncates: the fast path leaves it)."""
millisecond_instants = instants.map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
records = st.tuples(
    st.sampled_from([t.value for t in EventType] + ["unknown", "Subscription_Purchased"]),
    ids,
    millisecond_instants,
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
    st.none() | st.sampled_from(_symbols("commerce")),  # contract 1.1 (None: as the parser's absent)
    st.none() | days,
    st.none() | millisecond_instants | instants,
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


def _with_contract_1_1(item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The event with contract 1.1's fields set at random, or absent, as a version-1 producer writes it."""
    if rng.random() < 0.3:
        return item
    day = date(2026, 1, 1) + timedelta(days=rng.randrange(800))
    return item | {
        "commerce": rng.choice(["legacy", "nce"]),
        "cancellation_allowed_until": rng.choice([None, day.isoformat()]),
        "expires_at": rng.choice([None, f"{day.isoformat()}T12:00:00.250Z"]),
    }


def test_every_valid_event_of_a_generated_stream_is_made_from_its_fields() -> None:
    """The fast path declines only what the parser refuses: a valid stream, with and without contract 1.1's
    fields, never falls back."""
    spec = WorkloadSpec(seed=7, partners=10, customers=60, bad_rate=0.0, start=datetime(2026, 1, 1, tzinfo=UTC))
    rng = random.Random(7)
    count = 0
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, dict) and item["event_type"] != "partner_program_changed":
            event = parse_event(_with_contract_1_1(item, rng))
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
    fields = ("relationship_accepted", "e1", at, "P1", "C1", *(None,) * 11)
    assert typed_subscription_event(fields) is None
    assert _parsed(fields).occurred_at.microsecond == 1000
    grant = ("delegated_admin_granted", "e2", AT, "P1", "C1", *(None,) * 10, at)
    assert typed_subscription_event(grant) is None
    assert _parsed(grant).expires_at.microsecond == 1000


AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
WINDOW = date(2026, 3, 8)


def _record(**fields: Any) -> tuple[Any, ...]:
    base = {"event_id": "e1", "occurred_at": AT, "partner_id": "P1", "customer_id": "C1", "commerce": "legacy"}
    record = base | fields
    return tuple(record.get(name) for name in NAMES)


LICENSE = {
    "event_type": "subscription_purchased",
    "subscription_id": "S1",
    "offer_id": "O1",
    "billing_model": "license",
    "channel": "csp",
    "seller_partner_id": "P9",
    "quantity": 5,
    "term_start": date(2026, 3, 1),
    "term_end": date(2027, 3, 1),
}


def test_contract_1_1_fields_are_carried_into_the_events() -> None:
    """commerce and the cancellation window of a license purchase, a renewal's window and a grant's expiry
    are in the fast path's events, as in the parser's."""
    expiry = datetime(2026, 9, 1, tzinfo=UTC)
    cases = [
        _record(**LICENSE, commerce="nce", cancellation_allowed_until=WINDOW),
        _record(event_type="subscription_renewed", subscription_id="S1", term_end=date(2028, 3, 1),
                cancellation_allowed_until=WINDOW),
        _record(event_type="delegated_admin_granted", expires_at=expiry),
    ]  # fmt: skip
    purchase, renewal, grant = (typed_subscription_event(c) for c in cases)
    assert (purchase.commerce, purchase.cancellation_allowed_until) == (Commerce.NCE, WINDOW)  # type: ignore[union-attr]
    assert renewal.cancellation_allowed_until == WINDOW  # type: ignore[union-attr]
    assert grant.expires_at == expiry  # type: ignore[union-attr]
    assert [purchase, renewal, grant] == [_parsed(c) for c in cases]


def test_a_usage_purchase_is_legacy_without_a_window_and_an_unknown_commerce_is_left_to_the_parser() -> None:
    """Usage ignores commerce and the window (legacy, None); a commerce the schema reads as UNKNOWN (a
    platform of a newer producer) is the parser's to refuse, whatever the billing model."""
    usage = LICENSE | {"billing_model": "usage", "quantity": None, "term_start": None, "term_end": None}
    event = typed_subscription_event(_record(**usage, commerce="nce", cancellation_allowed_until=WINDOW))
    assert (event.commerce, event.cancellation_allowed_until) == (Commerce.LEGACY, None)  # type: ignore[union-attr]
    for fields in (LICENSE, usage):
        unknown = _record(**fields, commerce="UNKNOWN")
        assert typed_subscription_event(unknown) is None
        refused = _parsed(unknown)
        assert isinstance(refused, InvalidField) and "commerce" in refused.message
