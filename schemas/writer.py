"""Avro binary writers generated once per record schema, that read a record's fields straight from an object.

fastavro's generic writer walks the schema for every record and wants a dict, so writing one decision
paid for that walk and for building the dict; a tuple of per-field closures joined per record still cost
a call per field. So the writer of a record schema is generated Python source (`writer_source`), compiled once
with `exec`: one function that reads every field with one `attrgetter` call and joins the encoded
pieces in one expression, with the short strings, optionals, enums and empty arrays of the output
records written inline. It covers the types the output schemas use (string, int, long, boolean, enum,
array, map, a union of null and one type, and the date and timestamp-millis logical types) and is
checked byte for byte against fastavro.
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


_SMALL_LONG = [_ONE_BYTE[n << 1] for n in range(64)]
"""The varints of 0 to 63."""


def _string(value: str) -> bytes:
    raw = value.encode()
    n = len(raw)
    return (_SHORT_LENGTH[n] if n < 64 else _long(n)) + raw


def _boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def _timestamp_millis(value: datetime) -> int:
    return (value - _EPOCH) // _MILLI


def _date(value: date) -> int:
    return value.toordinal() - _EPOCH_DAY


class _Memo(dict[Any, bytes]):
    """The encoded form of values that repeat a lot (a batch's clock, term-end days, action and provider
    lists, map keys): `memo[value]`, written by `write` on a miss, after `prefix` (a union's branch);
    bounded."""

    def __init__(self, write: Write, prefix: bytes = b"") -> None:
        super().__init__()
        self._write = write
        self._prefix = prefix

    def __missing__(self, value: Any) -> bytes:
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        out = self[value] = self._prefix + self._write(value)
        return out


class _Symbols(dict[Any, bytes]):
    """Enum symbol → its encoded index; a str enum member finds its symbol's entry as it is, another
    enum member through its value. A symbol the schema lacks is a ValueError, as fastavro's (a code of the
    core that the schema does not have yet: the schema needs the symbol, appended after the others)."""

    def __init__(self, name: str, symbols: Sequence[str]) -> None:
        super().__init__({s: _long(i) for i, s in enumerate(symbols)})
        self._name = name

    def __missing__(self, value: Any) -> bytes:
        symbol = getattr(value, "_value_", None)
        if isinstance(symbol, str) and symbol in self:
            return self[symbol]
        raise ValueError(f"{value!r} is not a symbol of enum {self._name}")


def _array(item: Write) -> Write:
    def write(values: Sequence[Any]) -> bytes:
        if not values:
            return b"\x00"
        return _long(len(values)) + b"".join([item(v) for v in values]) + b"\x00"

    return write


def _map(value_writer: Write) -> Write:
    """Keys are written through a memo (the keys of a map repeat: decision codes); int and long values
    below 64, one byte each, from a table."""
    keys = _Memo(_string)
    small = _SMALL_LONG if value_writer is _long else ()

    def write(values: Mapping[str, Any]) -> bytes:
        if not values:
            return b"\x00"
        parts = [_long(len(values))]
        for k, v in values.items():
            parts.append(keys[k])
            parts.append(small[v] if type(v) is int and 0 <= v < len(small) else value_writer(v))
        parts.append(b"\x00")
        return b"".join(parts)

    return write


def _optional(inner: Write, null_first: bool) -> Write:
    null, some = (b"\x00", b"\x02") if null_first else (b"\x02", b"\x00")

    def write(value: Any) -> bytes:
        return null if value is None else some + inner(value)

    return write


def _compile(schema: Any) -> Write:
    """A writer function of a type nested in a field (array items, map values, a union's other type)."""
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
        return _Memo(lambda t: _long(_timestamp_millis(t))).__getitem__
    if kind == "int" and logical == "date":
        return _Memo(lambda d: _long(_date(d))).__getitem__
    if kind == "enum":
        return _Symbols(schema["name"], schema["symbols"]).__getitem__
    if kind == "array":
        return _array(_compile(schema["items"]))
    if kind == "map":
        return _map(_compile(schema["values"]))
    if logical is None and isinstance(kind, str):
        return _compile(kind)
    raise UnsupportedSchema(str(schema)[:80])


class _Source:
    """The generated function's lines, and the objects its names refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"_long": _long, "_SHORT": _SHORT_LENGTH}

    def bind(self, prefix: str, obj: Any) -> str:
        name = f"_{prefix}{len(self.names)}"
        self.names[name] = obj
        return name


_PRIMITIVES = frozenset({"string", "int", "long", "boolean"})


def _hashable(schema: Any) -> bool:
    """Whether values of `schema` are hashable as the records hold them (primitives, enum members)."""
    if isinstance(schema, str):
        return schema in _PRIMITIVES
    return isinstance(schema, dict) and schema.get("type") == "enum"


def _memo_writer(schema: Any) -> Write | None:
    """The writer of a type whose values are hashable and repeat (logical dates and times, enums), to
    keep encoded in a `_Memo`; None for others."""
    if isinstance(schema, dict):
        kind, logical = schema.get("type"), schema.get("logicalType")
        if (kind, logical) in (("long", "timestamp-millis"), ("int", "date")):
            return _compile(schema)
    return None


def _field(schema: Any, var: str, src: _Source) -> list[str]:
    """The expressions whose bytes, in order, encode the value in local `var` (statements go to `src`)."""
    if schema in ("string", {"type": "string"}):
        raw = f"{var}_b"
        src.lines.append(f"{raw} = {var}.encode()")
        return [f"(_SHORT[len({raw})] if len({raw}) < 64 else _long(len({raw})))", raw]
    if isinstance(schema, list) and len(schema) == 2 and "null" in schema:
        null_first = schema[0] == "null"
        other = schema[1] if null_first else schema[0]
        null, some = (b"\x00", b"\x02") if null_first else (b"\x02", b"\x00")
        if other == "string":
            raw, out = f"{var}_b", f"{var}_o"
            src.lines += [
                f"if {var} is None:",
                f"    {out} = {null!r}",
                "else:",
                f"    {raw} = {var}.encode()",
                f"    {out} = {some!r} + (_SHORT[len({raw})] if len({raw}) < 64 else _long(len({raw}))) + {raw}",
            ]
            return [out]
        memoised = _memo_writer(other)
        if memoised is not None:
            return [f"({null!r} if {var} is None else {src.bind('m', _Memo(memoised, some))}[{var}])"]
        inner = src.bind("w", _compile(other))
        return [f"({null!r} if {var} is None else {some!r} + {inner}({var}))"]
    if isinstance(schema, dict):
        kind = schema.get("type")
        memoised = _memo_writer(schema)
        if memoised is not None:
            return [f"{src.bind('m', _Memo(memoised))}[{var}]"]
        if kind == "enum":
            symbols = src.bind("e", _Symbols(schema["name"], schema["symbols"]))
            return [f"{symbols}[{var}]"]
        if kind == "array":
            array = _compile(schema)
            write = src.bind("w", array)
            if _hashable(schema["items"]):
                # a tuple of hashable items: the few distinct action lists and provider lists, kept encoded
                memo = src.bind("m", _Memo(array))
                return [rf"(b'\x00' if not {var} else {memo}[{var}] if type({var}) is tuple else {write}({var}))"]
            return [rf"({write}({var}) if {var} else b'\x00')"]
        if kind == "map":
            return [rf"({src.bind('w', _compile(schema))}({var}) if {var} else b'\x00')"]
    return [f"{src.bind('w', _compile(schema))}({var})"]


def writer_source(schema: Mapping[str, Any], prefix: bytes = b"") -> tuple[str, dict[str, Any]]:
    """The source of the writer of a record schema, and the names it refers to (for `exec`);
    `prefix` is written before every record (the Confluent framing)."""
    if schema.get("type") != "record":
        raise UnsupportedSchema("not a record")
    src = _Source()
    fields = [f["name"] for f in schema["fields"]]
    if not fields:
        raise UnsupportedSchema("a record without fields")
    getter = src.bind("get", attrgetter(*fields))
    local = [f"f{i}" for i in range(len(fields))]
    src.lines.append(f"{local[0] if len(local) == 1 else ', '.join(local)} = {getter}(o)")
    parts = [repr(prefix)] if prefix else []
    for f, var in zip(schema["fields"], local, strict=True):
        parts += _field(f["type"], var, src)
    body = "\n".join(f"    {line}" for line in src.lines)
    text = f"def write(o):\n{body}\n    return b''.join(({', '.join(parts)},))\n"
    return text, src.names


def record_writer(schema: Mapping[str, Any], prefix: bytes = b"") -> Write:
    """The writer of a record schema (JSON as in the .avsc) for objects whose attributes are its fields."""
    text, names = writer_source(schema, prefix)
    namespace = dict(names)
    exec(compile(text, f"<avro writer {schema.get('name')}>", "exec"), namespace)  # noqa: S102 - our own source
    write: Write = namespace["write"]
    return write
