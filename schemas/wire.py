"""Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body) shared by every serde.

Both the service (decisions, status, changelog) and the publishers (input events) encode through
`RecordEncoder`; consumers decode in `consumers.serde`. Registry failures are split in two: a
definite answer about a record (unknown schema id) is the record's fault, anything else
(unreachable, 5xx, auth) is `RegistryUnavailableError`, an infrastructure error the caller retries.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

# The HTTP library the registry client itself uses (httpx2, or httpx as a fallback).
from confluent_kafka.schema_registry.common._httpx_compat import httpx as _httpx
from fastavro import schemaless_writer

from schemas import SchemaName, parse, parsed_schema, schema_str
from schemas.writer import UnsupportedSchema, Write, record_writer

T = TypeVar("T")

MAGIC_BYTE: Final = 0
HEADER_SIZE: Final = 5
_HEADER: Final = struct.Struct(">bI")
unpack_schema_id: Final[Callable[[bytes, int], tuple[int]]] = struct.Struct(">I").unpack_from
"""`unpack_schema_id(value, 1)[0]`: the schema id of a framed value (caller checks length and magic)."""


class RegistryUnavailableError(Exception):
    """The Schema Registry could not answer (unreachable, 5xx, refused credentials): retry, never dead-letter."""


class SchemaNotRegisteredError(Exception):
    """Our local schema is not (or cannot be) registered under its subject: run `multichannel schemas register`."""


def header(schema_id: int) -> bytes:
    """The 5-byte prefix of every value written with `schema_id`."""
    return _HEADER.pack(MAGIC_BYTE, schema_id)


@contextmanager
def registry_call(what: str, answers: tuple[int, ...] = (404,)) -> Iterator[None]:
    """Turn transport errors and registry errors into `RegistryUnavailableError`, except the HTTP statuses in `answers`.

    Those are the registry's definite answers (404: no such schema), which the caller handles.
    """
    try:
        yield
    except SchemaRegistryError as exc:
        if exc.http_status_code in answers:
            raise
        raise RegistryUnavailableError(f"{what}: {exc}") from exc
    except (_httpx.TransportError, OSError) as exc:
        raise RegistryUnavailableError(f"{what}: {type(exc).__name__}: {exc}") from exc


def same_schema(a: str, b: str) -> bool:
    """Whether two schema texts parse to the same schema (registries may reformat the JSON)."""
    try:
        return parse(a) == parse(b)
    except (ValueError, TypeError, KeyError):
        return False


def resolve_schema_id(client: SchemaRegistryClient, subject: str, text: str, *, auto_register: bool = False) -> int:
    """The id under which `text` is registered in `subject`, asked once per encoder.

    The latest version is asked first (one GET, the usual case) and used only if it is exactly
    our schema: writing our bytes under a newer or older schema's id would corrupt every record.
    Otherwise the registry is asked for our schema among all versions, and registered if allowed.
    """
    schema = Schema(text, "AVRO")
    try:
        with registry_call(f"looking up subject {subject}"):
            latest = client.get_latest_version(subject)
            if latest.schema_id is not None and same_schema(latest.schema.schema_str or "", text):
                return int(latest.schema_id)
            found = client.lookup_schema(subject, schema).schema_id
            if found is not None:
                return int(found)
    except SchemaRegistryError:  # 404: the subject, or our schema in it, is not registered
        pass
    if not auto_register:
        raise SchemaNotRegisteredError(
            f"the local schema is not registered under subject {subject}; run `multichannel schemas register`"
        )
    try:
        with registry_call(f"registering subject {subject}", answers=(409, 422)):
            return int(client.register_schema(subject, schema))
    except SchemaRegistryError as exc:  # incompatible with the registered versions, or invalid
        raise SchemaNotRegisteredError(f"registering subject {subject}: {exc}") from exc


class RecordEncoder:
    """Encodes dicts of one schema under one registered schema id: fixed header + fastavro body.

    Nothing is parsed or looked up per call; the schema id is resolved once in `registered`.
    """

    __slots__ = ("_header", "_schema", "_write", "schema_id", "schema_name", "subject")

    def __init__(
        self, schema_name: SchemaName, subject: str, schema_id: int, *, writer: dict[str, Any] | None = None
    ) -> None:
        """`writer`: another version of the schema to write with (tests of evolution); default the local one."""
        self.schema_name = schema_name
        self.subject = subject
        self.schema_id = schema_id
        self._header = header(schema_id)
        self._schema = parsed_schema(schema_name) if writer is None else writer
        self._write: Write | None = None
        if writer is None:
            try:
                self._write = record_writer(json.loads(schema_str(schema_name)), prefix=self._header)
            except UnsupportedSchema:
                self._write = None

    @classmethod
    def registered(
        cls, client: SchemaRegistryClient, schema_name: SchemaName, subject: str, *, auto_register: bool = False
    ) -> RecordEncoder:
        """An encoder whose id comes from the registry (registering the schema if `auto_register`)."""
        schema_id = resolve_schema_id(client, subject, schema_str(schema_name), auto_register=auto_register)
        return cls(schema_name, subject, schema_id)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """One framed value; raises fastavro's ValueError/TypeError when the record does not fit the schema."""
        buf = io.BytesIO()
        buf.write(self._header)
        schemaless_writer(buf, self._schema, record)
        return buf.getvalue()

    def object_writer(self, as_dict: Callable[[T], Mapping[str, Any]]) -> Callable[[T], bytes]:
        """The function of an object whose attributes are the schema's fields to its framed value: the
        writer generated for the schema (`schemas.writer`, framing included), called with no layer in
        between; where the schema has a construct that writer does not cover, fastavro's, on `as_dict`
        of the object."""
        write = self._write
        if write is None:
            return lambda obj: self.encode(as_dict(obj))
        return write

    def encode_batch(self, records: Iterable[Mapping[str, Any]]) -> list[bytes]:
        """Framed values in order, reusing one buffer for the whole batch."""
        buf = io.BytesIO()
        schema, head = self._schema, self._header
        out: list[bytes] = []
        append = out.append
        for record in records:
            buf.seek(0)
            buf.truncate()
            buf.write(head)
            schemaless_writer(buf, schema, record)
            append(buf.getvalue())
        return out


def writer_schema_text(client: SchemaRegistryClient, schema_id: int) -> str:
    """The text of a registered Avro schema by id (SchemaRegistryError 404 if unknown, ValueError if not Avro)."""
    with registry_call(f"fetching schema id {schema_id}"):
        schema = client.get_schema(schema_id)
    if schema.schema_type not in (None, "AVRO"):
        raise ValueError(f"schema id {schema_id} is a {schema.schema_type} schema, not Avro")
    if schema.schema_str is None:
        raise ValueError(f"schema id {schema_id} has no schema text")
    text: str = schema.schema_str
    json.loads(text)
    return text
