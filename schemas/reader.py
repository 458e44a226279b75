"""Avro binary readers generated once per record schema, for the bodies of the input events.

fastavro's generic reader walks the schema for every record, through a file object; our input events
are flat records of strings, longs, enums and unions with null, so reading one with a function made
for its schema (slices of the value, varints read inline) takes a fraction of the time. The source is
generated (`reader_source`) and compiled once with `exec`.

A generated reader is a fast path only. It returns the field values, in schema order, of exactly the
record fastavro's `schemaless_reader` returns for the same schema (a tuple: the caller may not need
the dict), or raises `NotRead` for anything it does not read plainly (a value cut short, invalid
UTF-8, a union or enum index out of range, a negative block count, a varint of more than nine bytes,
an int beyond 32 bits): the caller then reads the value with fastavro, so every error and every
corner case is fastavro's own. It covers string, int, long, boolean, enum, array, a union of null
and one type, and the date and timestamp-millis logical types. A reader for values of an earlier
version of a schema (`resolving_reader`) reads that version and appends the later fields' defaults:
the record fastavro's schema resolution returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

Read = Callable[[bytes, int], tuple[tuple[Any, ...], int]]
"""(value, offset of the body) → (the record's field values in schema order, offset after it)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_SHIFT = date(1970, 1, 1).toordinal()
_INT_MAX = 2**31 - 1


class NotRead(ValueError):
    """A value the generated reader leaves to fastavro."""


class UnsupportedSchema(ValueError):
    """A schema construct the generated readers do not cover (the caller reads with fastavro)."""


def _long(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at `pos` and the offset after it."""
    try:
        b = buf[pos]
        n = b & 0x7F
        shift = 7
        while b & 0x80:
            pos += 1
            if shift > 56:
                raise NotRead("varint of more than nine bytes")
            b = buf[pos]
            n |= (b & 0x7F) << shift
            shift += 7
    except IndexError:
        raise NotRead("cut short") from None
    return (n >> 1) ^ -(n & 1), pos + 1


def _int(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = _long(buf, pos)
    if not -_INT_MAX - 1 <= n <= _INT_MAX:
        raise NotRead("int beyond 32 bits")
    return n, pos


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = _long(buf, pos)
    if n < 0:
        raise NotRead("negative length")
    return n, pos


def _string(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = _length(buf, pos)
    end = pos + n
    if end > len(buf):
        raise NotRead("cut short")
    return buf[pos:end].decode(), end


def _string_array(buf: bytes, pos: int) -> tuple[list[str], int]:
    out: list[str] = []
    while True:
        count, pos = _long(buf, pos)
        if count == 0:
            return out, pos
        if count < 0:
            raise NotRead("block with a byte size")
        for _ in range(count):
            item, pos = _string(buf, pos)
            out.append(item)


_DAYS: dict[int, date] = {}
"""Days since the epoch → date: a stream's term dates fall on few days. Bounded."""


def _day(days: int) -> date:
    if len(_DAYS) >= 8192:
        _DAYS.clear()
    out = _DAYS[days] = date.fromordinal(days + _DAYS_SHIFT)
    return out


class _Source:
    """The generated function's lines, and the objects its names refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "_long": _long,
            "_int": _int,
            "_length": _length,
            "_string_array": _string_array,
            "NotRead": NotRead,
            "_EPOCH": _EPOCH,
            "_DAYS": _DAYS,
            "_day": _day,
            "timedelta": timedelta,
        }

    def bind(self, prefix: str, obj: Any) -> str:
        name = f"_{prefix}{len(self.names)}"
        self.names[name] = obj
        return name


def _varint(var: str, is_int: bool, src: _Source, indent: str) -> None:
    """Lines that read a zig-zag varint into `var`, inline (as `_long` and `_int` do: at most nine bytes;
    an int within 32 bits)."""
    src.lines += [
        f"{indent}n = b[i]",
        f"{indent}i += 1",
        f"{indent}if n & 0x80:",
        f"{indent}    n &= 0x7F",
        f"{indent}    shift = 7",
        f"{indent}    while True:",
        f"{indent}        c = b[i]",
        f"{indent}        i += 1",
        f"{indent}        n |= (c & 0x7F) << shift",
        f"{indent}        if c < 0x80:",
        f"{indent}            break",
        f"{indent}        shift += 7",
        f"{indent}        if shift > 56:",
        f"{indent}            raise NotRead('varint of more than nine bytes')",
        f"{indent}{var} = (n >> 1) ^ -(n & 1)",
    ]
    if is_int:
        src.lines += [
            f"{indent}if not {-_INT_MAX - 1} <= {var} <= {_INT_MAX}:",
            f"{indent}    raise NotRead('int beyond 32 bits')",
        ]


def _value(schema: Any, var: str, src: _Source, indent: str) -> None:
    """Lines that read one value of `schema` at offset `i` of `b` into local `var`, advancing `i`."""
    add = src.lines.append
    if (
        isinstance(schema, dict)
        and "logicalType" not in schema
        and schema.get("type") in ("string", "int", "long", "boolean", "null")
    ):
        schema = schema["type"]  # {"type": "string"} is "string"
    if schema == "string":  # inline: most of an event's bytes are its short strings
        add(f"{indent}n = b[i]")
        add(f"{indent}if n & 0x81:  # a length of more than one byte, or negative")
        add(f"{indent}    n, i = _length(b, i)")
        add(f"{indent}else:")
        add(f"{indent}    n >>= 1")
        add(f"{indent}    i += 1")
        add(f"{indent}if i + n > size:")
        add(f"{indent}    raise NotRead('cut short')")
        add(f"{indent}{var} = b[i : i + n].decode()")
        add(f"{indent}i += n")
        return
    if schema in ("long", "int"):
        _varint(var, schema == "int", src, indent)
        return
    if schema == "boolean":
        add(f"{indent}{var} = b[i]")
        add(f"{indent}if {var} > 1:")
        add(f"{indent}    raise NotRead('boolean byte')")
        add(f"{indent}{var} = {var} == 1")
        add(f"{indent}i += 1")
        return
    if isinstance(schema, list):
        if len(schema) != 2 or "null" not in schema:
            raise UnsupportedSchema(f"union {schema}")
        null_index = schema.index("null")
        add(f"{indent}k = b[i]")
        add(f"{indent}i += 1")
        add(f"{indent}if k == {2 * null_index}:")
        add(f"{indent}    {var} = None")
        add(f"{indent}elif k == {2 * (1 - null_index)}:")
        _value(schema[1 - null_index], var, src, indent + "    ")
        add(f"{indent}else:")
        add(f"{indent}    raise NotRead('union index')")
        return
    if not isinstance(schema, dict):
        raise UnsupportedSchema(str(schema)[:80])
    kind, logical = schema.get("type"), schema.get("logicalType")
    if kind == "long" and logical == "timestamp-millis":
        _varint(var, False, src, indent)
        add(f"{indent}{var} = _EPOCH + timedelta(0, 0, 0, {var})  # milliseconds, as fastavro reads them")
        return
    if kind == "int" and logical == "date":
        _varint(var, True, src, indent)
        add(f"{indent}d = _DAYS.get({var})")
        add(f"{indent}{var} = _day({var}) if d is None else d")
        return
    if kind == "enum":
        if len(schema["symbols"]) > 63:
            raise UnsupportedSchema("enum of more than 63 symbols")  # an index of two bytes
        symbols = src.bind("symbols", tuple(schema["symbols"]))
        add(f"{indent}k = b[i] >> 1")
        add(f"{indent}if b[i] & 0x81 or k >= {len(schema['symbols'])}:")
        add(f"{indent}    raise NotRead('enum index')")
        add(f"{indent}{var} = {symbols}[k]")
        add(f"{indent}i += 1")
        return
    if kind == "array" and schema.get("items") == "string":
        add(f"{indent}{var}, i = _string_array(b, i)")
        return
    raise UnsupportedSchema(str(schema)[:80])


def reader_source(schema: Mapping[str, Any], appended: Sequence[Any] = ()) -> tuple[str, dict[str, Any]]:
    """The source of the reader of a record schema (JSON as in the .avsc), and the names it refers to;
    `appended` values follow the fields read (the defaults of a later version's fields, `resolving_reader`)."""
    if schema.get("type") != "record":
        raise UnsupportedSchema("not a record")
    src = _Source()
    for n, field in enumerate(schema["fields"]):
        _value(field["type"], f"f{n}", src, "        ")
    body = "\n".join(src.lines)
    record = "".join(f"f{n}, " for n in range(len(schema["fields"])))
    record += "".join(f"{src.bind('default', value)}, " for value in appended)
    text = (
        "def read(b, i):\n"
        "    size = len(b)\n"
        "    try:\n"
        f"{body}\n"
        "    except (IndexError, UnicodeDecodeError, OverflowError, ValueError) as exc:\n"
        "        raise NotRead(str(exc)) from None\n"
        f"    return ({record}), i\n"
    )
    return text, src.names


def record_reader(schema: Mapping[str, Any]) -> Read:
    """The generated reader of a record schema: (value, offset) → (field values, offset after it);
    raises `NotRead` for a value to read with fastavro instead."""
    text, names = reader_source(schema)
    namespace = dict(names)
    exec(compile(text, f"<avro reader {schema.get('name')}>", "exec"), namespace)  # noqa: S102 - our own source
    read: Read = namespace["read"]
    return read


def resolving_reader(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> Read:
    """The generated reader of values written with `writer`, an earlier version of record schema `reader`
    (JSON as in the .avsc): it returns `reader`'s field values, those `writer` lacks as their defaults.

    Covered: `writer`'s fields are `reader`'s first ones, by name and in order, each read as itself (the
    same type, docs aside; an enum may have gained symbols after `writer`'s), and every later field of
    `reader` has a default of null, a boolean, an int or long, a string or an enum symbol. That is how the
    contract's versions grow, and then the record is exactly the one fastavro's schema resolution makes.
    Anything else raises UnsupportedSchema (fastavro resolves it).
    """
    if reader.get("type") != "record" or writer.get("type") != "record":
        raise UnsupportedSchema("not a record")
    ours, theirs = reader["fields"], writer["fields"]
    if len(theirs) > len(ours):
        raise UnsupportedSchema("the writer has fields the reader lacks")
    for mine, written in zip(ours, theirs, strict=False):
        if mine["name"] != written["name"] or not _reads_as_itself(mine["type"], written["type"]):
            raise UnsupportedSchema(f"field {written['name']!r} is not read as written")
    text, names = reader_source(writer, [_default(field) for field in ours[len(theirs) :]])
    namespace = dict(names)
    exec(compile(text, f"<avro reader {writer.get('name')}>", "exec"), namespace)  # noqa: S102 - our own source
    read: Read = namespace["read"]
    return read


def _undocumented(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _undocumented(v) for k, v in schema.items() if k != "doc"}
    if isinstance(schema, list):
        return [_undocumented(s) for s in schema]
    return schema


def _reads_as_itself(reader: Any, writer: Any) -> bool:
    """Whether a value written with `writer` is read by `reader` as the same Python value."""
    if isinstance(reader, list) and isinstance(writer, list):
        return len(reader) == len(writer) and all(map(_reads_as_itself, reader, writer))
    if isinstance(reader, dict) and isinstance(writer, dict) and reader.get("type") == writer.get("type") == "enum":
        # fastavro resolves a symbol by name: one the reader also has is read as it was written
        return reader.get("name") == writer.get("name") and set(writer["symbols"]) <= set(reader["symbols"])
    return bool(_undocumented(reader) == _undocumented(writer))


_PLAIN_DEFAULTS: dict[str, type] = {"boolean": bool, "int": int, "long": int, "string": str}


def _default(field: Mapping[str, Any]) -> Any:
    """A field's default as fastavro returns it for a record that lacks the field: null (of a union with null
    first), a boolean, an int or long, a string or an enum symbol; other defaults are not covered."""
    if "default" not in field:
        raise UnsupportedSchema(f"field {field['name']!r} has no default")
    value, kind = field["default"], field["type"]
    if isinstance(kind, dict) and "logicalType" not in kind and kind.get("type") in _PLAIN_DEFAULTS:
        kind = kind["type"]
    if value is None and isinstance(kind, list) and kind[:1] == ["null"]:
        return None
    if isinstance(kind, str) and type(value) is _PLAIN_DEFAULTS.get(kind):
        return value
    if isinstance(kind, dict) and kind.get("type") == "enum" and value in kind["symbols"]:
        return value
    raise UnsupportedSchema(f"default of field {field['name']!r}")


def field_names(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of a record's fields, in the order of the values a generated reader returns."""
    return tuple(f["name"] for f in schema["fields"])
