"""Avro schema-resolution check that names the field that breaks compatibility.

The registry decides compatibility, but its answer through the Confluent API is a bare yes/no
(the Python client drops any messages) or a message that does not always name the field. This
restates the Avro specification's resolution rules (reader vs writer) to say *which* field breaks
and how, so `multichannel schemas check` can print it.
"""

from __future__ import annotations

import json
from typing import Any, Final

import fastavro

_PROMOTIONS: Final[dict[str, frozenset[str]]] = {
    # writer type → reader types that can read it (Avro spec, "Schema Resolution")
    "int": frozenset({"int", "long", "float", "double"}),
    "long": frozenset({"long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "string": frozenset({"string", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
}
_NAMED: Final = frozenset({"record", "enum", "fixed", "error"})
LEVELS: Final = ("NONE", "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE")


def _parse(text: str) -> tuple[Any, dict[str, Any]]:
    named: dict[str, Any] = {}
    return fastavro.parse_schema(json.loads(text), named_schemas=named, _write_hint=False), named


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(s) for s in schema) + "]"
    if isinstance(schema, dict):
        kind = schema["type"]
        if kind in _NAMED:
            return f"{kind} {_short(schema['name'])}"
        if kind == "array":
            return f"array<{_describe(schema['items'])}>"
        if kind == "map":
            return f"map<{_describe(schema['values'])}>"
        return str(schema.get("logicalType", kind))
    return _short(str(schema))


class _Checker:
    def __init__(self, reader_named: dict[str, Any], writer_named: dict[str, Any], reader: str, writer: str) -> None:
        self.reader_named, self.writer_named = reader_named, writer_named
        self.reader, self.writer = reader, writer  # labels, e.g. "the local schema", "registered version 3"
        self._seen: set[tuple[str, str]] = set()

    @staticmethod
    def _deref(schema: Any, named: dict[str, Any]) -> Any:
        """A named type's definition for its name; a primitive's name for its dict form (logical types are ignored
        in resolution, as the registries do)."""
        if isinstance(schema, str):
            return named.get(schema, schema)
        if isinstance(schema, dict) and schema["type"] not in _NAMED | {"array", "map"}:
            return schema["type"]
        return schema

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        as_read, as_written = reader, writer  # for messages: logical types by name
        reader, writer = self._deref(reader, self.reader_named), self._deref(writer, self.writer_named)
        if isinstance(writer, list):
            problems: list[str] = []
            for branch in writer:
                problems += self.check(reader, branch, path)
            return problems
        if isinstance(reader, list):
            # The branch of the same type (by name for named types) decides, so its own problem is reported;
            # otherwise any branch that can read the writer's type by promotion will do.
            kind = _kind(writer)
            same = [b for b in reader if _kind(self._deref(b, self.reader_named)) == kind]
            if same:
                return self.check(same[0], as_written, path)
            if any(not self.check(branch, as_written, path) for branch in reader):
                return []
            return [
                f"{path}: {self.writer} writes {_describe(as_written)}, which {self.reader} cannot read as "
                f"{_describe(as_read)}"
            ]
        r_kind = reader["type"] if isinstance(reader, dict) else reader
        w_kind = writer["type"] if isinstance(writer, dict) else writer
        if isinstance(writer, str) and isinstance(reader, str) and r_kind in _PROMOTIONS.get(w_kind, {w_kind}):
            return []
        if r_kind != w_kind or isinstance(writer, str):
            was, now = _describe(as_written), _describe(as_read)
            return [f"{path}: type changed from {was} ({self.writer}) to {now} ({self.reader})"]
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        if not _names_match(reader, writer):
            return [f"{path}: {r_kind} renamed from {_short(writer['name'])} to {_short(reader['name'])}"]
        if r_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{path}: enum {_short(reader['name'])} of {self.reader} lacks {missing} and has no default"]
            return []
        if r_kind == "fixed":
            if reader["size"] != writer["size"]:
                return [f"{path}: fixed size changed from {writer['size']} to {reader['size']}"]
            return []
        return self._record(reader, writer, path)

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
        key = (reader["name"], writer["name"])
        if key in self._seen:  # recursive type: already being checked
            return []
        self._seen.add(key)
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems: list[str] = []
        prefix = f"{path}." if path else ""
        for field in reader["fields"]:
            name = field["name"]
            found = next(
                (writer_fields[n] for n in (name, *field.get("aliases", ())) if n in writer_fields),
                None,
            )
            where = f"{prefix}{name}"
            if found is None:
                if "default" not in field:
                    problems.append(
                        f"{where}: field '{name}' is in {self.reader} but not in {self.writer} and has no default"
                    )
                continue
            problems += self.check(field["type"], found["type"], where)
        return problems


def _kind(schema: Any) -> str:
    """A type's identity for picking a union branch: its full name for named types, else its type."""
    if isinstance(schema, dict):
        return str(schema["name"] if schema["type"] in _NAMED else schema["type"])
    return str(schema)


def _names_match(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    names = {reader["name"], *reader.get("aliases", ())}
    return writer["name"] in names or _short(writer["name"]) in {_short(n) for n in names}


def can_read(reader_text: str, writer_text: str, *, reader: str = "reader", writer: str = "writer") -> list[str]:
    """Why records written with `writer_text` cannot be read with `reader_text`; empty when they can."""
    reader_schema, reader_named = _parse(reader_text)
    writer_schema, writer_named = _parse(writer_text)
    root = _short(reader_schema["name"]) if isinstance(reader_schema, dict) and "name" in reader_schema else ""
    return _Checker(reader_named, writer_named, reader, writer).check(reader_schema, writer_schema, root)


def incompatibilities(new_text: str, old_text: str, level: str, *, new: str = "new", old: str = "old") -> list[str]:
    """Why `new_text` may not follow `old_text` under a registry compatibility level; empty when it may.

    BACKWARD: the new schema reads old records. FORWARD: the old schema reads new records.
    FULL: both. The *_TRANSITIVE levels are checked against the one version given.
    """
    level = level.upper().removesuffix("_TRANSITIVE")
    problems: list[str] = []
    if level in ("BACKWARD", "FULL"):
        problems += can_read(new_text, old_text, reader=new, writer=old)
    if level in ("FORWARD", "FULL"):
        problems += can_read(old_text, new_text, reader=old, writer=new)
    return problems
