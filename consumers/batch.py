"""One batch of input records through the engine, without Kafka: `process(records) -> outputs`.

    due timers                                   -> decisions, statuses
    partner records -> partner table             -> re-classified accounts of owned partitions
    restored accounts whose partner view moved   -> what their re-evaluation changed
    subscription records: bytes -> Avro -> event -> classify -> decisions, statuses, dead letters
    partner dead letters this instance owns      -> dead letters, checkpoint
    changed accounts                             -> changelog records

The processor reads records (anything with a confluent-kafka `Message`'s accessors) and writes
nothing: it fills a `BatchOutput` that the commit strategy (`consumers.commit`) produces.
Its state is the `AccountStore`; the caller opens and ends the store's batch around it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import Message

from config.logs import get_logger
from consumers.changelog import account_key_bytes
from consumers.dead_letters import dead_letter, truncated_parts
from consumers.messages import Headers, offset_of, partition_of
from consumers.metrics import BatchTally
from consumers.state_format import encode_partner_entry
from consumers.store import AccountStore
from multichannel.errors import InvalidEvent, RecordRefused, UnknownEventType
from multichannel.model import AccountKey, Event, PartnerProgramChanged
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision

if TYPE_CHECKING:
    from consumers.tracing import BatchTrace

log = get_logger("multichannel.service")


class Codec(Protocol):
    """What the processor needs of the wire: `consumers.codec.ServiceCodec` in the service."""

    def decode_subscription_batch(self, msgs: Sequence[Message]) -> list[Event | InvalidEvent]: ...

    def decode_partner_batch(self, msgs: Sequence[Message]) -> list[Event | InvalidEvent]: ...

    def encode_decision(self, rec: SubscriptionDecision, /) -> bytes: ...

    def encode_status(self, rec: CustomerStatusRecord, /) -> bytes: ...


@dataclass(frozen=True)
class RefusedRecord:
    """An account whose record the brokers refuse (or would): its events of the batch become dead letters."""

    account: AccountKey
    topic: str
    size: int
    """Bytes of the record, counted as `consumers.limits.record_size` does."""
    limit: int
    """The topic's limit (0 when the brokers reported the refusal)."""
    why: str
    """`too large` (found before producing) or the brokers' error name."""

    def message(self) -> str:
        limit = f" of at most {self.limit}" if self.limit else ""
        return f"the account's record on {self.topic} ({self.size} bytes) is refused{limit}: {self.why}"


@dataclass
class BatchOutput:
    """Everything one transaction writes, gathered before anything is produced."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes | None, Headers]] = field(default_factory=list)
    changelog: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    """(changelog partition, key, value)."""
    partner_table: list[dict[str, Any]] = field(default_factory=list)
    """Entries of the service's own partner table topic (key: the partner id)."""
    account_keys: dict[bytes, AccountKey] = field(default_factory=dict)
    """Account key bytes (`partner_id:customer_id`) -> account, of every account the batch writes a record of."""
    refused: dict[AccountKey, tuple[RefusedRecord, int]] = field(default_factory=dict)
    """Refused accounts the batch touched, with how many of their events it dead-lettered."""
    traced: bool = False
    """Some decisions or statuses carry headers (a trace context, `consumers.tracing`)."""
    timers_pending: bool = False
    """Due timers were left for the next batch (the slice reached the limit): this batch took none of its
    input, which the caller reads again once the timers are fired (events apply after due timers)."""

    def account_of_key(self, key: bytes) -> AccountKey | None:
        """The account of a status or changelog key (a changelog key is the account key, or the account key,
        0x1f and a suffix for a part of the account); None for keys of no account (checkpoints)."""
        return self.account_keys.get(key.split(b"\x1f", 1)[0])


class BatchProcessor:
    """Runs batches over the store; see the module docstring."""

    def __init__(
        self,
        store: AccountStore,
        codec: Codec,
        *,
        subscription_topic: str,
        partner_topic: str,
        dead_letter_limit: int,
        timer_batch_records: int | None = None,
    ) -> None:
        """`timer_batch_records`: most timer records one batch fires (None: every due timer at once)."""
        self.store = store
        self.codec = codec
        self.subscription_topic = subscription_topic
        self.partner_topic = partner_topic
        self.dead_letter_limit = dead_letter_limit
        self.timer_batch_records = timer_batch_records
        self._reconcile_queue: list[AccountKey] = []
        self._reconcile_pos = 0
        """The pending re-evaluations in key order, sorted once, and how far the slices have taken them."""
        self.refused: dict[AccountKey, RefusedRecord] = {}
        """Accounts whose records are refused: their events of the batch become dead letters (RECORD_REFUSED)
        and whatever else changed them in the batch is undone. Kept until a batch with input commits."""
        self._refused_events: Counter[AccountKey] = Counter()
        self.trace: BatchTrace | None = None
        """The spans of the running batch when tracing is on (`consumers.tracing`); None when off."""

    # ------------------------------------------------------------------ what is due
    def timers_due(self, now: datetime) -> bool:
        return self.store.classifier.timers_due(now)

    def work_pending(self) -> bool:
        """Work that needs a batch even without new input: re-evaluations, partner dead letters to write."""
        store = self.store
        return bool(store.pending_reconcile) or bool(store.dead_letters_due()) or bool(store.table_due())

    # ------------------------------------------------------------------ one batch
    def process(
        self, records: Sequence[Message], partner_records: Sequence[Message], now: datetime, tally: BatchTally
    ) -> BatchOutput:
        """Run the engine over one batch at `now`; every record the batch writes, in `BatchOutput`.

        Due timers fire first, at most `timer_batch_records` records of them; while some are left (a
        month-end storm), the batch fires only its slice and leaves its input unapplied
        (`out.timers_pending`): a transaction stays bounded and events still apply after the timers due
        before them. Re-evaluations of restored accounts go the same way when more accounts wait for one than
        a slice holds records (every account, after a switch of rule book)."""
        out = BatchOutput()
        store = self.store
        classifier = store.classifier
        fired = classifier.fire_due(now, self.timer_batch_records)
        tally.timers_fired += sum(1 for r in fired if isinstance(r, SubscriptionDecision))
        self._emit(fired, out, tally)
        limit = self.timer_batch_records
        sliced = not classifier.timers_due(now) and limit is not None and len(store.pending_reconcile) > limit
        if sliced:
            assert limit is not None
            self._emit(self._reconcile_slice(now, limit), out, tally)
        if sliced or classifier.timers_due(now):
            out.timers_pending = True
            tally.input_records = 0
            self._finish(out, tally)
            return out
        self._apply_partner_records(partner_records, now, out, tally)
        if store.pending_reconcile:
            self._emit(classifier.reconcile(now, sorted(store.pending_reconcile)), out, tally)
            store.pending_reconcile.clear()
        self._apply_subscription_records(records, now, out, tally)
        self._release_partner_dead_letters(out, tally)
        self._write_partner_table(out)
        self._finish(out, tally)
        if self.trace is not None:
            self.trace.tag_dead_letters(out)
        return out

    def _reconcile_slice(self, now: datetime, limit: int) -> list[OutputRecord]:
        """Re-evaluate waiting accounts in key order until their records, or the accounts taken, reach `limit` (an
        account's records are never split); the rest wait for the next batch. The order is sorted once and read
        on: it is sorted again when the waiting set is not what it left (a rollback put a slice back, a restore
        or a revocation)."""
        pending = self.store.pending_reconcile
        queue, pos = self._reconcile_queue, self._reconcile_pos
        if len(queue) - pos != len(pending):
            queue = self._reconcile_queue = sorted(pending)
            pos = 0
        reconcile = self.store.classifier.reconcile
        records: list[OutputRecord] = []
        end = len(queue)
        taken = 0
        while pos < end and len(records) < limit and taken < limit:
            key = queue[pos]
            pos += 1
            if key in pending:
                records += reconcile(now, (key,))
                pending.discard(key)
                taken += 1  # each one saved, changed or not: the slice bounds its changelog records too
        if pending:
            self._reconcile_pos = pos
        else:
            self._reconcile_queue, self._reconcile_pos = [], 0
        return records

    def _finish(self, out: BatchOutput, tally: BatchTally) -> None:
        """Refused accounts' changes undone and their records dropped; then the changelog of the rest."""
        if self.refused:
            self._drop_refused(out, tally)
        store = self.store
        keys = out.account_keys
        for key, _acct in store.classifier.changed_accounts():
            keys[account_key_bytes(*key)] = key
        out.changelog.extend(store.changelog_records())

    def _drop_refused(self, out: BatchOutput, tally: BatchTally) -> None:
        refused = self.refused
        touched = {k for k, _acct in self.store.classifier.changed_accounts() if k in refused}
        touched.update(m["account"] for m in out.decisions if m["account"] in refused)
        touched.update(m["account"] for m in out.statuses if m["account"] in refused)
        out.decisions = [m for m in out.decisions if m["account"] not in refused]
        out.statuses = [m for m in out.statuses if m["account"] not in refused]
        self.store.classifier.revert(refused)
        events = self._refused_events
        touched.update(events)
        for key in sorted(touched):
            out.refused[key] = (refused[key], events[key])
            tally.records_refused[refused[key].topic] += 1
        events.clear()

    def forget_refused(self) -> None:
        """A batch with input committed: the refused accounts' events of it are dead letters; later events
        of those accounts are tried again."""
        self.refused.clear()

    def catch_up(self, partner_records: Sequence[Message], now: datetime) -> BatchTally:
        """Build the partner table before any account is held: nothing to emit yet (bad records wait for their
        dead-letter owner)."""
        tally = BatchTally()
        self._apply_partner_records(partner_records, now, None, tally)
        self.store.classifier.commit()
        return tally

    def _apply_partner_records(
        self, msgs: Sequence[Message], now: datetime, out: BatchOutput | None, tally: BatchTally
    ) -> None:
        classifier = self.store.classifier
        decoded = self.codec.decode_partner_batch(list(msgs))
        read = self.store.read_partner_record
        apply = classifier.apply
        traced = None if self.trace is None or out is None else self.trace.attribution(apply, msgs, decoded, out)
        if traced is not None:
            apply = traced.apply
        for msg, item in zip(msgs, decoded, strict=True):
            if not isinstance(item, PartnerProgramChanged):
                read(partition_of(msg), offset_of(msg), None)
                error = (
                    item
                    if isinstance(item, InvalidEvent)
                    else UnknownEventType(f"{item.event_type} does not belong on {self.partner_topic}")
                )
                self.store.keep_bad_partner_record(partition_of(msg), msg, error)
                continue
            read(partition_of(msg), offset_of(msg), item.partner_id)
            emitted = apply(item, now)
            tally.events_in["partner", item.event_type] += 1
            tally.outcomes["duplicate" if emitted is None else "applied"] += 1
            if out is not None and emitted:
                self._emit(emitted, out, tally)
        if traced is not None:
            traced.close()

    def _apply_subscription_records(
        self, records: Sequence[Message], now: datetime, out: BatchOutput, tally: BatchTally
    ) -> None:
        """The per-event loop: bound names, counts kept in locals and added to the tally once per batch."""
        topic = self.subscription_topic
        decoded = self.codec.decode_subscription_batch(records)
        apply, emit, note = self.store.classifier.apply, self._emit, self.store.note
        traced = None if self.trace is None else self.trace.attribution(apply, records, decoded, out)
        if traced is not None:  # tracing on: one check per batch, the loop is the same
            apply = traced.apply
        refused = self.refused
        kinds: Counter[str] = Counter()
        duplicates = 0
        run_partition, run_keys = -1, set[AccountKey]()  # a batch comes in runs of one partition's records
        for msg, item in zip(records, decoded, strict=True):
            if isinstance(item, InvalidEvent):
                self._dead_letter(msg, item, out, tally, "subscription")
                continue
            event = item
            if isinstance(event, PartnerProgramChanged):
                bad = UnknownEventType(f"partner_program_changed does not belong on {topic}")
                self._dead_letter(msg, bad, out, tally, "subscription")
                continue
            if refused and (event.partner_id, event.customer_id) in refused:
                self._refuse(msg, refused[event.partner_id, event.customer_id], out, tally)
                continue
            kinds[event.event_type._value_] += 1  # the code itself: a StrEnum member hashes in Python
            p = partition_of(msg)
            if p != run_partition:
                if run_keys:
                    note(run_partition, run_keys)
                run_partition, run_keys = p, set()
            run_keys.add((event.partner_id, event.customer_id))
            emitted = apply(event, now)
            if emitted is None:
                duplicates += 1
            elif emitted:
                emit(emitted, out, tally)
        if run_keys:
            note(run_partition, run_keys)
        if traced is not None:
            traced.close()
        for event_type, n in kinds.items():
            tally.events_in["subscription", event_type] += n
        applied = sum(kinds.values()) - duplicates
        if applied:
            tally.outcomes["applied"] += applied
        if duplicates:
            tally.outcomes["duplicate"] += duplicates

    def _release_partner_dead_letters(self, out: BatchOutput, tally: BatchTally) -> None:
        """Partner records are read by every instance and re-read on restart; the owner of changelog
        partition `pp % N` writes their dead letters once, remembering the offset in the changelog."""
        store = self.store
        for pp, due in store.dead_letters_due():
            for msg, error in due:
                self._dead_letter(msg, error, out, tally, "partner")
            out.changelog.append(store.checkpoint_record(pp, offset_of(due[-1][0])))

    def _write_partner_table(self, out: BatchOutput) -> None:
        """The owner of a partner partition's table checkpoint writes the current entry of every partner whose
        records past the checkpoint it has read, so the table topic holds the winner by (occurred_at,
        event_id) whatever the partner topic's compaction keeps (it keeps the last arrival)."""
        store = self.store
        entries = store.classifier.partners.entries
        for pp in store.table_due():
            partners, checkpoint = store.table_partners(pp)
            for pid in partners:
                entry = entries.get(pid)
                if entry is not None:
                    out.partner_table.append({"key": pid.encode(), "value": encode_partner_entry(pid, entry)})
            out.changelog.append(checkpoint)

    def _emit(
        self, records: Iterable[SubscriptionDecision | CustomerStatusRecord], out: BatchOutput, tally: BatchTally
    ) -> None:
        decisions, statuses, counts = out.decisions, out.statuses, tally.decisions
        encode_decision, encode_status = self.codec.encode_decision, self.codec.encode_status
        for rec in records:
            if isinstance(rec, SubscriptionDecision):
                decisions.append(
                    {
                        "key": rec.customer_id.encode(),
                        "value": encode_decision(rec),
                        "account": (rec.partner_id, rec.customer_id),
                    }
                )
                counts[rec.decision._value_] += 1  # the code itself: a StrEnum member hashes in Python
            else:
                account = (rec.partner_id, rec.customer_id)
                statuses.append({"key": account_key_bytes(*account), "value": encode_status(rec), "account": account})

    def _refuse(self, msg: Message, refusal: RefusedRecord, out: BatchOutput, tally: BatchTally) -> None:
        """A valid event of a refused account: a dead letter, not applied."""
        record = dead_letter(msg, RecordRefused(refusal.message()), self.dead_letter_limit)
        out.dead_letters.append(record)
        tally.outcomes["dead_letter"] += 1
        tally.dead_letters[RecordRefused.reason] += 1
        self._refused_events[refusal.account] += 1

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
