"""Avro binary writers compiled once per schema, that read a record's fields straight from an object.

fastavro's generic writer walks the schema for every record and wants a dict, so writing one decision
cost about 8 µs plus the dict. A writer compiled here is a tuple of per-field functions chosen once;
writing reads all fields with one `attrgetter` call and joins the encoded pieces. It covers the types
the output schemas use (string, int, long, boolean, enum, array, map, a union of null and one type,
and the date and timestamp-millis logical types) and is checked byte for byte against fastavro.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import Any

Write = Callable[[Any], bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_MILLI = timedelta(milliseconds=1)
_ONE_BYTE = [bytes([n]) for n in range(128)]
_CACHE_LIMIT = 4096


class UnsupportedSchema(ValueError):
    """A schema construct these writers do not compile (the caller writes with fastavro instead)."""


def _long(n: int) -> bytes:
    """Zig-zag varint, as Avro writes int and long."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT_LENGTH = [bytes([n << 1]) for n in range(64)]
"""The zig-zag varint of a length below 64 is the one byte 2n: most strings here (ids, codes) are short."""


def _string(value: str) -> bytes:
    raw = value.encode()
    n = len(raw)
    return (_SHORT_LENGTH[n] if n < 64 else _long(n)) + raw


def _boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _cached(convert: Callable[[Any], int]) -> Write:
    """A writer for values that repeat a lot (a batch's clock, term-end days): remembered, bounded."""
    memo: dict[Any, bytes] = {}

    def write(value: Any) -> bytes:
        out = memo.get(value)
        if out is None:
            if len(memo) >= _CACHE_LIMIT:
                memo.clear()
            out = memo[value] = _long(convert(value))
        return out

    return write


def _timestamp_millis(value: datetime) -> int:
    return (value - _EPOCH) // _MILLI


def _date(value: date) -> int:
    return value.toordinal() - _EPOCH_DAY


def _enum(symbols: Sequence[str]) -> Write:
    index = {s: _long(i) for i, s in enumerate(symbols)}

    def write(value: Any) -> bytes:
        return index[value if type(value) is str else value._value_]

    return write


def _array(item: Write) -> Write:
    def write(values: Sequence[Any]) -> bytes:
        if not values:
            return b"\x00"
        return _long(len(values)) + b"".join([item(v) for v in values]) + b"\x00"

    return write


def _map(value_writer: Write) -> Write:
    def write(values: Mapping[str, Any]) -> bytes:
        if not values:
            return b"\x00"
        body = b"".join([_string(k) + value_writer(v) for k, v in values.items()])
        return _long(len(values)) + body + b"\x00"

    return write


def _optional(inner: Write, null_first: bool) -> Write:
    null, some = (b"\x00", b"\x02") if null_first else (b"\x02", b"\x00")

    def write(value: Any) -> bytes:
        return null if value is None else some + inner(value)

    return write


def _compile(schema: Any) -> Write:
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise UnsupportedSchema(f"union {schema}")
        other = schema[1] if schema[0] == "null" else schema[0]
        return _optional(_compile(other), schema[0] == "null")
    if isinstance(schema, str):
        simple: dict[str, Write] = {"string": _string, "int": _long, "long": _long, "boolean": _boolean}
        if schema not in simple:
            raise UnsupportedSchema(schema)
        return simple[schema]
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind == "long" and logical == "timestamp-millis":
        return _cached(_timestamp_millis)
    if kind == "int" and logical == "date":
        return _cached(_date)
    if kind == "enum":
        return _enum(schema["symbols"])
    if kind == "array":
        return _array(_compile(schema["items"]))
    if kind == "map":
        return _map(_compile(schema["values"]))
    if logical is None and isinstance(kind, str):
        return _compile(kind)
    raise UnsupportedSchema(str(schema)[:80])


def record_writer(schema: Mapping[str, Any]) -> Write:
    """The writer of a record schema (JSON as in the .avsc) for objects whose attributes are its fields."""
    if schema.get("type") != "record":
        raise UnsupportedSchema("not a record")
    fields = schema["fields"]
    writers = tuple(_compile(f["type"]) for f in fields)
    getter = attrgetter(*(f["name"] for f in fields))

    def write(obj: Any) -> bytes:
        return b"".join([w(v) for w, v in zip(writers, getter(obj), strict=True)])

    return write
