"""The exactly-once classifier service: one consumer-group member, one transactional producer.

Each turn of the main loop is one batch and one Kafka transaction (EOS v2):

    consume a batch of subscription records, poll new partner records
    begin transaction
      fire due term-end timers                     -> decisions, statuses
      apply partner changes to the partner table   -> re-classified accounts of owned partitions
      bytes -> Avro -> event -> classify           -> decisions, statuses, dead letters
      changed account states                       -> changelog (once per account per batch)
      input offsets + consumer group metadata
    commit transaction

The parts: `consumers.store` holds the state (the pure `Classifier` and which partitions' accounts
this instance owns; its undo log makes an aborted batch roll back exactly), `consumers.batch` runs a
batch over it without Kafka, and `consumers.commit` writes the result, exactly once or at least once.
This module keeps the clients and the loop. On assignment a partition's state is restored from the
changelog before it is processed; on revocation it is dropped (no transaction is ever open while the
consumer polls, so a revoke never interrupts one).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from config.errors import AccessRefused, DependencyUnreachable, access_refusal, is_authorization, is_refusal
from config.logs import OUTAGES, get_logger
from config.reachability import wait_for_brokers, wait_for_registry
from config.settings import Settings
from consumers.batch import BatchOutput, BatchProcessor
from consumers.changelog import read_changelog
from consumers.codec import ServiceCodec
from consumers.commit import ABANDONED_PRODUCERS, AtLeastOnce, ExactlyOnce, OutputWriter
from consumers.dead_letters import dead_letter_limit
from consumers.kafka_errors import (
    FatalClientError,
    RecordsRefused,
    UncertainTransaction,
    is_fatal,
    is_record_refusal,
    kafka_error,
)
from consumers.limits import Delivery, OutputTopics, RecordLimits, process_within_limits, refuse, refused_accounts
from consumers.messages import offset_of, partition_of
from consumers.metrics import BatchTally, HealthState, OpsServer, ServiceMetrics
from consumers.partner_feed import PartnerFeed, read_partner_table
from consumers.runtime import freeze_survivors
from consumers.serde import RegistryUnavailableError
from consumers.state_format import StateFormatError
from consumers.store import AccountStore
from consumers.tracing import Tracing
from consumers.watchdog import Watchdog
from deploy.acls import missing_rights, service_acls
from multichannel.engine import Classifier
from multichannel.rulebooks import rulebook

log = get_logger("multichannel.service")

Clock = Callable[[], datetime]

FATAL_EXIT_CODE = 3
"""The exit code that asks a supervisor for a restart: the clients cannot go on."""

REGISTRY_RETRY_S = 2.0
"""Pause before a batch is retried while the Schema Registry does not answer."""

RESTORE_TIMEOUT_S = 120.0
"""Longest restore of newly assigned changelog partitions."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def _first_offsets(records: list[Message]) -> dict[int, int]:
    """Each partition's first offset among `records` (a partition's records come in offset order)."""
    first: dict[int, int] = {}
    for m in records:
        first.setdefault(partition_of(m), offset_of(m))
    return first


class ClassifierService:
    """Runs sessions (clients + state) until asked to stop; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        metrics: ServiceMetrics | None = None,
        health: HealthState | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """`tracing`: where spans go (tests); by default what the `OTEL_*` settings say, None when off."""
        self.settings = settings
        self.tracing = tracing if tracing is not None else Tracing.from_settings(settings)
        self.clock = clock
        self.metrics = metrics or ServiceMetrics()
        self.health = health or HealthState()
        self._stop = threading.Event()
        self._client_conf = settings.kafka_client_config()
        self.ops_port: int | None = None
        # A stop finishes the batch (its commit may take a transaction timeout), then closes the clients.
        self.watchdog = Watchdog(
            exit_code=FATAL_EXIT_CODE,
            stop_deadline_s=settings.transaction_timeout_ms / 1000 + settings.shutdown_timeout_s + 10,
        )
        self.metrics.ready.set_function(lambda: float(self.health.ready and self.health.alive))

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self) -> None:
        """Finish the current batch, commit it, close the clients and return from `run` (or, past the
        watchdog's stop deadline, end the process)."""
        self._stop.set()
        self.watchdog.stop_requested()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the service; the watchdog sees them even while a native call blocks the
        main thread (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _signo, _frame: self.request_stop())
        self.watchdog.watch_signals()

    def run(self, *, serve_ops: bool = True) -> int:
        """Process until stopped; 0 after a clean stop, 3 after a fatal client error."""
        self.watchdog.start()
        ops: OpsServer | None = None
        if serve_ops:
            ops = OpsServer(self.metrics, self.health, self.settings.metrics_host, self.settings.metrics_port)
            ops.start()
            self.ops_port = ops.port
            log.info("ops_endpoints", port=ops.port, paths=["/metrics", "/healthz", "/readyz"])
        try:
            if not (
                wait_for_brokers(self.settings, self._stop.is_set)
                and wait_for_registry(self.settings, self._stop.is_set)
            ):
                return 0  # stopped while waiting
            while not self._stop.is_set():
                try:
                    _Session(self).run()
                except UncertainTransaction as exc:
                    log.warning("session_restart", reason=str(exc))
                    self.health.ready = False
                except RegistryUnavailableError as exc:  # at session start: the output schemas
                    log.warning(
                        "registry_unavailable",
                        url=self.settings.schema_registry_url,
                        error=str(exc),
                        retry_in_s=REGISTRY_RETRY_S,
                    )
                    self.health.ready = False
                    self._stop.wait(REGISTRY_RETRY_S)
            return 0
        except FatalClientError as exc:
            log.error("fatal_client_error", error=str(exc), action="exiting so that a supervisor restarts the service")
            return FATAL_EXIT_CODE
        except DependencyUnreachable as exc:
            log.error("dependency_unreachable", error=str(exc))
            return FATAL_EXIT_CODE
        except StateFormatError as exc:  # a changelog this release cannot or must not restore
            log.error("changelog_unreadable", error=str(exc))
            return FATAL_EXIT_CODE
        except AccessRefused as exc:  # a restart cannot help: a distinct exit code and the reason as the event
            log.error(exc.reason.lower(), error=str(exc))
            return exc.exit_code
        finally:
            self.health.ready = False
            OUTAGES.unrecovered()
            self.watchdog.close()
            if ops is not None:
                ops.stop()
            if self.tracing is not None:
                self.tracing.shutdown()

    def refusal(self, err: KafkaError | None) -> AccessRefused | None:
        """The `AccessRefused` that a client error stands for, naming what the ACLs deny (asked of the brokers:
        the error itself does not say which topic or group), or None for any other error."""
        if err is None or not is_refusal(err):
            return None
        denied = ""
        if err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            denied = f"WRITE on transactional id {self.settings.transactional_id}"
        elif is_authorization(err):
            try:
                denied = ", ".join(missing_rights(self._client_conf, service_acls(self.settings)))
            except KafkaException:  # the error's own text still says what kind of resource
                denied = ""
        return access_refusal(err, user=self.settings.sasl_username, doing="classifier service", denied=denied)


class _Session:
    """One set of clients and in-memory state; a new session restores everything from Kafka. The state is the
    `AccountStore`, a batch's work the `BatchProcessor`, its way to Kafka the commit strategy."""

    def __init__(self, service: ClassifierService) -> None:
        self.svc = service
        self.s = service.settings
        self.metrics = service.metrics
        self.guard = service.watchdog.guard
        self.codec = ServiceCodec(self.s)
        conf = service._client_conf
        self.store = AccountStore(
            Classifier(dedup_window=self.s.dedup_window, rulebook=rulebook(self.s.rulebook)),
            self.s.input_partitions,
            self.codec.decode_states,
            accounts_in_use=self.s.accounts_in_use,
        )
        self.processor = BatchProcessor(
            self.store,
            self.codec,
            subscription_topic=self.s.subscription_topic,
            partner_topic=self.s.partner_topic,
            dead_letter_limit=dead_letter_limit(conf, self.s.dead_letter_topic, self.s.dead_letter_max_bytes),
            timer_batch_records=self.s.timer_batch_records,
        )
        producer_max = max(1_000_000, self.processor.dead_letter_limit)
        self.topics = OutputTopics(self.s.decision_topic, self.s.status_topic, self.s.changelog_topic)
        self.limits = RecordLimits.from_cluster(conf, self.topics, producer_max, self.s.output_record_max_bytes)
        self.storm = False
        """The last batch left due timers: the input stays paused while each turn fires the next slice."""
        self.assigned_once = False
        self.last_punctuate = 0.0
        self.last_lag_update = 0.0
        delivery_errors: list[KafkaError] = []
        self.refused_deliveries: list[Delivery] = []
        """Records the brokers refused (too large, invalid), from delivery reports and from the client."""

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                return
            if is_record_refusal(err):
                self.refused_deliveries.append((err, msg.topic() or "", msg.key(), msg.value()))
            else:
                delivery_errors.append(err)

        guarantee: dict[str, Any] = (
            {"transactional.id": self.s.transactional_id, "transaction.timeout.ms": self.s.transaction_timeout_ms}
            if self.s.exactly_once
            else {}
        )
        # a delivery report only for a failed record: which account a refused record belongs to
        guarantee |= {"on_delivery": on_delivery, "delivery.report.only.error": True}
        self.producer = Producer(
            {
                **conf,
                **guarantee,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # The next batch's AddOffsetsToTxn meets CONCURRENT_TRANSACTIONS while the coordinator still
                # writes the previous commit's markers; librdkafka retries it after retry.backoff.ms, doubling
                # up to retry.backoff.max.ms (100 ms and 1 s by default: up to a second of dead time per batch)
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 50,
                "compression.type": "lz4",
                "partitioner": "murmur2_random",
                # a dead letter carries a whole input record plus headers: more than the 1 MB default
                "message.max.bytes": producer_max,
                # a topic takes no record batch larger than its limit: small records batched together must fit
                "batch.size": min(1_000_000, self.limits.smallest()),
            }
        )

        self.consumer = Consumer(
            {
                **conf,
                "group.id": self.s.application_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                "max.poll.interval.ms": 300_000,
                **({"group.instance.id": self.s.transactional_id} if self.s.static_membership else {}),
            }
        )
        self.partners = PartnerFeed(conf, self.s.partner_topic, f"{self.s.application_id}-partners")
        self.exactly_once = ExactlyOnce(
            self.producer,
            self.consumer,
            self.s,
            self.guard,
            OutputWriter(self.producer, self.s, self.refused_deliveries),
            self.metrics.batch_phase_seconds,
        )
        self.at_least_once = AtLeastOnce(
            self.producer, self.consumer, self.s, self.guard, service.refusal, delivery_errors, self.refused_deliveries
        )

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        s = self.s
        timeout_s = s.transaction_timeout_ms / 1000
        guard = self.guard
        try:
            if s.exactly_once:
                init_timeout_s = max(30.0, timeout_s * 3)
                with guard("init_transactions", init_timeout_s):
                    self.producer.init_transactions(init_timeout_s)
                log.info("transactions_initialised", transactional_id=s.transactional_id)
            with guard("partner table restore", 30 + RESTORE_TIMEOUT_S):
                restore_group = f"{s.application_id}-restore"
                saved = read_partner_table(
                    self.svc._client_conf, s.partner_table_topic, restore_group, timeout_s=RESTORE_TIMEOUT_S
                )
                self.store.classifier.partners.restore(saved)
            with guard("partner table catch-up", 30 + 120):
                self.partners.start()
                caught_up = self.partners.catch_up()
            self._apply_partner_catch_up(caught_up)
            self.consumer.subscribe(
                [s.subscription_topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            poll_timeout_s = s.batch_timeout_ms / 1000
            while not self.svc._stop.is_set():
                self.svc.health.beat()
                if self.storm:
                    self._storm_turn(timeout_s)
                    continue
                with guard("consume", poll_timeout_s + timeout_s):  # rebalance callbacks guard their own work
                    msgs = self._next_batch(poll_timeout_s)
                records = self._usable(msgs)
                with guard("partner poll", timeout_s):
                    partner_msgs = self.partners.poll(s.batch_size)
                now_mono = time.monotonic()
                punctuate = now_mono - self.last_punctuate >= s.punctuate_interval_ms / 1000
                if punctuate:
                    self.last_punctuate = now_mono
                work = bool(records or partner_msgs or self.processor.work_pending())
                if work or (punctuate and self.processor.timers_due(self._now())):
                    self._batch(records, partner_msgs)
                if now_mono - self.last_lag_update >= 5.0:
                    self._update_lag()
                    self.last_lag_update = now_mono
        except KafkaException as exc:
            err = kafka_error(exc)
            refused = self.svc.refusal(err)
            if refused is not None:
                raise refused from None
            raise FatalClientError(str(err or exc)) from exc
        finally:
            self._close()

    def _storm_turn(self, timeout_s: float) -> None:
        """One turn while due timers are left: the input partitions are paused and the consumer is still
        called (the group membership and max.poll.interval.ms hold, rebalances are served); records it had
        fetched before the pause are read again later. The batch fires the next slice of timers."""
        consumer = self.consumer
        with self.guard("consume", timeout_s):
            consumer.pause(consumer.assignment())
            records = self._usable(consumer.consume(num_messages=self.s.batch_size, timeout=0))
        if records:
            self._seek_input(_first_offsets(records))
        self._batch([], [])
        if not self.storm:
            with self.guard("consume", timeout_s):
                consumer.resume(consumer.assignment())
        now_mono = time.monotonic()
        if now_mono - self.last_lag_update >= 5.0:
            self._update_lag()
            self.last_lag_update = now_mono

    def _seek_input(self, first_offsets: dict[int, int]) -> None:
        """Read the input again from these offsets (of the partitions still owned)."""
        for p, offset in first_offsets.items():
            if p in self.store.owned:
                self.consumer.seek(TopicPartition(self.s.subscription_topic, p, offset))

    def _close(self) -> None:
        """Close every client; a failure here (a fenced producer re-raises on flush) must not mask
        the error that ended the session."""
        closes: list[tuple[str, Callable[[], object]]] = [
            ("consumer close", self.consumer.close),
            ("partner feed close", self.partners.close),
        ]
        if self.producer not in ABANDONED_PRODUCERS:  # a given-up producer is still inside its blocked call
            closes.append(("producer flush", lambda: self.producer.flush(self.s.shutdown_timeout_s)))
        for what, close in closes:
            try:
                with self.guard(what, self.s.shutdown_timeout_s):
                    close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("close_failed", error=str(exc))
        self.metrics.partitions_owned.set(0)

    def _next_batch(self, wait_s: float) -> list[Message]:
        """Adaptive batching: take what the client has already fetched (up to the batch size) at once; when
        nothing is there, wait up to `wait_s` for the first record and take what came with it. A batch closes
        when the fetched input is drained, not when a timer runs out, so a light load is not held back and a
        heavy one still fills whole batches."""
        consumer, size = self.consumer, self.s.batch_size
        msgs = consumer.consume(num_messages=size, timeout=0)
        if msgs:
            return msgs
        first = consumer.poll(wait_s)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=size - 1, timeout=0)] if size > 1 else [first]

    def _usable(self, msgs: list[Message]) -> list[Message]:
        """Drop error events and records of partitions revoked during the poll."""
        out: list[Message] = []
        owned = self.store.owned
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL or is_refusal(err):  # e.g. a fenced static member
                    raise KafkaException(err)
                log.warning("consumer_error", error=str(err))
                continue
            if partition_of(m) in owned:
                out.append(m)
        return out

    def _now(self) -> datetime:
        return self.store.now(self.svc.clock())

    # ------------------------------------------------------------------ one transaction
    def _batch(self, records: list[Message], partner_msgs: list[Message]) -> None:
        tracing = self.svc.tracing
        if tracing is None:  # tracing off: this is its only cost, once per batch
            self._transact(records, partner_msgs)
            return
        trace = self.processor.trace = tracing.batch(records, partner_msgs)
        strategy = self.exactly_once if self.s.exactly_once else self.at_least_once
        try:
            self._transact(records, partner_msgs)
        except BaseException as exc:
            trace.end(strategy.marks, f"{type(exc).__name__}: {exc}")
            raise
        else:
            trace.end(strategy.marks)
        finally:
            self.processor.trace = None

    def _transact(self, records: list[Message], partner_msgs: list[Message]) -> None:
        now = self._now()
        tally = BatchTally(input_records=len(records))
        first_offsets: dict[int, int] = {}
        next_offsets: dict[int, int] = {}
        oldest_ms = 0
        for m in records:
            p = partition_of(m)
            if p not in first_offsets:  # a partition's first record is its oldest in the batch
                first_offsets[p] = offset_of(m)
                created_ms = m.timestamp()[1]
                if created_ms > 0 and (not oldest_ms or created_ms < oldest_ms):
                    oldest_ms = created_ms
            next_offsets[p] = offset_of(m) + 1
        if oldest_ms:
            self.metrics.batch_phase_seconds.labels("wait").observe(max(0.0, time.time() - oldest_ms / 1000))
        self.store.begin()
        self.partners.mark()
        self.refused_deliveries.clear()
        started = time.monotonic()
        out: BatchOutput | None = None
        if not self.s.exactly_once:
            try:
                out, tally = self._process(records, partner_msgs, now, tally)
                self.at_least_once.finish(out, tally, {} if out.timers_pending else next_offsets)
            except RegistryUnavailableError as exc:  # outputs may be out already: repeat from the last commit
                self.svc._stop.wait(REGISTRY_RETRY_S)
                raise UncertainTransaction(f"schema registry unavailable: {exc}") from exc
            except RecordsRefused as exc:
                assert out is not None
                if not self._refuse_delivered(out):
                    raise UncertainTransaction(str(exc)) from exc
                self._undo_batch(first_offsets)  # other accounts' outputs may repeat: at least once
                return
            self._finish_batch(tally, started, out, first_offsets)
            return
        txn = self.exactly_once
        try:
            txn.begin()
            out, tally = self._process(records, partner_msgs, now, tally)
            txn.finish(out, tally, {} if out.timers_pending else next_offsets)
        except (KafkaException, RegistryUnavailableError) as exc:
            if isinstance(exc, KafkaException) and out is not None:
                with suppress(KafkaException, RuntimeError):
                    self.producer.poll(0)  # the delivery reports of refused records, if any are still queued
                err = kafka_error(exc)
                if (err is None or not err.fatal()) and self._refuse_delivered(out):
                    log.warning("transaction_abort", error=str(err), records=len(records), reason="record refused")
                    self._abort(first_offsets, f"record refused: {err}")
                    return
            if isinstance(exc, RegistryUnavailableError):
                # an input record's writer schema could not be fetched: retry the batch, never dead-letter it
                log.warning("registry_unavailable", error=str(exc), retry_in_s=REGISTRY_RETRY_S)
                self.svc.health.ready = False
            else:
                err = kafka_error(exc)
                refused = self.svc.refusal(err)
                if refused is not None:  # aborting and retrying would be refused again, batch after batch
                    raise refused from None
                if is_fatal(err):
                    txn.raise_fatal(f"transaction failed: {err}", err, exc)
                log.warning("transaction_abort", error=str(err), records=len(records))
            self._abort(first_offsets, str(kafka_error(exc) if isinstance(exc, KafkaException) else exc))
            if isinstance(exc, RegistryUnavailableError):
                self.svc._stop.wait(REGISTRY_RETRY_S)
            return
        if self.assigned_once:
            self.svc.health.ready = True
        self._finish_batch(tally, started, out, first_offsets)

    def _finish_batch(self, tally: BatchTally, started: float, out: BatchOutput, first_offsets: dict[int, int]) -> None:
        """After the commit; a batch that only fired timers (more are due) gives its input back to be read
        after them."""
        for (pid, cid), (refusal, events) in out.refused.items():
            log.error(
                "record_refused",
                partner_id=pid,
                customer_id=cid,
                topic=refusal.topic,
                size=refusal.size,
                limit=refusal.limit or None,
                why=refusal.why,
                dead_letters=events,
            )
        self.storm = out.timers_pending
        if out.timers_pending:
            self.partners.rewind()
            self._seek_input(first_offsets)
        else:
            self.processor.forget_refused()
        self.store.commit()
        OUTAGES.recovered()  # a broker outage's last suppressed connection errors, and its end
        freeze_survivors()
        self.metrics.transaction_seconds.observe(time.monotonic() - started)
        self.metrics.publish(tally)
        self.metrics.accounts_held.set(len(self.store))
        self.metrics.partners_known.set(len(self.store.classifier.partners))

    def _abort(self, first_offsets: dict[int, int], why: str) -> None:
        """Abort the transaction, put the state back as the batch found it and rewind both inputs."""
        if self.processor.trace is not None:
            self.processor.trace.aborted = why
        self.exactly_once.abort()
        self.metrics.aborts.inc()
        self._undo_batch(first_offsets)

    def _undo_batch(self, first_offsets: dict[int, int]) -> None:
        self.store.rollback()
        self.partners.rewind()
        self._seek_input(first_offsets)

    def _process(
        self, records: list[Message], partner_msgs: list[Message], now: datetime, tally: BatchTally
    ) -> tuple[BatchOutput, BatchTally]:
        return process_within_limits(self.processor, self.limits, records, partner_msgs, now, tally)

    def _refuse_delivered(self, out: BatchOutput) -> bool:
        """The accounts of the records the brokers refused in this batch join the refused ones; False when
        none was refused (or none can be traced to an account: the batch is then retried as it is)."""
        if not self.refused_deliveries:
            return False
        found = refused_accounts(out, self.topics, self.refused_deliveries)
        self.refused_deliveries.clear()
        return refuse(self.processor, found)

    def _apply_partner_catch_up(self, msgs: list[Message]) -> None:
        tally = self.processor.catch_up(msgs, self._now())
        partners = len(self.store.classifier.partners)
        self.metrics.publish(tally)
        self.metrics.partners_known.set(partners)
        log.info("partner_table_loaded", records=len(msgs), partners=partners)

    # ------------------------------------------------------------------ rebalancing
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        new = sorted({tp.partition for tp in partitions} - self.store.owned)
        self.assigned_once = True
        if new:
            started = time.monotonic()
            with self.guard("stable offsets", RESTORE_TIMEOUT_S):
                self._await_previous_owner(new)
            with self.guard("changelog restore", RESTORE_TIMEOUT_S):
                restored = read_changelog(
                    self.svc._client_conf,
                    self.s.changelog_topic,
                    new,
                    f"{self.s.application_id}-restore",
                    timeout_s=RESTORE_TIMEOUT_S,
                )
            for part in restored:
                self.metrics.restore_seconds.observe(part.seconds)
            # holding the restored accounts reads every account's header (tens of seconds for a million): a guard of
            # its own, or its time would be charged to the `consume` call this callback runs in
            with self.guard("restored accounts held", RESTORE_TIMEOUT_S):
                total_records, total_accounts = self.store.assign(restored, self.svc.clock())
                freeze_survivors()
            self.metrics.restore_records.inc(total_records)
            seconds = time.monotonic() - started
            log.info(
                "partitions_restored",
                partitions=new,
                changelog_records=total_records,
                accounts=total_accounts,
                seconds=round(seconds, 3),
                records_per_s=round(total_records / seconds) if seconds > 0 else None,
            )
        self.metrics.partitions_owned.set(len(self.store.owned))
        self.metrics.accounts_held.set(len(self.store))
        self.svc.health.ready = True
        OUTAGES.recovered()  # the group coordinator answered: an idle instance has no commit to say so

    def _await_previous_owner(self, partitions: list[int]) -> None:
        """Wait until no transaction of a previous owner still holds offsets of these partitions. An owner
        frozen after it sent its batch's offsets (a SIGSTOP, a long pause) can wake after the partitions moved
        and commit, its changelog records landing after a restore that started at once; the offsets fetched
        next would already include that batch. A `read_committed` consumer asks for stable offsets, so this
        fetch returns only once such a transaction is committed or aborted, and the restore that follows
        reads its records."""
        tps = [TopicPartition(self.s.subscription_topic, p) for p in partitions]
        self.consumer.committed(tps, timeout=RESTORE_TIMEOUT_S)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # dropping the accounts of every revoked partition (seconds for a million): a guard of its own, as holding
        # them on assignment, not charged to the `consume` or `consumer close` call this callback runs in
        with self.guard("revoked accounts dropped", RESTORE_TIMEOUT_S):
            gone = self.store.revoke(tp.partition for tp in partitions)
        for p in gone:
            with suppress(KeyError):  # no lag was published for it yet
                self.metrics.consumer_lag.remove(str(p))
        if gone:
            log.info("partitions_revoked", partitions=sorted(gone))
        self.metrics.partitions_owned.set(len(self.store.owned))
        self.metrics.accounts_held.set(len(self.store))

    def _update_lag(self) -> None:
        for p in sorted(self.store.owned):
            tp = TopicPartition(self.s.subscription_topic, p)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                position = self.consumer.position([tp])[0].offset
            except KafkaException:
                continue
            if high >= 0 and position >= 0:
                self.metrics.consumer_lag.labels(str(p)).set(max(0, high - position))
