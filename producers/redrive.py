"""Re-driving dead letters exactly once: each transaction re-produces a batch of dead letters to their
topics (unchanged, or as edited events validated and encoded by the publisher, as `multichannel produce`
does), writes one audit entry per dead letter and commits the re-drive group's offsets on the dead-letter
topic (`send_offsets_to_transaction`). A crash in the middle leaves an open transaction that the next
run's `init_transactions` (same transactional id) aborts, so nothing of it is ever seen by a
`read_committed` reader (the service); the committed audit then says what is done.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from config.errors import CommandError, access_refusal
from config.settings import Settings
from multichannel.redrive import DeadLetterRecord, audit_entry, audit_key
from producers.publisher import DeliveryFailed, EventPublisher, Headers


class RedriveFailed(CommandError):
    """A re-drive transaction did not commit: nothing of it was re-driven, and a new run goes on from there."""

    reason: ClassVar[str] = "REDRIVE_FAILED"
    exit_code: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One dead letter as it is re-driven: the record to produce and where."""

    dead_letter: DeadLetterRecord
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    edited: bool
    event_id: str | None = None

    @classmethod
    def unchanged(cls, record: DeadLetterRecord) -> Outgoing:
        """The original key and value to the source topic, with the record's own headers."""
        return cls(record, record.source_topic, record.key, record.value, list(record.own_headers), edited=False)


def edited(publisher: EventPublisher, record: DeadLetterRecord, event: Mapping[str, Any]) -> Outgoing:
    """An edited event, validated and encoded as `multichannel produce` publishes it (its topic and key from
    the event); raises the event's `InvalidEvent` when it is not valid."""
    topic, key, value, event_id = publisher.encode(event)
    return Outgoing(record, topic, key, value, list(record.own_headers), edited=True, event_id=event_id)


class RedriveTransactions:
    """The transactional publisher of `dead-letters replay`; its transactional id is the re-drive group's, so a
    second replay fences the first (whose open transaction is aborted) before it reads anything."""

    def __init__(self, settings: Settings, *, halt_in_transaction: int | None = None) -> None:
        """`halt_in_transaction`: a test hook; the process kills itself (SIGKILL) in that transaction (1-based),
        after its records reached the brokers and before its offsets and commit."""
        self.settings = settings
        self.group = settings.redrive_group_id
        self.audit_topic = settings.redrive_audit_topic_name
        self.run_id = uuid.uuid4().hex
        self.timeout_s = settings.transaction_timeout_ms / 1000
        self.transactions = 0
        self._halt = halt_in_transaction
        with self._failures("init_transactions"):
            self.publisher = EventPublisher(settings, auto_register=True, transactional_id=self.group)
            self.publisher.producer.init_transactions(max(self.timeout_s, 30.0))

    def commit(self, batch: list[Outgoing], next_offsets: dict[int, int], group_metadata: Any) -> None:
        """One transaction: the batch's records, their audit entries and the group's offsets of the dead-letter
        topic (`next_offsets`, partition → next offset), all or nothing."""
        producer = self.publisher.producer
        with self._failures("re-drive transaction"):
            producer.begin_transaction()
            futures: list[Future[str]] = []
            at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for item in batch:
                record = item.dead_letter
                futures.append(
                    self.publisher.publish_raw(item.topic, item.key, item.value, record.coordinate, item.headers)
                )
                entry = audit_entry(
                    record,
                    dead_letter_topic=self.settings.dead_letter_topic,
                    target_topic=item.topic,
                    target_key=item.key,
                    edited=item.edited,
                    event_id=item.event_id,
                    run_id=self.run_id,
                    group=self.group,
                    redriven_at=at,
                )
                key = audit_key(self.settings.dead_letter_topic, record).encode()
                futures.append(self.publisher.publish_raw(self.audit_topic, key, orjson.dumps(entry), "audit"))
            self.transactions += 1
            if self._halt == self.transactions:
                producer.flush(self.timeout_s)
                os.kill(os.getpid(), signal.SIGKILL)
            if next_offsets:
                topic = self.settings.dead_letter_topic
                offsets = [TopicPartition(topic, p, o) for p, o in sorted(next_offsets.items())]
                producer.send_offsets_to_transaction(offsets, group_metadata, self.timeout_s)
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise _Undelivered(future.exception())
            producer.commit_transaction(self.timeout_s)

    @contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        """A failed transaction call becomes `RedriveFailed` (or the brokers' refusal), the open transaction
        aborted when the client says it can be."""
        try:
            yield
        except _Undelivered as exc:
            err = exc.error.error if isinstance(exc.error, DeliveryFailed) else None
            self._abort()
            raise self._refusal(err) or RedriveFailed(f"{doing}: a record was not delivered: {exc}") from None
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.txn_requires_abort():
                self._abort()
            refused = self._refusal(err)
            if refused is not None:
                raise refused from None
            if err is not None and err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
                raise RedriveFailed(f"{doing}: another replay with the group {self.group} took over") from None
            raise RedriveFailed(f"{doing} failed, nothing of it re-driven: {err or exc}") from None

    def _refusal(self, err: KafkaError | None) -> CommandError | None:
        return access_refusal(
            err,
            user=self.settings.sasl_username,
            doing="re-driving dead letters",
            denied=f"WRITE on the source or audit topic, or the transactional id or group {self.group}",
        )

    def _abort(self) -> None:
        with contextlib.suppress(KafkaException):  # else the next run's init_transactions aborts it
            self.publisher.producer.abort_transaction(self.timeout_s)

    def close(self) -> None:
        self.publisher.producer.flush(self.timeout_s)


class _Undelivered(Exception):
    def __init__(self, error: BaseException | None) -> None:
        super().__init__(str(error))
        self.error = error
