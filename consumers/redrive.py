"""Reading the dead-letter topic for `multichannel dead-letters`: committed dead letters (`read_committed`,
partitions assigned, never a group member), the re-drive group's committed offsets and metadata, the audit
of what was re-driven, and the decoding of a dead letter's value to the contract's JSON form."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import orjson
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition

from config.errors import CommandError, access_refusal
from config.registry import registry_client
from config.settings import Settings
from consumers.messages import offset_of, partition_of
from consumers.serde import Decoder, TopicKind, check_key, event_decoder
from multichannel.errors import InvalidEvent, SchemaMismatch
from multichannel.parse import parse_event
from multichannel.redrive import DeadLetterRecord, parse_audit_key


class ReadFailed(CommandError):
    """The dead-letter or audit topic, or the re-drive group's offsets, could not be read."""

    reason = "READ_FAILED"


Progress = Callable[[int], None]
"""Told how many offsets a read has passed since it was last told."""


class TopicReader:
    """Reads committed records of one topic, partitions assigned; `group` names the consumer group whose
    committed offsets and metadata the reader gives (a fresh name when None; nothing is ever committed here)."""

    def __init__(self, settings: Settings, topic: str, group: str | None = None) -> None:
        self.settings, self.topic = settings, topic
        self.group = group or f"multichannel-dead-letters-{uuid.uuid4().hex[:8]}"
        self._consumer = Consumer(
            {
                **settings.kafka_client_config(),
                "group.id": self.group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )

    def exists(self, topic: str) -> bool:
        meta = self._consumer.list_topics(topic, timeout=15).topics[topic]
        return meta.error is None or meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART

    def partitions(self) -> list[int]:
        meta = self._consumer.list_topics(self.topic, timeout=15).topics[self.topic]
        if meta.error is not None and meta.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return []
        if meta.error is not None:
            self._refused(meta.error, f"DESCRIBE on topic {self.topic}")
            raise ReadFailed(f"topic {self.topic}: {meta.error.str()}")
        return sorted(meta.partitions)

    def watermarks(self, partition: int) -> tuple[int, int]:
        low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=15)
        return int(low), int(high)

    def committed(self, partitions: list[int]) -> dict[int, int | None]:
        """The group's committed offset of each partition; None where it has committed none."""
        deadline = time.monotonic() + 60
        while True:
            try:
                found = self._consumer.committed([TopicPartition(self.topic, p) for p in partitions], timeout=30)
                break
            except KafkaException as exc:  # a group coordinator still loading, or moving: asked again
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None:
                    self._refused(err, f"DESCRIBE on group {self.group}")
                if err is None or not err.retriable() or time.monotonic() > deadline:
                    raise ReadFailed(f"the committed offsets of group {self.group}: {err or exc}") from None
                time.sleep(0.2)  # backoff before asking the coordinator again
        return {tp.partition: (None if tp.offset == OFFSET_INVALID or tp.offset < 0 else tp.offset) for tp in found}

    def offsets_for_time(self, partitions: list[int], since_ms: int) -> dict[int, int]:
        """The first offset of each partition whose record is at or after `since_ms` (the high watermark if none)."""
        asked = [TopicPartition(self.topic, p, since_ms) for p in partitions]
        out: dict[int, int] = {}
        for tp in self._consumer.offsets_for_times(asked, timeout=30):
            out[tp.partition] = tp.offset if tp.offset >= 0 else self.watermarks(tp.partition)[1]
        return out

    def group_metadata(self) -> Any:
        """The group's metadata for `send_offsets_to_transaction` (an assigned reader, not a member)."""
        return self._consumer.consumer_group_metadata()

    def read(self, windows: dict[int, tuple[int, int]], progress: Progress | None = None) -> Iterator[Message]:
        """The committed records of each partition from `start` to `end` (exclusive), partition by partition
        interleaved as they arrive, each partition's in offset order."""
        pending = {p: se for p, se in windows.items() if se[0] < se[1]}
        if not pending:
            return
        position = {p: start for p, (start, _end) in pending.items()}
        self._consumer.assign([TopicPartition(self.topic, p, start) for p, (start, _end) in sorted(pending.items())])
        try:
            while pending:
                for msg in self._consumer.consume(500, timeout=1.0):
                    err = msg.error()
                    p = msg.partition()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF and p in pending:
                            self._advance(progress, position, p, pending[p][1])
                            del pending[p]
                            continue
                        self._refused(err, f"READ on topic {self.topic}")
                        if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                            raise ReadFailed(f"reading {self.topic}: {err.str()}")
                        continue
                    partition = partition_of(msg)
                    if partition not in pending:
                        continue
                    end = pending[partition][1]
                    offset = offset_of(msg)
                    if offset >= end:
                        self._advance(progress, position, partition, end)
                        del pending[partition]
                        continue
                    self._advance(progress, position, partition, offset + 1)
                    yield msg
                    if offset + 1 >= end:
                        del pending[partition]
        finally:
            self._consumer.unassign()

    @staticmethod
    def _advance(progress: Progress | None, position: dict[int, int], partition: int, to: int) -> None:
        if progress is not None and to > position[partition]:
            progress(to - position[partition])
        position[partition] = max(position[partition], to)

    def _refused(self, err: KafkaError, denied: str) -> None:
        refused = access_refusal(err, user=self.settings.sasl_username, doing="reading dead letters", denied=denied)
        if refused is not None:
            raise refused

    def close(self) -> None:
        self._consumer.close()


def dead_letter_record(msg: Message) -> DeadLetterRecord:
    """A consumed dead letter as the core's record."""
    ts_type, ts = msg.timestamp()
    raw = msg.headers()
    pairs: Any = raw.items() if isinstance(raw, dict) else (raw or [])
    headers = tuple((str(k), v if isinstance(v, bytes | None) else str(v).encode()) for k, v in pairs)
    return DeadLetterRecord(partition_of(msg), offset_of(msg), ts if ts_type else -1, msg.key(), msg.value(), headers)


def redriven_dead_letters(settings: Settings, audit_topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of every dead letter of the settings' dead-letter topic that the audit says was
    re-driven (committed audit entries only)."""
    reader = TopicReader(settings, audit_topic)
    try:
        windows = {p: reader.watermarks(p) for p in reader.partitions()}
        found: set[tuple[int, int]] = set()
        for msg in reader.read(windows):
            key = parse_audit_key((msg.key() or b"").decode("utf-8", "replace"))
            if key is not None and key[0] == settings.dead_letter_topic and msg.value() is not None:
                found.add((key[1], key[2]))
        return found
    finally:
        reader.close()


class DeadLetterDecoder:
    """Decodes a dead letter's value as an event of its source topic, checked as the service checks it."""

    def __init__(self, settings: Settings) -> None:
        client = registry_client(settings)
        self._decoders: dict[str, tuple[TopicKind, Decoder]] = {
            settings.subscription_topic: ("subscription", event_decoder(client, "subscription")),
            settings.partner_topic: ("partner", event_decoder(client, "partner")),
        }

    def decode(self, record: DeadLetterRecord) -> tuple[dict[str, Any] | None, InvalidEvent | None]:
        """(the event with absent fields left out, None) when it is valid now; (the event, the check it
        still fails) when it decodes; (None, why) when its value is not a record of the source topic."""
        found = self._decoders.get(record.source_topic)
        if found is None:
            why = f"source topic {record.source_topic!r} is neither input topic of these settings"
            return None, SchemaMismatch(why)
        kind, decoder = found
        item = decoder.decode_values([record.value])[0]
        if isinstance(item, InvalidEvent):
            return None, item
        event = {k: v for k, v in item.items() if v is not None}
        try:
            check_key(kind, record.key, parse_event(event))
        except InvalidEvent as exc:
            return event, exc
        return event, None


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        text = value.isoformat()
        return (text[:23] if value.microsecond else text[:19]) + "Z"
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def to_json(obj: Any) -> bytes:
    """A JSON line with the contract's timestamp (`2026-03-01T09:30:00Z`) and date forms."""
    return orjson.dumps(obj, default=_json_value, option=orjson.OPT_PASSTHROUGH_DATETIME)
