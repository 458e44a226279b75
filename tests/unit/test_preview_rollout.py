"""Preview equals rollout, without a broker: a `seed` instance runs the preview bench's workload batch by
batch (`BatchProcessor`, fake records); the preview reads the changelog it wrote (the live reader's own
partition code) and gives what the preview of the JSON-lines export of the same events gives; an instance
started with `current` on that changelog emits, in its first batch, exactly the previewed changes, once each,
stamped 2026-12.1 with no causing event, and a second restart emits nothing."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from benchmarks.preview_workload import preview_events
from config.settings import Settings
from consumers.batch import BatchProcessor
from consumers.changelog import RestoredPartition
from consumers.metrics import BatchTally
from consumers.preview_source import Books, compare_accounts, partition_accounts, preview_export
from consumers.state_format import decode_partner_entry
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.model import PartnerProgramChanged
from multichannel.parse import parse_event
from multichannel.partners import PartnerTable
from multichannel.preview import Change, change_from_record
from multichannel.records import SubscriptionDecision
from multichannel.rulebooks import CURRENT, SEED, RuleBook
from multichannel.state import Account
from tests.unit.test_restore_property import FakeRecord, _partition
from tests.unit.test_timer_storm import RecordingCodec

PARTITIONS = 3
ACCOUNTS = 600
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


class Changes:
    """A preview's sink that keeps the changes."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def write(self, change: Change) -> None:
        self.changes.append(change)


def instance(book: RuleBook) -> tuple[BatchProcessor, RecordingCodec]:
    store = AccountStore(Classifier(rulebook=book), input_partitions=PARTITIONS, decode_legacy=lambda values: [])
    codec = RecordingCodec()
    proc = BatchProcessor(store, codec, subscription_topic="subs", partner_topic="partners", dead_letter_limit=1 << 20)
    return proc, codec


def batch(
    proc: BatchProcessor, records: Sequence[FakeRecord], partners: Sequence[FakeRecord], now: datetime
) -> list[tuple[int, bytes, bytes]]:
    proc.store.begin()
    out = proc.process(records, partners, proc.store.now(now), BatchTally())  # type: ignore[arg-type]
    proc.store.commit()
    return out.changelog


def records(accounts: int) -> tuple[list[FakeRecord], list[FakeRecord]]:
    """The workload as the two input topics' records (subscription records in runs of one partition)."""
    offsets: dict[tuple[str, int], int] = {}
    subs: list[FakeRecord] = []
    partners: list[FakeRecord] = []
    for event in map(parse_event, preview_events(accounts, NOW.date())):
        if isinstance(event, PartnerProgramChanged):
            slot = ("partners", _partition(event.partner_id, 2))
        else:
            slot = ("subs", _partition(event.customer_id, PARTITIONS))
        offsets[slot] = offsets.get(slot, -1) + 1
        (partners if slot[0] == "partners" else subs).append(FakeRecord(event, slot[1], offsets[slot], slot[0]))
    return sorted(subs, key=lambda r: r.part), partners


def restored(changelog: Iterable[tuple[int, bytes, bytes]]) -> list[RestoredPartition]:
    latest: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
    for p, key, value in changelog:
        latest[p][key] = value
    return [RestoredPartition(p, values, len(values), 0.0) for p, values in latest.items()]


def current_accounts(changelog: Iterable[tuple[int, bytes, bytes]]) -> list[Account]:
    """Every account the changelog holds, decoded."""
    return [a for part in restored(changelog) for a in partition_accounts(part, 256, lambda values: [])[0]]


def started(
    book: RuleBook, table: list[bytes], partners: list[FakeRecord], parts: list[RestoredPartition], now: datetime
) -> tuple[BatchProcessor, RecordingCodec]:
    """An instance started as the service starts: its partner table topic, the partner topic, the changelog."""
    proc, codec = instance(book)
    proc.store.classifier.partners.restore(map(decode_partner_entry, table))
    proc.catch_up(partners, proc.store.now(now))  # type: ignore[arg-type]
    proc.store.assign(parts, now)
    return proc, codec


def test_the_first_batch_after_a_restart_with_current_commits_the_previewed_changes(tmp_path: Path) -> None:
    """The preview of the changelog is the preview of the export; the rollout's decisions are the preview's `to`
    verdicts, subscription for subscription, each once."""
    subs, partners = records(ACCOUNTS)
    seed, _ = instance(SEED)
    seed.store.assign([RestoredPartition(p, {}, 0, 0.0) for p in range(PARTITIONS)], NOW)
    seed.store.begin()
    out = seed.process(subs, partners, seed.store.now(NOW), BatchTally())  # type: ignore[arg-type]
    seed.store.commit()
    changelog = out.changelog + batch(seed, [], [], NOW + timedelta(minutes=5))
    table = [r["value"] for r in out.partner_table]

    clock = NOW + timedelta(minutes=10)
    books = Books(SEED, CURRENT, clock)
    partner_table = PartnerTable()
    partner_table.restore(map(decode_partner_entry, table))
    for r in partners:
        partner_table.apply(r.event)  # type: ignore[arg-type]
    sink = Changes()
    for part in restored(changelog):
        accounts, versions = partition_accounts(part, 256, lambda values: [])
        assert versions.keys() == {SEED.version}
        assert compare_accounts(accounts, partner_table, books, sink).stale == 0  # type: ignore[arg-type]
    assert len(sink.changes) > 300
    export = tmp_path / "events.jsonl"
    export.write_text("".join(json.dumps(e) + "\n" for e in preview_events(ACCOUNTS, NOW.date())))
    written = tmp_path / "export.jsonl"
    from_export, _counts = preview_export(export, Settings(), books, output=written, form="jsonl")
    exported = [change_from_record(orjson.loads(line)) for line in written.read_bytes().splitlines()[:-1]]
    assert sorted(exported) == sorted(sink.changes)
    assert (from_export.accounts, from_export.subscriptions, from_export.changed) == (
        ACCOUNTS,
        sum(len(a.subscriptions) for a in current_accounts(changelog)),
        len(sink.changes),
    )

    current, codec = started(CURRENT, table, partners, restored(changelog), clock)
    rollout_changelog = batch(current, [], [], clock)
    decisions = [r for r in codec.emitted if isinstance(r, SubscriptionDecision)]
    assert {(d.rulebook_version, d.caused_by_event_id, d.decided_at) for d in decisions} == {("2026-12.1", None, clock)}
    got = [
        (
            (d.partner_id, d.customer_id, d.subscription_id),
            (d.decision, d.reason, d.rule, d.next_actions, d.blocked_until, d.relationship_via_partner_ids),
        )
        for d in decisions
    ]
    want = [(c.key, tuple(c.after)) for c in sink.changes]
    assert len({key for key, _v in got}) == len(got), "a subscription was emitted twice"
    assert sorted(got) == sorted(want)

    again, codec_again = started(CURRENT, table, partners, restored(changelog + rollout_changelog), clock)
    batch(again, [], [], clock + timedelta(minutes=1))
    assert codec_again.emitted == [], "a second restart with the same book emitted records"
