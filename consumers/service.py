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

State lives in the pure `Classifier`; its undo log makes an aborted batch roll back exactly.
On assignment a partition's state is restored from the changelog before it is processed; on
revocation it is dropped (no transaction is ever open while the consumer polls, so a revoke
never interrupts one).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from config.errors import AccessRefused, DependencyUnreachable, access_refusal, is_authorization, is_refusal
from config.logs import get_logger
from config.reachability import wait_for_brokers, wait_for_registry
from config.settings import Settings
from consumers.changelog import (
    RestoredPartition,
    account_key_bytes,
    partner_checkpoint_key,
    read_changelog,
    split_restored,
)
from consumers.codec import ServiceCodec
from consumers.dead_letters import dead_letter, dead_letter_limit, truncated_parts
from consumers.kafka_errors import FatalClientError, UncertainTransaction, is_fatal, is_fenced, kafka_error
from consumers.messages import Headers, offset_of, partition_of
from consumers.metrics import BatchTally, HealthState, OpsServer, ServiceMetrics
from consumers.partner_feed import PartnerFeed
from consumers.runtime import freeze_survivors
from consumers.serde import RegistryUnavailableError
from consumers.state_format import decode_state, read_headers
from consumers.watchdog import Watchdog
from deploy.acls import missing_rights, service_acls
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent, UnknownEventType
from multichannel.model import AccountKey, PartnerProgramChanged
from multichannel.records import CustomerStatusRecord, SubscriptionDecision

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


@dataclass
class BatchOutput:
    """Everything one transaction writes, gathered before anything is produced."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes | None, Headers]] = field(default_factory=list)
    changelog: list[dict[str, Any]] = field(default_factory=list)


class ClassifierService:
    """Runs sessions (clients + state) until asked to stop; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        metrics: ServiceMetrics | None = None,
        health: HealthState | None = None,
    ) -> None:
        self.settings = settings
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
                        "registry_unavailable", url=self.settings.schema_registry_url, error=str(exc), retry_in_s=2.0
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
        except AccessRefused as exc:  # a restart cannot help: a distinct exit code and the reason as the event
            log.error(exc.reason.lower(), error=str(exc))
            return exc.exit_code
        finally:
            self.health.ready = False
            self.watchdog.close()
            if ops is not None:
                ops.stop()

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
    """One set of clients and in-memory state; a new session restores everything from Kafka."""

    def __init__(self, service: ClassifierService) -> None:
        self.svc = service
        self.s = service.settings
        self.metrics = service.metrics
        self.codec = ServiceCodec(self.s)
        self.classifier = Classifier(dedup_window=self.s.dedup_window)
        self.owned: set[int] = set()
        self.assigned_once = False
        self.partition_accounts: dict[int, set[AccountKey]] = {}
        self.customer_partition: dict[str, int] = {}
        self.pending_reconcile: set[AccountKey] = set()
        self.partner_checkpoints: dict[int, int] = {}
        self.partner_dead_letters: dict[int, list[tuple[Message, InvalidEvent]]] = {}
        self.last_punctuate = 0.0
        self.last_lag_update = 0.0
        self.guard = service.watchdog.guard
        self.transaction_started = 0.0
        self.clock_floor = datetime.min.replace(tzinfo=UTC)
        """No clock reading goes below it: the latest batch's clock, or a restored account's evaluated_at."""
        conf = service._client_conf
        self.dead_letter_limit = dead_letter_limit(conf, self.s.dead_letter_topic, self.s.dead_letter_max_bytes)
        self.delivery_errors: list[KafkaError] = []
        guarantee: dict[str, Any] = (
            {"transactional.id": self.s.transactional_id, "transaction.timeout.ms": self.s.transaction_timeout_ms}
            if self.s.exactly_once
            else {"on_delivery": self._on_delivery}
        )
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
                "message.max.bytes": max(1_000_000, self.dead_letter_limit),
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
                with guard("consume", poll_timeout_s + timeout_s):  # rebalance callbacks guard their own work
                    msgs = self._next_batch(poll_timeout_s)
                records = self._usable(msgs)
                with guard("partner poll", timeout_s):
                    partner_msgs = self.partners.poll(s.batch_size)
                now_mono = time.monotonic()
                punctuate = now_mono - self.last_punctuate >= s.punctuate_interval_ms / 1000
                if punctuate:
                    self.last_punctuate = now_mono
                work = bool(records or partner_msgs or self.pending_reconcile or self._partner_dead_letters_due())
                if work or (punctuate and self._timers_due()):
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

    def _close(self) -> None:
        """Close every client; a failure here (a fenced producer re-raises on flush) must not mask
        the error that ended the session."""
        closes = (
            ("consumer close", self.consumer.close),
            ("partner feed close", self.partners.close),
            ("producer flush", lambda: self.producer.flush(self.s.shutdown_timeout_s)),
        )
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
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal() or err.code() == KafkaError._FATAL or is_refusal(err):  # e.g. a fenced static member
                    raise KafkaException(err)
                log.warning("consumer_error", error=str(err))
                continue
            if partition_of(m) in self.owned:
                out.append(m)
        return out

    def _timers_due(self) -> bool:
        deadline = self.classifier.next_deadline()
        return deadline is not None and deadline <= self._now()

    def _now(self) -> datetime:
        """The service clock (UTC wall time) made monotonic: decided_at never goes backwards for a key, even
        when the wall clock steps back or a partition moves from an instance whose clock ran ahead."""
        now = self.svc.clock()
        if now < self.clock_floor:
            return self.clock_floor
        self.clock_floor = now
        return now

    # ------------------------------------------------------------------ one transaction
    def _batch(self, records: list[Message], partner_msgs: list[Message]) -> None:
        now = self._now()
        s = self.s
        tally = BatchTally(input_records=len(records))
        out = BatchOutput()
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
        phases = self.metrics.batch_phase_seconds
        if oldest_ms:
            phases.labels("wait").observe(max(0.0, time.time() - oldest_ms / 1000))
        saved_reconcile = set(self.pending_reconcile)
        saved_customers = dict(self.customer_partition)
        saved_checkpoints = dict(self.partner_checkpoints)
        self.partners.mark()
        started = time.monotonic()
        if not s.exactly_once:
            try:
                self._batch_at_least_once(now, records, partner_msgs, out, tally, next_offsets)
            except RegistryUnavailableError as exc:  # outputs may be out already: repeat from the last commit
                self.svc._stop.wait(REGISTRY_RETRY_S)
                raise UncertainTransaction(f"schema registry unavailable: {exc}") from exc
            self._finish_batch(tally, started)
            return
        timeout_s = s.transaction_timeout_ms / 1000
        self.transaction_started = time.monotonic()
        try:
            with self.guard("begin_transaction", timeout_s):
                self.producer.begin_transaction()
            self._collect(now, records, partner_msgs, out, tally)
            processed = time.monotonic()
            with self.guard("produce", timeout_s):
                self._produce(out, tally)
            produced = time.monotonic()
            if next_offsets:
                offsets = [TopicPartition(s.subscription_topic, p, o) for p, o in sorted(next_offsets.items())]
                with self.guard("send_offsets_to_transaction", timeout_s):
                    self.producer.send_offsets_to_transaction(
                        offsets, self.consumer.consumer_group_metadata(), timeout_s
                    )
            offsets_sent = time.monotonic()
            self._commit()
            phases.labels("process").observe(processed - self.transaction_started)
            phases.labels("produce").observe(produced - processed)
            phases.labels("offsets").observe(offsets_sent - produced)
            phases.labels("commit").observe(time.monotonic() - offsets_sent)
        except (KafkaException, RegistryUnavailableError) as exc:
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
                    self._raise_fatal(f"transaction failed: {err}", err, exc)
                log.warning("transaction_abort", error=str(err), records=len(records))
            self._abort(first_offsets)
            self.pending_reconcile = saved_reconcile
            self.customer_partition = saved_customers
            self.partner_checkpoints = saved_checkpoints
            if isinstance(exc, RegistryUnavailableError):
                self.svc._stop.wait(REGISTRY_RETRY_S)
            return
        if self.assigned_once:
            self.svc.health.ready = True
        self._finish_batch(tally, started)

    def _finish_batch(self, tally: BatchTally, started: float) -> None:
        self.classifier.commit()
        freeze_survivors()
        self.metrics.transaction_seconds.observe(time.monotonic() - started)
        self.metrics.publish(tally)
        self.metrics.accounts_held.set(len(self.classifier))
        self.metrics.partners_known.set(len(self.classifier.partners))

    def _batch_at_least_once(
        self,
        now: datetime,
        records: list[Message],
        partner_msgs: list[Message],
        out: BatchOutput,
        tally: BatchTally,
        next_offsets: dict[int, int],
    ) -> None:
        """Write the batch's outputs and wait for them, then its changelog and wait for it, then commit the
        offsets. A failed delivery ends the session: the next one restores from the changelog and the committed
        offsets, so the batch is repeated (decisions may repeat; nothing is lost). The changelog goes only
        after the outputs are delivered: a crash between the two would otherwise leave a state that has
        applied events whose decisions never left, and the repeat would take them for duplicates."""
        timeout_s = self.s.transaction_timeout_ms / 1000
        self._collect(now, records, partner_msgs, out, tally)
        for what, produce in (("produce", self._produce_outputs), ("produce changelog", self._produce_changelog)):
            with self.guard(what, timeout_s):
                produce(out, tally)
            self._flush_delivered(timeout_s)
        if next_offsets:
            offsets = [TopicPartition(self.s.subscription_topic, p, o) for p, o in sorted(next_offsets.items())]
            try:
                with self.guard("offset commit", timeout_s):
                    self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance took the partitions: repeat from the last commit
                refused = self.svc.refusal(kafka_error(exc))
                if refused is not None:
                    raise refused from None
                raise UncertainTransaction(f"offset commit failed: {kafka_error(exc)}") from exc

    def _flush_delivered(self, timeout_s: float) -> None:
        """Wait for every record produced so far; any not delivered ends the session (at-least-once), and a
        refusal by the brokers ends the service (repeating the batch would be refused again)."""
        with self.guard("flush", timeout_s):
            remaining = self.producer.flush(timeout_s)
        for error in self.delivery_errors:
            refused = self.svc.refusal(error)
            if refused is not None:
                raise refused
        if remaining or self.delivery_errors:
            errors = [str(e) for e in self.delivery_errors[:3]]
            self.delivery_errors.clear()
            raise UncertainTransaction(f"{remaining} records undelivered, delivery errors {errors}")

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.delivery_errors.append(err)

    def _collect(
        self, now: datetime, records: list[Message], partner_msgs: list[Message], out: BatchOutput, tally: BatchTally
    ) -> None:
        """Run the engine over the batch; fills `out` with every record to write."""
        fired = self.classifier.fire_due(now)
        tally.timers_fired += sum(1 for r in fired if isinstance(r, SubscriptionDecision))
        self._emit(fired, out, tally)
        self._apply_partner_messages(partner_msgs, now, out, tally)
        if self.pending_reconcile:
            self._emit(self.classifier.reconcile(now, sorted(self.pending_reconcile)), out, tally)
            self.pending_reconcile.clear()
        self._apply_subscription_messages(records, now, out, tally)
        self._release_partner_dead_letters(out, tally)
        for key, acct in self.classifier.changed_accounts():
            partition = self.customer_partition.get(key[1])
            if partition is None or partition not in self.owned:
                continue
            out.changelog.append(
                {
                    "key": account_key_bytes(*key),
                    "value": self.codec.encode_account(acct, self.classifier.account_view(acct)),
                    "partition": partition,
                }
            )

    def _apply_subscription_messages(
        self, records: list[Message], now: datetime, out: BatchOutput, tally: BatchTally
    ) -> None:
        """The per-event loop: bound names, counts kept in locals and added to the tally once per batch."""
        topic = self.s.subscription_topic
        decoded = self.codec.decode_subscription_batch(records)
        apply, emit = self.classifier.apply, self._emit
        customer_partition, partition_accounts = self.customer_partition, self.partition_accounts
        kinds: Counter[str] = Counter()
        duplicates = 0
        last_partition, keys = -1, set()
        for msg, item in zip(records, decoded, strict=True):
            if isinstance(item, InvalidEvent):
                self._dead_letter(msg, item, out, tally, "subscription")
                continue
            event = item
            if isinstance(event, PartnerProgramChanged):
                bad = UnknownEventType(f"partner_program_changed does not belong on {topic}")
                self._dead_letter(msg, bad, out, tally, "subscription")
                continue
            kinds[event.event_type._value_] += 1  # the code itself: a StrEnum member hashes in Python
            p = partition_of(msg)
            cid = event.customer_id
            if cid not in customer_partition:
                customer_partition[cid] = p
            if p != last_partition:  # a batch comes in runs of one partition's records
                last_partition, keys = p, partition_accounts.setdefault(p, set())
            keys.add((event.partner_id, cid))
            emitted = apply(event, now)
            if emitted is None:
                duplicates += 1
            elif emitted:
                emit(emitted, out, tally)
        for event_type, n in kinds.items():
            tally.events_in["subscription", event_type] += n
        applied = sum(kinds.values()) - duplicates
        if applied:
            tally.outcomes["applied"] += applied
        if duplicates:
            tally.outcomes["duplicate"] += duplicates

    def _apply_partner_messages(
        self, msgs: Sequence[Message], now: datetime, out: BatchOutput | None, tally: BatchTally | None
    ) -> None:
        decoded = self.codec.decode_partner_batch(list(msgs))
        for msg, item in zip(msgs, decoded, strict=True):
            if isinstance(item, InvalidEvent) or not isinstance(item, PartnerProgramChanged):
                error = (
                    item
                    if isinstance(item, InvalidEvent)
                    else UnknownEventType(f"{item.event_type} does not belong on {self.s.partner_topic}")
                )
                self.partner_dead_letters.setdefault(partition_of(msg), []).append((msg, error))
                continue
            records = self.classifier.apply(item, now)
            if tally is not None:
                tally.events_in["partner", item.event_type] += 1
                tally.outcomes["duplicate" if records is None else "applied"] += 1
                if out is not None and records:
                    self._emit(records, out, tally)

    def _apply_partner_catch_up(self, msgs: list[Message]) -> None:
        """Build the table before any account is held: nothing to emit yet (bad records wait for their
        dead-letter owner)."""
        tally = BatchTally()
        self._apply_partner_messages(msgs, self._now(), None, tally)
        self.classifier.commit()
        self.metrics.publish(tally)
        self.metrics.partners_known.set(len(self.classifier.partners))
        log.info("partner_table_loaded", records=len(msgs), partners=len(self.classifier.partners))

    def _partner_checkpoint_owner(self, partner_partition: int) -> int:
        return partner_partition % self.s.input_partitions

    def _partner_dead_letters_due(self) -> bool:
        return any(self._partner_checkpoint_owner(pp) in self.owned for pp in self.partner_dead_letters)

    def _release_partner_dead_letters(self, out: BatchOutput, tally: BatchTally) -> None:
        """Partner records are read by every instance and re-read on restart; the owner of changelog
        partition `pp % N` writes their dead letters once, remembering the offset in the changelog."""
        for pp in list(self.partner_dead_letters):
            owner = self._partner_checkpoint_owner(pp)
            if owner not in self.owned:
                continue
            done = self.partner_checkpoints.get(pp, -1)
            newest = done
            for msg, error in self.partner_dead_letters.pop(pp):
                if offset_of(msg) > done:
                    self._dead_letter(msg, error, out, tally, "partner")
                    newest = max(newest, offset_of(msg))
            if newest > done:
                self.partner_checkpoints[pp] = newest
                out.changelog.append(
                    {"key": partner_checkpoint_key(pp), "value": str(newest).encode(), "partition": owner}
                )

    def _emit(
        self, records: Iterable[SubscriptionDecision | CustomerStatusRecord], out: BatchOutput, tally: BatchTally
    ) -> None:
        decisions, statuses, counts = out.decisions, out.statuses, tally.decisions
        encode_decision, encode_status = self.codec.encode_decision, self.codec.encode_status
        for rec in records:
            if isinstance(rec, SubscriptionDecision):
                decisions.append({"key": rec.customer_id.encode(), "value": encode_decision(rec)})
                counts[rec.decision._value_] += 1  # as above
            else:
                statuses.append(
                    {"key": account_key_bytes(rec.partner_id, rec.customer_id), "value": encode_status(rec)}
                )

    def _dead_letter(self, msg: Message, error: InvalidEvent, out: BatchOutput, tally: BatchTally, source: str) -> None:
        record = dead_letter(msg, error, self.dead_letter_limit)
        out.dead_letters.append(record)
        truncated = truncated_parts(record[2])
        tally.outcomes["dead_letter"] += 1
        tally.dead_letters[error.reason] += 1
        tally.events_in[source, "undecodable"] += 1
        log.info(
            "dead_letter",
            reason=error.reason,
            message=error.message,
            topic=msg.topic(),
            partition=partition_of(msg),
            offset=offset_of(msg),
            **({"truncated": truncated} if truncated is not None else {}),
        )

    def _produce(self, out: BatchOutput, tally: BatchTally) -> None:
        self._produce_outputs(out, tally)
        self._produce_changelog(out, tally)

    def _produce_outputs(self, out: BatchOutput, tally: BatchTally) -> None:
        """Decisions, statuses and dead letters: what readers see."""
        s = self.s
        for topic, batch, kind in (
            (s.decision_topic, out.decisions, "decision"),
            (s.status_topic, out.statuses, "status"),
        ):
            if batch:
                self._produce_batch(topic, batch)
                tally.records_out[kind] += len(batch)
        for key, value, headers in out.dead_letters:
            self._produce_one(s.dead_letter_topic, key, value, headers)
        if out.dead_letters:
            tally.records_out["dead_letter"] += len(out.dead_letters)

    def _produce_changelog(self, out: BatchOutput, tally: BatchTally) -> None:
        """The changed account states. The changelog is co-partitioned with the input; produce_batch ignores a
        per-message "partition" (confluent-kafka 2.16.0), so each partition goes as its own batch."""
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for record in out.changelog:
            by_partition.setdefault(record.pop("partition"), []).append(record)
        for partition, batch in sorted(by_partition.items()):
            self._produce_batch(self.s.changelog_topic, batch, partition)
        if out.changelog:
            tally.records_out["changelog"] += len(out.changelog)

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
            for m in failed:
                err = m.pop("_error")
                if getattr(err, "code", lambda: None)() != KafkaError._QUEUE_FULL:
                    raise KafkaException(err)
            self.producer.poll(0.05)
            pending = failed

    def _produce_one(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _commit(self) -> None:
        timeout_s = self.s.transaction_timeout_ms / 1000
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

    def _abort(self, first_offsets: dict[int, int]) -> None:
        timeout_s = self.s.transaction_timeout_ms / 1000
        try:
            with self.guard("abort_transaction", timeout_s):
                self.producer.abort_transaction(timeout_s)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err is not None and err.fatal():
                self._raise_fatal(f"abort failed: {err}", err, exc)
            raise UncertainTransaction(f"abort_transaction did not complete: {err}") from exc
        self.metrics.aborts.inc()
        self.classifier.rollback()
        self.partners.rewind()
        for p, offset in first_offsets.items():
            if p in self.owned:
                self.consumer.seek(TopicPartition(self.s.subscription_topic, p, offset))

    def _raise_fatal(self, message: str, err: KafkaError | None, exc: Exception) -> None:
        """A fenced producer whose transaction outlived transaction.timeout.ms was fenced by the broker
        itself (it aborts such a transaction and bumps the epoch, e.g. across a broker restart): a new
        session takes the same transactional.id back at once, so no supervisor is needed. Any other fatal
        error, or a fencing by a newer instance of this id (a young transaction), ends the process."""
        age_s = time.monotonic() - self.transaction_started
        if is_fenced(err) and age_s * 1000 >= self.s.transaction_timeout_ms:
            raise UncertainTransaction(f"{message} (transaction open {age_s:.1f} s, timed out by the broker)") from exc
        raise FatalClientError(message) from exc

    # ------------------------------------------------------------------ rebalancing
    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        new = sorted({tp.partition for tp in partitions} - self.owned)
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
            total_records = 0
            total_accounts = 0
            for part in restored:
                keys = self._hold_restored(part)
                self.partition_accounts[part.partition] = keys
                for _pid, cid in keys:
                    self.customer_partition[cid] = part.partition
                total_records += part.records_read
                total_accounts += len(keys)
                self.metrics.restore_seconds.observe(part.seconds)
            self.metrics.restore_records.inc(total_records)
            freeze_survivors()
            self.owned.update(new)
            seconds = time.monotonic() - started
            log.info(
                "partitions_restored",
                partitions=new,
                changelog_records=total_records,
                accounts=total_accounts,
                seconds=round(seconds, 3),
                records_per_s=round(total_records / seconds) if seconds > 0 else None,
            )
        self.metrics.partitions_owned.set(len(self.owned))
        self.metrics.accounts_held.set(len(self.classifier))
        self.svc.health.ready = True

    def _await_previous_owner(self, partitions: list[int]) -> None:
        """Wait until no transaction of a previous owner still holds offsets of these partitions. An owner
        frozen after it sent its batch's offsets (a SIGSTOP, a long pause) can wake after the partitions moved
        and commit, its changelog records landing after a restore that started at once; the offsets fetched
        next would already include that batch. A `read_committed` consumer asks for stable offsets, so this
        fetch returns only once such a transaction is committed or aborted, and the restore that follows
        reads its records."""
        tps = [TopicPartition(self.s.subscription_topic, p) for p in partitions]
        self.consumer.committed(tps, timeout=RESTORE_TIMEOUT_S)

    def _hold_restored(self, part: RestoredPartition) -> set[AccountKey]:
        """Hold a restored partition's accounts as their saved bytes (built on first use); accounts whose
        partner view moved since they were saved, and those in the earlier release's Avro form, are
        re-evaluated before the next batch's events."""
        compact, legacy, checkpoints = split_restored(part)
        self.partner_checkpoints.update(checkpoints)
        held, latest = read_headers(compact)
        keys: set[AccountKey] = {(h[0], h[1]) for h in held}
        self.pending_reconcile.update(self.classifier.hold_all(held, decode_state))
        if latest is not None and latest > self.clock_floor:
            self.clock_floor = latest
        if legacy:
            states = self.codec.decode_states(legacy)
            self.classifier.load(states, self._now())
            old = {(st.partner_id, st.customer_id) for st in states}
            keys |= old
            self.pending_reconcile |= old
        return keys

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions} & self.owned
        for p in sorted(gone):
            keys = self.partition_accounts.pop(p, set())
            self.classifier.drop(keys)
            self.pending_reconcile -= keys
            for _pid, cid in keys:
                if self.customer_partition.get(cid) == p:
                    del self.customer_partition[cid]
        self.owned -= gone
        for p in gone:
            with suppress(KeyError):  # no lag was published for it yet
                self.metrics.consumer_lag.remove(str(p))
        self.partner_checkpoints = {
            pp: o for pp, o in self.partner_checkpoints.items() if self._partner_checkpoint_owner(pp) in self.owned
        }
        if gone:
            log.info("partitions_revoked", partitions=sorted(gone))
        self.metrics.partitions_owned.set(len(self.owned))
        self.metrics.accounts_held.set(len(self.classifier))

    def _update_lag(self) -> None:
        for p in sorted(self.owned):
            tp = TopicPartition(self.s.subscription_topic, p)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                position = self.consumer.position([tp])[0].offset
            except KafkaException:
                continue
            if high >= 0 and position >= 0:
                self.metrics.consumer_lag.labels(str(p)).set(max(0, high - position))
