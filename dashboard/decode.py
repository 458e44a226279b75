"""Avro values of the output topics (Confluent framing) to dicts, or None for a value that is not one.

The writer schema of each id is fetched from the registry once and resolved to our reader schema.
Unlike the service's decoder, nothing here is dead-lettered or retried: the view counts what it
cannot read and skips it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import schemaless_reader

from schemas import SchemaName, parse, parsed_schema
from schemas.wire import HEADER_SIZE, MAGIC_BYTE, RegistryUnavailableError, unpack_schema_id, writer_schema_text

_read: Final[Callable[..., Any]] = schemaless_reader


class OutputDecoder:
    """Decodes values of one reader schema; a registry that does not answer raises RegistryUnavailableError."""

    def __init__(self, client: SchemaRegistryClient, schema_name: SchemaName) -> None:
        self._client = client
        self._reader = parsed_schema(schema_name)
        self._writers: dict[int, dict[str, Any] | None] = {}

    def decode(self, value: bytes | None) -> dict[str, Any] | None:
        if value is None or len(value) <= HEADER_SIZE or value[0] != MAGIC_BYTE:
            return None
        schema_id = unpack_schema_id(value, 1)[0]
        if schema_id not in self._writers:
            self._writers[schema_id] = self._writer(schema_id)
        writer = self._writers[schema_id]
        if writer is None:
            return None
        buf = io.BytesIO(value)
        buf.seek(HEADER_SIZE)
        try:
            record = _read(buf, writer, self._reader)
        except Exception:  # fastavro raises EOFError, ValueError, IndexError, ... on bad bytes
            return None
        return record if isinstance(record, dict) and buf.tell() == len(value) else None

    def _writer(self, schema_id: int) -> dict[str, Any] | None:
        try:
            return parse(writer_schema_text(self._client, schema_id))
        except RegistryUnavailableError:
            raise
        except Exception:  # unknown id (404), not Avro, or unparsable: no record of it is readable
            return None
