"""The generated Avro readers read exactly what fastavro reads, and leave to fastavro what they do not."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fastavro
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas import PARTNER_EVENT, SUBSCRIPTION_EVENT, SchemaName, parsed_schema, schema_str, v1_schema_str
from schemas.reader import NotRead, UnsupportedSchema, field_names, reader_source, record_reader, resolving_reader

_READERS = {name: record_reader(json.loads(schema_str(name))) for name in (SUBSCRIPTION_EVENT, PARTNER_EVENT)}
_NAMES = {name: field_names(json.loads(schema_str(name))) for name in (SUBSCRIPTION_EVENT, PARTNER_EVENT)}


def ours(name: SchemaName, body: bytes) -> tuple[dict[str, Any], int]:
    """The generated reader's record, as the dict fastavro makes, and where it ended."""
    fields, end = _READERS[name](body, 0)
    return dict(zip(_NAMES[name], fields, strict=True)), end


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
texts = st.text(max_size=80)
optional_texts = st.none() | texts
millis = st.integers(-62_135_596_800_000, 253_402_300_799_999)  # every millisecond a datetime holds
days = st.integers(-719_162, 2_932_896)  # every day a date holds


def _symbols(name: SchemaName, field: str) -> list[str]:
    (ftype,) = (f["type"] for f in json.loads(schema_str(name))["fields"] if f["name"] == field)
    return list((ftype[1] if isinstance(ftype, list) else ftype)["symbols"])


instants = millis.map(lambda m: EPOCH + timedelta(milliseconds=m))
dates = days.map(lambda d: date.fromordinal(719_163 + d))


subscription_records = st.fixed_dictionaries(
    {
        "event_type": texts,
        "event_id": texts,
        "occurred_at": instants,
        "partner_id": texts,
        "customer_id": texts,
        "subscription_id": optional_texts,
        "offer_id": optional_texts,
        "billing_model": st.none() | st.sampled_from(_symbols(SUBSCRIPTION_EVENT, "billing_model")),
        "channel": st.none() | st.sampled_from(_symbols(SUBSCRIPTION_EVENT, "channel")),
        "seller_partner_id": optional_texts,
        "quantity": st.none() | st.integers(-(2**31), 2**31 - 1),
        "term_start": st.none() | dates,
        "term_end": st.none() | dates,
        "commerce": st.sampled_from(_symbols(SUBSCRIPTION_EVENT, "commerce")),
        "cancellation_allowed_until": st.none() | dates,
        "expires_at": st.none() | instants,
    }
)
partner_records = st.fixed_dictionaries(
    {
        "event_type": texts,
        "event_id": texts,
        "occurred_at": instants,
        "partner_id": texts,
        "program": st.none() | st.sampled_from(_symbols(PARTNER_EVENT, "program")),
        "indirect_provider_ids": st.lists(texts, max_size=120),
        "azure_expert_msp": st.booleans(),
    }
)


def _fastavro_write(name: SchemaName, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed_schema(name), record)
    return buf.getvalue()


def _fastavro_read(name: SchemaName, body: bytes) -> tuple[dict[str, Any], int] | Exception:
    buf = io.BytesIO(body)
    try:
        return fastavro.schemaless_reader(buf, parsed_schema(name), None), buf.tell()  # type: ignore[return-value]
    except Exception as exc:
        return exc


@settings(max_examples=150, deadline=None)
@given(record=subscription_records)
def test_a_subscription_event_is_read_as_fastavro_reads_it(record: dict[str, Any]) -> None:
    """The generated reader decodes a subscription event body exactly as fastavro does."""
    body = _fastavro_write(SUBSCRIPTION_EVENT, record)
    assert ours(SUBSCRIPTION_EVENT, body) == (record, len(body)) == _fastavro_read(SUBSCRIPTION_EVENT, body)


@settings(max_examples=100, deadline=None)
@given(record=partner_records)
def test_a_partner_event_is_read_as_fastavro_reads_it(record: dict[str, Any]) -> None:
    """The generated reader decodes a partner event body exactly as fastavro does."""
    body = _fastavro_write(PARTNER_EVENT, record)
    assert ours(PARTNER_EVENT, body) == (record, len(body)) == _fastavro_read(PARTNER_EVENT, body)


@st.composite
def damaged_bodies(draw: st.DrawFn) -> tuple[SchemaName, bytes]:
    """A valid body cut short, with bytes changed, inserted or appended, or random bytes."""
    name: SchemaName = draw(st.sampled_from([SUBSCRIPTION_EVENT, PARTNER_EVENT]))
    records = subscription_records if name == SUBSCRIPTION_EVENT else partner_records
    body = bytearray(_fastavro_write(name, draw(records)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(body)))
        how = draw(st.sampled_from(["cut", "set", "insert", "random"]))
        if how == "cut":
            del body[at:]
        elif how == "set" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif how == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif how == "random":
            body = bytearray(draw(st.binary(max_size=200)))
    return name, bytes(body)


@settings(max_examples=400, deadline=None)
@given(case=damaged_bodies())
@example(case=(SUBSCRIPTION_EVENT, b"\x02a\x02b" + b"\xff" * 11))  # a varint of eleven bytes
@example(case=(SUBSCRIPTION_EVENT, b"\x02a\x02b\x00\x02p\x02c\x00\x00\x02\x06"))  # enum index 3 of 3 symbols
@example(case=(SUBSCRIPTION_EVENT, b"\x02a\x02b\x00\x02p\x02c\x04"))  # union index 2
@example(case=(SUBSCRIPTION_EVENT, b"\x02\xff\x02b\x00\x02p\x02c" + b"\x00" * 8))  # invalid UTF-8
@example(case=(PARTNER_EVENT, b"\x02a\x02b\x00\x02p\x00\x01\x02\x02x\x00"))  # a block with a byte size
def test_a_damaged_body_is_read_as_fastavro_reads_it_or_left_to_fastavro(case: tuple[SchemaName, bytes]) -> None:
    """Whatever the generated reader returns, fastavro returns too (the same record, ending at the same byte)."""
    name, body = case
    try:
        read = ours(name, body)
    except NotRead:
        return
    assert read == _fastavro_read(name, body)


def test_the_generated_source_is_inspectable() -> None:
    """The generated reader's source can be read: one `read` function over the schema's fields."""
    text, names = reader_source(json.loads(schema_str(SUBSCRIPTION_EVENT)))
    assert text.startswith("def read(b, i):")
    assert "return (f0, f1, f2," in text
    assert all(name in names for name in ("_long", "NotRead", "_EPOCH"))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "enum", "name": "E", "symbols": ["A"]},
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "string", "int"]}]},
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": {"type": "map", "values": "int"}}]},
        {"type": "record", "name": "R", "fields": [{"name": "x", "type": "double"}]},
    ],
)
def test_constructs_outside_the_input_schemas_are_refused(schema: dict[str, Any]) -> None:
    """A schema construct the input schemas do not use is refused with UnsupportedSchema."""
    with pytest.raises(UnsupportedSchema):
        record_reader(schema)


# --- records of version 1, read with the current schema -------------------------------------------------------

_INPUTS: tuple[SchemaName, ...] = (SUBSCRIPTION_EVENT, PARTNER_EVENT)
_V1 = {name: json.loads(v1_schema_str(name)) for name in _INPUTS}
_RESOLVING = {name: resolving_reader(json.loads(schema_str(name)), _V1[name]) for name in _V1}


def _v1_record(name: SchemaName, record: dict[str, Any]) -> dict[str, Any]:
    """The record as a version-1 producer has it: without contract 1.1's fields."""
    return {k: v for k, v in record.items() if k in field_names(_V1[name])}


def _fastavro_resolved(name: SchemaName, body: bytes) -> tuple[dict[str, Any], int] | Exception:
    """What fastavro reads of a version-1 body with the current schema as reader (defaults filled)."""
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, fastavro.parse_schema(_V1[name]), parsed_schema(name))
    except Exception as exc:
        return exc
    return record, buf.tell()  # type: ignore[return-value]


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from([SUBSCRIPTION_EVENT, PARTNER_EVENT]), data=st.data())
def test_a_version_1_record_is_read_with_the_defaults_as_fastavro_resolves_it(name: SchemaName, data: Any) -> None:
    """A version-1 body read by the resolving reader is fastavro's resolved record: contract 1.1's fields
    as their defaults (legacy, null, null; false), in the current schema's order."""
    record = _v1_record(name, data.draw(subscription_records if name == SUBSCRIPTION_EVENT else partner_records))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_V1[name]), record)
    body = buf.getvalue()
    fields, end = _RESOLVING[name](body, 0)
    resolved = _fastavro_resolved(name, body)
    assert (dict(zip(_NAMES[name], fields, strict=True)), end) == resolved
    defaults = {"commerce": "legacy", "cancellation_allowed_until": None, "expires_at": None, "azure_expert_msp": False}
    assert {k: v for k, v in resolved[0].items() if k not in record} == {
        k: v for k, v in defaults.items() if k in _NAMES[name]
    }


@settings(max_examples=200, deadline=None)
@given(case=damaged_bodies())
def test_a_damaged_version_1_body_is_read_as_fastavro_resolves_it_or_left_to_fastavro(
    case: tuple[SchemaName, bytes],
) -> None:
    """Whatever the resolving reader returns for a damaged body, fastavro's resolution returns too."""
    name, body = case
    try:
        fields, end = _RESOLVING[name](body, 0)
    except NotRead:
        return
    assert (dict(zip(_NAMES[name], fields, strict=True)), end) == _fastavro_resolved(name, body)


def _edited(edit: Any) -> dict[str, Any]:
    schema = json.loads(schema_str(SUBSCRIPTION_EVENT))
    edit(schema)
    return schema  # type: ignore[no-any-return]


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


@pytest.mark.parametrize(
    ("reader", "writer"),
    [
        (json.loads(schema_str(SUBSCRIPTION_EVENT)), _edited(lambda s: s["fields"].reverse())),
        (json.loads(schema_str(SUBSCRIPTION_EVENT)), _edited(lambda s: _field(s, "quantity").update(type="int"))),
        (
            json.loads(schema_str(SUBSCRIPTION_EVENT)),
            _edited(lambda s: _field(s, "channel")["type"][1]["symbols"].append("marketplace")),
        ),
        (json.loads(schema_str(SUBSCRIPTION_EVENT)), _edited(lambda s: s["fields"].append(_field(s, "offer_id")))),
        (_edited(lambda s: s["fields"].append({"name": "x", "type": "string"})), _V1[SUBSCRIPTION_EVENT]),
        (_edited(lambda s: _field(s, "commerce").pop("default")), _V1[SUBSCRIPTION_EVENT]),
        (
            _edited(
                lambda s: s["fields"].append({"name": "x", "type": {"type": "array", "items": "string"}, "default": []})
            ),
            _V1[SUBSCRIPTION_EVENT],
        ),
    ],
    ids=[
        "reordered",
        "retyped",
        "writer has a symbol the reader lacks",
        "writer has more fields",
        "no default",
        "enum without default",
        "array default",
    ],
)
def test_a_writer_the_resolving_reader_does_not_cover_is_left_to_fastavro(
    reader: dict[str, Any], writer: dict[str, Any]
) -> None:
    """Writers that are not an earlier version appended to (or defaults that are not plain) are refused."""
    with pytest.raises(UnsupportedSchema):
        resolving_reader(reader, writer)


def test_a_writer_with_fewer_enum_symbols_is_read_as_written() -> None:
    """An enum that gained symbols after the writer's version reads every symbol the writer has as itself."""
    writer = _edited(lambda s: _field(s, "channel")["type"][1].update(symbols=["UNKNOWN", "csp"]))
    record = {"event_type": "x", "event_id": "e", "occurred_at": EPOCH, "partner_id": "P", "customer_id": "C"}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), record | {"channel": "csp"})
    fields, _end = resolving_reader(json.loads(schema_str(SUBSCRIPTION_EVENT)), writer)(buf.getvalue(), 0)
    assert dict(zip(_NAMES[SUBSCRIPTION_EVENT], fields, strict=True))["channel"] == "csp"
