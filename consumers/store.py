"""The service's state store: the accounts of the partitions this instance owns, and who owns what.

It wraps the pure `Classifier` with what only a Kafka host needs to know:

    owned partitions          -> which accounts are held (restored on assign, dropped on revoke)
    customer -> partition     -> where an account's changelog records go (co-partitioned with the input)
    pending re-evaluations    -> restored accounts whose partner view moved since they were saved
    partner checkpoints       -> how far each partner partition's records were dead-lettered, and how far
                                 they are in the service's own partner table topic
    partner log               -> which partner each partner record (by partition and offset) changed

A batch opens with `begin()` and ends with `commit()` or `rollback()`: a rollback puts the engine and
every one of these back as they were when the batch began, so an aborted transaction leaves no trace.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from confluent_kafka import Message

from consumers.changelog import (
    RestoredPartition,
    account_key_bytes,
    partner_checkpoint_key,
    split_restored,
    table_checkpoint_key,
)
from consumers.messages import offset_of
from consumers.state_format import entity_records, freeze_account, read_entities, read_headers, thaw
from multichannel.engine import Classifier, PartnerView
from multichannel.errors import InvalidEvent
from multichannel.model import AccountKey
from multichannel.state import AccountState

LegacyDecoder = Callable[[Sequence[bytes]], list[AccountState]]
"""Decodes changelog values of the first release's Avro form (through the Schema Registry)."""

ChangelogRecord = tuple[int, bytes, bytes]
"""(changelog partition, key, value)."""


def _offset(entry: tuple[int, str]) -> int:
    return entry[0]


class AccountStore:
    """The owned partitions' accounts and their bookkeeping; see the module docstring."""

    def __init__(
        self,
        classifier: Classifier,
        input_partitions: int,
        decode_legacy: LegacyDecoder,
        accounts_in_use: int | None = None,
    ) -> None:
        self.classifier = classifier
        self.input_partitions = input_partitions
        self._decode_legacy = decode_legacy
        self.owned: set[int] = set()
        self.partition_accounts: dict[int, set[AccountKey]] = {}
        """Input partition -> the accounts held for it (read on the hot path: `note`)."""
        self.customer_partition: dict[str, int] = {}
        """Customer -> input partition: the input is keyed by customer, so all of a customer's accounts share one."""
        self.pending_reconcile: set[AccountKey] = set()
        self.partner_checkpoints: dict[int, int] = {}
        self.table_checkpoints: dict[int, int] = {}
        self.partner_log: dict[int, list[tuple[int, str]]] = {}
        """Partner partition -> (offset, partner id) of every valid partner record read, in offset order: what a
        new owner of the partition's table checkpoint must write (the records past the checkpoint)."""
        self.partner_positions: dict[int, int] = {}
        """Partner partition -> the highest offset read (valid or not)."""
        self.bad_partner_records: dict[int, list[tuple[Message, InvalidEvent]]] = {}
        """Partner partition -> its bad records read and not yet dead-lettered, in offset order: every instance
        keeps them until the owner of the partition's checkpoint writes them (see `checkpoint_owner`)."""
        self.clock_floor = datetime.min.replace(tzinfo=UTC)
        """No clock reading goes below it: the latest batch's clock, or a restored account's evaluated_at."""
        self._new_keys: list[tuple[int, AccountKey]] = []
        self._new_customers: list[str] = []
        """Accounts first seen in the open batch: none was held before, so a rollback forgets them."""
        self._saved_reconcile: set[AccountKey] | None = None
        self._saved_checkpoints: dict[int, int] = {}
        self._saved_table: dict[int, int] = {}
        self._saved_positions: dict[int, int] = {}
        self._saved_log_lengths: dict[int, int] = {}
        self._thaw = functools.partial(thaw, window=classifier.dedup_window)
        if accounts_in_use is not None:
            classifier.keep_in_use(accounts_in_use, freeze_account, self._thaw)
        self._rewrite: set[AccountKey] = set()
        """Accounts restored from an earlier format: their first change writes them whole in this one."""
        self._rewritten: list[AccountKey] = []
        self._views: dict[AccountKey, int] = {}
        """Account -> hash of the partner view last written to (or restored from) the changelog: a view is
        written when it changes, not with every event."""
        self._views_written: list[tuple[AccountKey, int]] = []

    def __len__(self) -> int:
        return len(self.classifier)

    # ------------------------------------------------------------------ clock
    def now(self, wall: datetime) -> datetime:
        """The service clock (UTC wall time) made monotonic: decided_at never goes backwards for a key, even
        when the wall clock steps back or a partition moves from an instance whose clock ran ahead."""
        if wall < self.clock_floor:
            return self.clock_floor
        self.clock_floor = wall
        return wall

    # ------------------------------------------------------------------ ownership
    def assign(self, restored: Iterable[RestoredPartition], now: datetime) -> tuple[int, int]:
        """Hold newly assigned partitions' restored accounts; returns (changelog records read, accounts)."""
        records = accounts = 0
        for part in restored:
            keys = self._hold_restored(part, now)
            self.partition_accounts[part.partition] = keys
            for _pid, cid in keys:
                self.customer_partition[cid] = part.partition
            self.owned.add(part.partition)
            records += part.records_read
            accounts += len(keys)
        return records, accounts

    def _hold_restored(self, part: RestoredPartition, now: datetime) -> set[AccountKey]:
        """Hold a restored partition's accounts as their saved values (built on first use); accounts whose
        partner view moved since they were saved, and those in the first release's Avro form, are
        re-evaluated before the next batch's events. Accounts saved in an earlier format are written
        whole in this one at their first change."""
        values = split_restored(part)
        self.partner_checkpoints.update(values.checkpoints)
        self.table_checkpoints.update(values.table)
        held, latest = read_entities(values.accounts, values.entities)
        earlier, latest_earlier = read_headers(values.whole)
        if latest_earlier is not None and (latest is None or latest_earlier > latest):
            latest = latest_earlier
        keys: set[AccountKey] = {(h[0], h[1]) for h in held}
        views = self._views
        for h in held:
            if type(h[4]) is dict:
                views[h[0], h[1]] = hash(tuple(h[4].items()))
        old: set[AccountKey] = {(h[0], h[1]) for h in earlier}
        classifier = self.classifier
        self.pending_reconcile.update(classifier.hold_all(held, self._thaw))
        if earlier:
            self.pending_reconcile.update(classifier.hold_all(earlier, self._thaw))
        if latest is not None and latest > self.clock_floor:
            self.clock_floor = latest
        if values.avro:
            states = self._decode_legacy(values.avro)
            classifier.load(states, self.now(now))
            avro = {(st.partner_id, st.customer_id) for st in states}
            old |= avro
            self.pending_reconcile |= avro
        self._rewrite |= old
        return keys | old

    def revoke(self, partitions: Iterable[int]) -> set[int]:
        """Drop the accounts of revoked (or lost) partitions; returns those that were owned."""
        gone = set(partitions) & self.owned
        for p in sorted(gone):
            keys = self.partition_accounts.pop(p, set())
            self.classifier.drop(keys)
            for key in keys:
                self._views.pop(key, None)
            self.pending_reconcile -= keys
            for _pid, cid in keys:
                if self.customer_partition.get(cid) == p:
                    del self.customer_partition[cid]
        self.owned -= gone
        if self._rewrite:
            self._rewrite = {key for key in self._rewrite if self.customer_partition.get(key[1]) in self.owned}
        self.partner_checkpoints = {
            pp: o for pp, o in self.partner_checkpoints.items() if self.checkpoint_owner(pp) in self.owned
        }
        self.table_checkpoints = {
            pp: o for pp, o in self.table_checkpoints.items() if self.checkpoint_owner(pp) in self.owned
        }
        return gone

    def checkpoint_owner(self, partner_partition: int) -> int:
        """The input partition whose owner dead-letters a partner partition's bad records (once, for all)."""
        return partner_partition % self.input_partitions

    def note(self, partition: int, keys: Iterable[AccountKey]) -> None:
        """Events of `keys` arrived on `partition`: those accounts are held for it from now on (a batch comes
        in runs of one partition's records, so the processor hands over one run at a time)."""
        held = self.partition_accounts.setdefault(partition, set())
        customer_partition, new = self.customer_partition, self._new_keys
        for key in keys:
            if key not in held:
                held.add(key)
                new.append((partition, key))
                if key[1] not in customer_partition:
                    customer_partition[key[1]] = partition
                    self._new_customers.append(key[1])

    # ------------------------------------------------------------------ transactions
    def begin(self) -> None:
        """Open a batch: what `rollback` returns to."""
        self._new_keys.clear()
        self._new_customers.clear()
        self._saved_reconcile = set(self.pending_reconcile) if self.pending_reconcile else None
        self._saved_checkpoints = dict(self.partner_checkpoints)
        self._saved_table = dict(self.table_checkpoints)
        self._saved_positions = dict(self.partner_positions)
        self._saved_log_lengths = {pp: len(log) for pp, log in self.partner_log.items()}

    def commit(self) -> None:
        self.classifier.commit()
        self.classifier.evict()
        if self._rewritten:
            self._rewrite.difference_update(self._rewritten)
            self._rewritten.clear()
        if self._views_written:
            self._views.update(self._views_written)
            self._views_written.clear()
        for pp, bad in self.bad_partner_records.items():  # what a committed checkpoint covers is written
            done = self.partner_checkpoints.get(pp)
            if bad and done is not None and offset_of(bad[0][0]) <= done:
                bad[:] = [(m, e) for m, e in bad if offset_of(m) > done]
        self._new_keys.clear()
        self._new_customers.clear()
        self._saved_reconcile = None

    def rollback(self) -> None:
        """Undo everything since `begin`: the engine's changes, new customers, re-evaluations and checkpoints."""
        self.classifier.rollback()
        self._rewritten.clear()
        self._views_written.clear()
        for partition, key in self._new_keys:
            self.partition_accounts[partition].discard(key)
        for cid in self._new_customers:
            del self.customer_partition[cid]
        self._new_keys.clear()
        self._new_customers.clear()
        self.pending_reconcile = self._saved_reconcile or set()
        self._saved_reconcile = None
        self.partner_checkpoints = self._saved_checkpoints
        self.table_checkpoints = self._saved_table
        self.partner_positions = self._saved_positions
        for pp, log in self.partner_log.items():
            del log[self._saved_log_lengths.get(pp, 0) :]

    # ------------------------------------------------------------------ changelog
    def changelog_records(self) -> list[ChangelogRecord]:
        """What the batch changed in the accounts of the partitions this instance owns, as changelog records
        (`entity_records`): per account its own record or its progress, the subscriptions that moved, the
        dedup pages it completed, and its partner view when that is not the one last written."""
        classifier, owned, customer_partition = self.classifier, self.owned, self.customer_partition
        window, rewrite, views = classifier.dedup_window, self._rewrite, self._views
        out: list[ChangelogRecord] = []
        for key, acct, subscription_ids, appended, fields_moved in classifier.changes():
            partition = customer_partition.get(key[1])
            if partition is None or partition not in owned:
                continue
            whole = key in rewrite
            if whole:
                self._rewritten.append(key)
            view = classifier.account_view(acct)
            digest = hash(tuple(view.items()))  # a view is built in partner id order: the same view, the same hash
            moved_view: PartnerView | None = None
            if whole or views.get(key) != digest:
                self._views_written.append((key, digest))
                moved_view = view
            records = entity_records(
                account_key_bytes(*key),
                acct,
                subscription_ids,
                appended,
                window,
                fields_moved=fields_moved,
                partner_view=moved_view,
                whole=whole,
            )
            out += [(partition, k, v) for k, v in records]
        return out

    def read_partner_record(self, partner_partition: int, offset: int, partner_id: str | None) -> None:
        """A partner record was read (`partner_id` None for a bad one): what the table checkpoint's owner writes."""
        if offset > self.partner_positions.get(partner_partition, -1):
            self.partner_positions[partner_partition] = offset
            if partner_id is not None:
                self.partner_log.setdefault(partner_partition, []).append((offset, partner_id))

    def keep_bad_partner_record(self, partner_partition: int, msg: Message, error: InvalidEvent) -> None:
        """A bad partner record to dead-letter once its checkpoint's owner gets to it (a record read again after
        an aborted batch is kept once)."""
        bad = self.bad_partner_records.setdefault(partner_partition, [])
        if not bad or offset_of(bad[-1][0]) < offset_of(msg):
            bad.append((msg, error))

    def dead_letters_due(self) -> list[tuple[int, list[tuple[Message, InvalidEvent]]]]:
        """The bad partner records past their checkpoint, of the partner partitions whose checkpoint this
        instance owns."""
        due = []
        for pp, bad in self.bad_partner_records.items():
            if bad and self.checkpoint_owner(pp) in self.owned:
                done = self.partner_checkpoints.get(pp, -1)
                if offset_of(bad[-1][0]) > done:
                    due.append((pp, [(m, e) for m, e in bad if offset_of(m) > done]))
        return due

    def table_due(self) -> list[int]:
        """Partner partitions whose table checkpoint this instance owns and whose records read go past it."""
        return [
            pp
            for pp, position in self.partner_positions.items()
            if self.checkpoint_owner(pp) in self.owned and position > self.table_checkpoints.get(pp, -1)
        ]

    def table_partners(self, partner_partition: int) -> tuple[list[str], ChangelogRecord]:
        """The partners whose records of `partner_partition` lie past its table checkpoint (sorted), and the
        checkpoint record that moves it to the last record read."""
        done = self.table_checkpoints.get(partner_partition, -1)
        log = self.partner_log.get(partner_partition, [])
        start = bisect.bisect_right(log, done, key=_offset)
        partners = sorted({pid for _offset, pid in log[start:]})
        position = self.partner_positions[partner_partition]
        self.table_checkpoints[partner_partition] = position
        record = (
            self.checkpoint_owner(partner_partition),
            table_checkpoint_key(partner_partition),
            str(position).encode(),
        )
        return partners, record

    def checkpoint_record(self, partner_partition: int, offset: int) -> ChangelogRecord:
        """Remember that a partner partition's bad records up to `offset` were dead-lettered."""
        self.partner_checkpoints[partner_partition] = offset
        return (
            self.checkpoint_owner(partner_partition),
            partner_checkpoint_key(partner_partition),
            str(offset).encode(),
        )
