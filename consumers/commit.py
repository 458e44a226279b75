"""How a processed batch reaches Kafka: the exactly-once and the at-least-once commit strategies.

    exactly-once   begin -> [process] -> produce outputs and changelog -> send offsets -> commit
                   (one transaction; an error aborts it, and the session rolls its state back)
    at-least-once  [process] -> produce outputs, flush -> produce changelog, flush -> commit offsets
                   (the changelog only after the outputs are delivered: a crash between the two would
                   otherwise leave a state that applied events whose decisions never left)

Both write through `OutputWriter`, which knows the topics and the client's batch calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from config.errors import AccessRefused
from config.logs import get_logger
from config.settings import Settings
from consumers.batch import BatchOutput
from consumers.kafka_errors import (
    FatalClientError,
    RecordsRefused,
    UncertainTransaction,
    is_fenced,
    is_record_refusal,
    kafka_error,
)
from consumers.messages import Headers
from consumers.metrics import BatchTally

log = get_logger("multichannel.service")

STUCK_GRACE_S = 2.0
"""How long past its own timeout `send_offsets_to_transaction` may take before its producer is given up."""

ABANDONED_PRODUCERS: list[Any] = []
"""Producers given up inside a blocked call: never closed or freed (librdkafka would wait for the call), and
a process that holds one leaves without Python's shutdown (`consumers.service`)."""

Guard = Callable[[str, float], AbstractContextManager[None]]
"""The watchdog's guard: a native call that must return within a deadline."""
Refusal = Callable[[KafkaError | None], AccessRefused | None]


class OutputWriter:
    """Hands a batch's records to the producer: outputs (what readers see) and the changelog."""

    def __init__(self, producer: Any, settings: Settings, refused: list[Any] | None = None) -> None:
        """`refused` collects the records the client refuses before sending, as (error, topic, key, value)."""
        self.producer = producer
        self.s = settings
        self.refused: list[Any] = [] if refused is None else refused

    def outputs(self, out: BatchOutput, tally: BatchTally) -> None:
        """Decisions, statuses and dead letters."""
        s = self.s
        for topic, batch, kind in (
            (s.decision_topic, out.decisions, "decision"),
            (s.status_topic, out.statuses, "status"),
        ):
            if batch:
                (self._produce_runs if out.traced else self._produce_batch)(topic, batch)
                tally.records_out[kind] += len(batch)
        for key, value, headers in out.dead_letters:
            self._produce_one(s.dead_letter_topic, key, value, headers)
        if out.dead_letters:
            tally.records_out["dead_letter"] += len(out.dead_letters)

    def changelog(self, out: BatchOutput, tally: BatchTally) -> None:
        """The changed state. The changelog is co-partitioned with the input; produce_batch ignores a
        per-message "partition" (confluent-kafka 2.16.0), so each partition goes as its own batch."""
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for partition, key, value in out.changelog:
            by_partition.setdefault(partition, []).append({"key": key, "value": value})
        for partition, batch in sorted(by_partition.items()):
            self._produce_batch(self.s.changelog_topic, batch, partition)
        if out.changelog:
            tally.records_out["changelog"] += len(out.changelog)
        if out.partner_table:
            self._produce_batch(self.s.partner_table_topic, out.partner_table)
            tally.records_out["partner_table"] += len(out.partner_table)

    def _produce_batch(self, topic: str, batch: list[dict[str, Any]], partition: int | None = None) -> None:
        pending = batch
        while pending:
            if partition is None:
                queued = self.producer.produce_batch(topic, pending)
            else:
                queued = self.producer.produce_batch(topic, pending, partition=partition)
            if queued == len(pending):
                return
            failed = [m for m in pending if "_error" in m]
            refusal: KafkaError | None = None
            for m in failed:
                err = m.pop("_error")
                if is_record_refusal(err):
                    self.refused.append((err, topic, m.get("key"), m.get("value")))
                    refusal = err
                elif getattr(err, "code", lambda: None)() != KafkaError._QUEUE_FULL:
                    raise KafkaException(err)
            if refusal is not None:
                raise KafkaException(refusal)
            self.producer.poll(0.05)
            pending = failed

    def _produce_runs(self, topic: str, batch: list[dict[str, Any]]) -> None:
        """`batch` in order, its records with headers (a trace context) one by one: produce_batch sends none."""
        run: list[dict[str, Any]] = []
        for m in batch:
            if "headers" in m:
                if run:
                    self._produce_batch(topic, run)
                    run = []
                self._produce_one(topic, m["key"], m["value"], m["headers"])
            else:
                run.append(m)
        if run:
            self._produce_batch(topic, run)

    def _produce_one(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)


class Phases(Protocol):
    def labels(self, phase: str) -> Any: ...


class ProducerStuck(UncertainTransaction):
    """`send_offsets_to_transaction` blocked past its timeout: librdkafka's group coordinator lookup waits for
    a broker state change that may never come (librdkafka issues 5456 and 5511: after a broker restart the
    lookup's retries run out while the coordinator is still loading). The producer is given up and a new
    session takes its transactional id, which fences it."""


class OffsetsSender:
    """Runs `send_offsets_to_transaction` on a thread of its own, so that the session gets control back when
    the call blocks past its timeout. One thread per session, handed one call at a time."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._call = threading.Condition()
        self._request: tuple[list[TopicPartition], Any, float] | None = None
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def send(self, offsets: list[TopicPartition], group_metadata: Any, timeout_s: float) -> None:
        """The call's outcome as the client gives it, or `ProducerStuck` when it has not returned within
        `timeout_s` + `STUCK_GRACE_S` (the call is left running; the producer must not be used again)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="send-offsets", daemon=True)
            self._thread.start()
        self._done.clear()
        with self._call:
            self._request = (offsets, group_metadata, timeout_s)
            self._call.notify()
        if not self._done.wait(timeout_s + STUCK_GRACE_S):
            ABANDONED_PRODUCERS.append(self.producer)
            raise ProducerStuck(
                f"send_offsets_to_transaction did not return {timeout_s + STUCK_GRACE_S:.0f} s after it was"
                " called: the producer is given up and a new session takes over its transactional id"
            )
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _serve(self) -> None:
        while True:
            with self._call:
                while self._request is None:
                    self._call.wait()
                offsets, metadata, timeout_s = self._request
                self._request = None
            try:
                self.producer.send_offsets_to_transaction(offsets, metadata, timeout_s)
            except BaseException as exc:  # handed to the caller's thread, raised there
                self._error = exc
            self._done.set()


class ExactlyOnce:
    """One transaction per batch (EOS v2): the outputs, the changelog and the input offsets commit together."""

    def __init__(
        self, producer: Any, consumer: Any, settings: Settings, guard: Guard, writer: OutputWriter, phases: Phases
    ) -> None:
        self.producer, self.consumer, self.s = producer, consumer, settings
        self.guard, self.writer, self.phases = guard, writer, phases
        self.timeout_s = settings.transaction_timeout_ms / 1000
        self.started = 0.0
        """When the open transaction began (monotonic)."""
        self.offsets = OffsetsSender(producer)
        self.marks: list[tuple[str, float]] = []
        """(phase, when it ended) of the last batch, as far as it got: its phase spans when tracing is on."""

    def begin(self) -> None:
        self.started = time.monotonic()
        self.marks = [("begin", self.started)]
        with self.guard("begin_transaction", self.timeout_s):
            self.producer.begin_transaction()

    def finish(self, out: BatchOutput, tally: BatchTally, next_offsets: dict[int, int]) -> None:
        """Produce the batch, add its input offsets to the transaction and commit it."""
        timeout_s, phases = self.timeout_s, self.phases
        processed = time.monotonic()
        with self.guard("produce", timeout_s):
            self.writer.outputs(out, tally)
            self.writer.changelog(out, tally)
        produced = time.monotonic()
        if next_offsets:
            offsets = [TopicPartition(self.s.subscription_topic, p, o) for p, o in sorted(next_offsets.items())]
            with self.guard("send_offsets_to_transaction", timeout_s):
                self.offsets.send(offsets, self.consumer.consumer_group_metadata(), timeout_s)
        offsets_sent = time.monotonic()
        self.marks += [("process", processed), ("produce", produced), ("offsets", offsets_sent)]
        self._commit()
        self.marks.append(("commit", time.monotonic()))
        phases.labels("process").observe(processed - self.started)
        phases.labels("produce").observe(produced - processed)
        phases.labels("offsets").observe(offsets_sent - produced)
        phases.labels("commit").observe(time.monotonic() - offsets_sent)

    def _commit(self) -> None:
        timeout_s = self.timeout_s
        for attempt in range(3):
            try:
                with self.guard("commit_transaction", timeout_s):
                    self.producer.commit_transaction(timeout_s)
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.retriable() and not err.txn_requires_abort() and not err.fatal():
                    log.warning("commit_retry", attempt=attempt + 1, error=str(err))
                    continue
                raise
        raise UncertainTransaction("commit_transaction did not complete; outcome unknown")

    def abort(self) -> None:
        """Abort the open transaction (the caller rolls its state back and rewinds its input)."""
        try:
            with self.guard("abort_transaction", self.timeout_s):
                self.producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.fatal():
                self.raise_fatal(f"abort failed: {err}", err, exc)
            raise UncertainTransaction(f"abort_transaction did not complete: {err}") from exc

    def raise_fatal(self, message: str, err: KafkaError | None, exc: Exception) -> None:
        """A fenced producer whose transaction outlived transaction.timeout.ms was fenced by the broker
        itself (it aborts such a transaction and bumps the epoch, e.g. across a broker restart): a new
        session takes the same transactional.id back at once, so no supervisor is needed. Any other fatal
        error, or a fencing by a newer instance of this id (a young transaction), ends the process."""
        age_s = time.monotonic() - self.started
        if is_fenced(err) and age_s * 1000 >= self.s.transaction_timeout_ms:
            raise UncertainTransaction(f"{message} (transaction open {age_s:.1f} s, timed out by the broker)") from exc
        raise FatalClientError(message) from exc


class AtLeastOnce:
    """Outputs flushed, then the changelog flushed, then the offsets committed. A failed delivery ends the
    session: the next one restores from the changelog and the committed offsets, so the batch is repeated
    (decisions may repeat; nothing is lost)."""

    def __init__(
        self,
        producer: Any,
        consumer: Any,
        settings: Settings,
        guard: Guard,
        refusal: Refusal,
        delivery_errors: list[KafkaError],
        refused: list[Any] | None = None,
    ) -> None:
        """`delivery_errors` is where the producer's delivery callback puts every failed delivery, `refused`
        where it puts the records refused for what they are (too large: see `consumers.limits`)."""
        self.producer, self.consumer, self.s = producer, consumer, settings
        self.guard, self.refusal = guard, refusal
        self.refused: list[Any] = [] if refused is None else refused
        self.writer = OutputWriter(producer, settings, self.refused)
        self.timeout_s = settings.transaction_timeout_ms / 1000
        self.delivery_errors = delivery_errors
        self.marks: list[tuple[str, float]] = []
        """(phase, when it ended) of the last batch, as far as it got (`ExactlyOnce.marks`)."""

    def finish(self, out: BatchOutput, tally: BatchTally, next_offsets: dict[int, int]) -> None:
        timeout_s = self.timeout_s
        self.marks = [("process", time.monotonic())]
        for what, produce in (("produce", self.writer.outputs), ("produce changelog", self.writer.changelog)):
            try:
                with self.guard(what, timeout_s):
                    produce(out, tally)
            except KafkaException:
                if not self.refused:
                    raise
            self._flush_delivered()
        self.marks.append(("produce", time.monotonic()))
        if next_offsets:
            offsets = [TopicPartition(self.s.subscription_topic, p, o) for p, o in sorted(next_offsets.items())]
            try:
                with self.guard("offset commit", timeout_s):
                    self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance took the partitions: repeat from the last commit
                refused = self.refusal(kafka_error(exc))
                if refused is not None:
                    raise refused from None
                raise UncertainTransaction(f"offset commit failed: {kafka_error(exc)}") from exc
        self.marks.append(("offsets", time.monotonic()))

    def _flush_delivered(self) -> None:
        """Wait for every record produced so far; any not delivered ends the session, and a refusal by the
        brokers ends the service (repeating the batch would be refused again)."""
        with self.guard("flush", self.timeout_s):
            remaining = self.producer.flush(self.timeout_s)
        for error in self.delivery_errors:
            refused = self.refusal(error)
            if refused is not None:
                raise refused
        if self.refused and not self.delivery_errors:
            raise RecordsRefused(f"{len(self.refused)} records refused: {self.refused[0][0]}")
        if remaining or self.delivery_errors:
            errors = [str(e) for e in self.delivery_errors[:3]]
            self.delivery_errors.clear()
            raise UncertainTransaction(f"{remaining} records undelivered, delivery errors {errors}")
