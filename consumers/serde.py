"""The service's Avro serde: batch decoding of input events, key checks, and output encoders.

Decoding never raises for a bad record: each value becomes either a dict with the contract's
field names (datetimes and dates as Python objects, enums as str, absent fields as None), ready
for `multichannel.parse.parse_event`, or the `InvalidEvent` to dead-letter. Only an unanswering
registry raises (`RegistryUnavailableError`), so the service retries the batch instead of
dead-lettering good records. Writer schemas are fetched by id once and resolved to our reader
schema, so records of older and newer producers decode alike. Values written with our own schema
(the normal case), or with an earlier version that our schema only appends fields with defaults to
(a version-1 producer's), are read by a reader generated for it (`schemas.reader`), which leaves any
value it does not read plainly to fastavro, so the errors stay fastavro's.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from fastavro import schemaless_reader

from multichannel.errors import InvalidEvent, KeyMismatch, SchemaMismatch
from multichannel.model import Event
from schemas import (
    ACCOUNT_STATE,
    CUSTOMER_STATUS,
    PARTNER_EVENT,
    SUBSCRIPTION_DECISION,
    SUBSCRIPTION_EVENT,
    SchemaName,
    parse,
    parsed_schema,
    schema_str,
    subject_for,
)
from schemas.reader import NotRead, Read, UnsupportedSchema, field_names, record_reader, resolving_reader
from schemas.wire import (
    HEADER_SIZE,
    MAGIC_BYTE,
    RecordEncoder,
    RegistryUnavailableError,
    SchemaNotRegisteredError,
    unpack_schema_id,
    writer_schema_text,
)

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = [
    "Decoder",
    "OutputEncoders",
    "RecordEncoder",
    "RegistryUnavailableError",
    "SchemaNotRegisteredError",
    "TopicKind",
    "check_key",
    "event_decoder",
    "topic_schemas",
]

TopicKind = Literal["subscription", "partner"]

_EVENT_SCHEMAS: Final[dict[TopicKind, SchemaName]] = {"subscription": SUBSCRIPTION_EVENT, "partner": PARTNER_EVENT}
_KEY_FIELDS: Final[dict[TopicKind, str]] = {"subscription": "customer_id", "partner": "partner_id"}
_UNKNOWN_ID_TTL_S: Final = 60.0
_UNREADABLE_IDS_KEPT: Final = 10_000
"""Unreadable schema ids remembered at most: records with random ids must not grow memory without bound."""
_read: Final[Callable[..., Any]] = schemaless_reader  # our reader schemas are records: it returns a dict


class _MessageLike(Protocol):
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


Record = tuple[bytes | None, bytes | None] | _MessageLike
"""(key, value) or a confluent_kafka Message."""

Decoded = dict[str, Any] | InvalidEvent


def topic_schemas(settings: Settings) -> dict[str, SchemaName]:
    """Topic → schema of its values, for every topic with Avro values (the dead-letter topic has raw bytes)."""
    return {
        settings.subscription_topic: SUBSCRIPTION_EVENT,
        settings.partner_topic: PARTNER_EVENT,
        settings.decision_topic: SUBSCRIPTION_DECISION,
        settings.status_topic: CUSTOMER_STATUS,
        settings.changelog_topic: ACCOUNT_STATE,
    }


class Decoder:
    """Decodes Confluent-framed values of one reader schema, a whole batch at a time."""

    def __init__(self, client: SchemaRegistryClient, schema_name: SchemaName) -> None:
        self.schema_name = schema_name
        self._client = client
        self._reader = parsed_schema(schema_name)
        own_schema = json.loads(schema_str(schema_name))
        self._own_schema = own_schema
        try:
            own: Read | None = record_reader(own_schema)
        except UnsupportedSchema:
            own = None
        self._own_reader = own
        self._names = field_names(own_schema)
        # schema id → the generated reader of our schema, for ids whose writer schema is ours
        self._generated: dict[int, Read] = {}
        # schema id → (writer schema, reader schema or None when the writer is ours)
        self._resolved: dict[int, tuple[dict[str, Any], dict[str, Any] | None]] = {}
        # schema id → (why it cannot be read, monotonic time it was learned); 404s are asked again after a TTL
        self._unreadable: dict[int, tuple[str, float]] = {}

    def _resolve(self, schema_id: int) -> tuple[dict[str, Any], dict[str, Any] | None] | str:
        """The schemas to read `schema_id` with, or why it cannot be read. Raises RegistryUnavailableError."""
        known = self._unreadable.get(schema_id)
        if known is not None and time.monotonic() - known[1] < _UNKNOWN_ID_TTL_S:
            return known[0]
        try:
            text = writer_schema_text(self._client, schema_id)
            writer = parse(text)
        except RegistryUnavailableError:
            raise
        except SchemaRegistryError as exc:  # only a 404 gets here (registry_call)
            return self._remember_unreadable(schema_id, f"unknown schema id {schema_id} ({exc.error_message})")
        except Exception as exc:  # not Avro, or a schema fastavro cannot parse: no record of it is readable
            return self._remember_unreadable(schema_id, f"schema id {schema_id} is unusable: {exc}")
        pair = (writer, None if writer == self._reader else self._reader)
        self._resolved[schema_id] = pair
        if self._own_reader is not None:
            if pair[1] is None:
                self._generated[schema_id] = self._own_reader
            else:  # an earlier version of our schema (a version-1 producer's) is read as fast, with our defaults
                with contextlib.suppress(UnsupportedSchema):
                    self._generated[schema_id] = resolving_reader(self._own_schema, json.loads(text))
        self._unreadable.pop(schema_id, None)
        return pair

    def _remember_unreadable(self, schema_id: int, why: str) -> str:
        self._unreadable.pop(schema_id, None)
        if len(self._unreadable) >= _UNREADABLE_IDS_KEPT:
            del self._unreadable[next(iter(self._unreadable))]  # the oldest: dicts keep insertion order
        self._unreadable[schema_id] = (why, time.monotonic())
        return why

    def decode_values(self, values: Sequence[bytes | None]) -> list[Decoded]:
        """One result per value, in order: the decoded dict or the SchemaMismatch to dead-letter."""
        return self.decode_built(values, None)  # type: ignore[return-value]  # without `build`, no event

    def decode_built(
        self, values: Sequence[bytes | None], build: Callable[[tuple[Any, ...]], Event | None] | None
    ) -> list[Event | Decoded]:
        """`decode_values`, except that a value read by the generated reader (`schemas.reader`) is
        passed, as its field values, to `build`: what it returns stands for the dict, and None means
        "the dict, please" (`build` declined the record, as `typed_subscription_event` declines a
        record that fails a check, for the parser to say why)."""
        out: list[Event | Decoded] = []
        append = out.append
        resolved, generated, names = self._resolved, self._generated, self._names
        for value in values:
            if value is None or len(value) <= HEADER_SIZE:
                append(
                    SchemaMismatch(f"value of {0 if value is None else len(value)} bytes is not Confluent-framed Avro")
                )
                continue
            if value[0] != MAGIC_BYTE:
                append(SchemaMismatch(f"magic byte {value[0]} is not {MAGIC_BYTE}: not Confluent-framed Avro"))
                continue
            schema_id = unpack_schema_id(value, 1)[0]
            pair = resolved.get(schema_id)
            if pair is None:
                found = self._resolve(schema_id)
                if isinstance(found, str):
                    append(SchemaMismatch(found))
                    continue
                pair = found
            read = generated.get(schema_id)
            if read is not None:
                try:
                    fields, end = read(value, HEADER_SIZE)
                except NotRead:
                    pass  # fastavro reads it below, and says what is wrong with it
                else:
                    if end == len(value):
                        built = None if build is None else build(fields)
                        append(dict(zip(names, fields, strict=True)) if built is None else built)
                        continue
            buf = io.BytesIO(value)
            buf.seek(HEADER_SIZE)
            try:
                record = _read(buf, pair[0], pair[1])
            except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ... on bad bytes
                why = "it ends early" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {exc}"
                append(SchemaMismatch(f"body does not match schema id {schema_id}: {why}"))
                continue
            if buf.tell() != len(value):
                append(
                    SchemaMismatch(f"{len(value) - buf.tell()} bytes left after the record of schema id {schema_id}")
                )
                continue
            append(record)
        return out

    def decode_batch(self, records: Sequence[Record]) -> list[Decoded]:
        """`decode_values` for (key, value) pairs or confluent_kafka Messages."""
        return self.decode_values([r[1] if isinstance(r, tuple) else r.value() for r in records])

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """One value; raises SchemaMismatch instead of returning it."""
        result = self.decode_values([value])[0]
        if isinstance(result, InvalidEvent):
            raise result
        return result


def event_decoder(client: SchemaRegistryClient, kind: TopicKind) -> Decoder:
    """The decoder of an input topic."""
    return Decoder(client, _EVENT_SCHEMAS[kind])


def check_key(kind: TopicKind, key: bytes | str | None, event: Mapping[str, Any] | object) -> None:
    """Raise KeyMismatch unless the record key is the payload's customer_id (partner topic: partner_id).

    `event` is the decoded dict or the parsed event; call this after `parse_event`, so that a
    missing id is reported as INVALID_FIELD, not as a key mismatch.
    """
    field = _KEY_FIELDS[kind]
    expected = event.get(field) if isinstance(event, Mapping) else getattr(event, field, None)
    if isinstance(key, bytes):
        try:
            key = key.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyMismatch(f"record key {key!r} is not UTF-8 (payload {field} {expected!r})") from None
    if key != expected:
        raise KeyMismatch(f"record key {key!r} differs from the payload's {field} {expected!r}")


@dataclass(frozen=True, slots=True)
class OutputEncoders:
    """The service's encoders: decisions, customer status and the state changelog (dead letters stay raw bytes)."""

    decision: RecordEncoder
    status: RecordEncoder
    changelog: RecordEncoder

    @classmethod
    def for_settings(
        cls, settings: Settings, client: SchemaRegistryClient, *, auto_register: bool = False
    ) -> OutputEncoders:
        """Resolve the three schema ids once (raises SchemaNotRegisteredError or RegistryUnavailableError)."""

        def encoder(schema_name: SchemaName, topic: str) -> RecordEncoder:
            return RecordEncoder.registered(client, schema_name, subject_for(topic), auto_register=auto_register)

        return cls(
            decision=encoder(SUBSCRIPTION_DECISION, settings.decision_topic),
            status=encoder(CUSTOMER_STATUS, settings.status_topic),
            changelog=encoder(ACCOUNT_STATE, settings.changelog_topic),
        )
