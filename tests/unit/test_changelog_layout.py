"""The changelog's key-per-entity layout (format 0x03), through the store: what a batch writes follows what
it changed, a restore from the compacted changelog rebuilds every account exactly (subscriptions, flags,
status, clock, dedup window), and values of every earlier format restore and are written in this one at
their first change."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from consumers.changelog import MixedReleases, RestoredPartition
from consumers.store import AccountStore, ChangelogRecord
from multichannel.codec import state_from_record
from multichannel.engine import Classifier
from multichannel.model import (
    BillingModel,
    Channel,
    Event,
    PartnerProgramChanged,
    Program,
    SubscriptionCancelled,
    SubscriptionPurchased,
)
from multichannel.state import AccountState
from schemas import ACCOUNT_STATE, parsed_schema
from tests.unit.test_engine_restore import CLOCK_START, events, fixture_run

DATA = Path(__file__).parent / "data"
PARTITION = 0


def new_store(window: int = 256) -> AccountStore:
    store = AccountStore(Classifier(dedup_window=window), input_partitions=1, decode_legacy=avro_states)
    store.owned.add(PARTITION)
    return store


def avro_states(values: Sequence[bytes]) -> list[AccountState]:
    """The first release's Avro values decoded as the registry would (schema id 1 is the account schema)."""
    schema = parsed_schema(ACCOUNT_STATE)
    out = []
    for value in values:
        assert value[:5] == b"\x00\x00\x00\x00\x01"
        record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, schema)
        assert isinstance(record, dict)
        out.append(state_from_record(record))
    return out


def batch(store: AccountStore, evs: Iterable[Event], clock: datetime) -> list[ChangelogRecord]:
    """One committed batch as the service runs it: due timers, the events, the changelog records."""
    store.begin()
    engine = store.classifier
    engine.fire_due(clock)
    keys = []
    for ev in evs:
        engine.apply(ev, clock)
        if not isinstance(ev, PartnerProgramChanged):
            keys.append((ev.partner_id, ev.customer_id))
    store.note(PARTITION, keys)
    records = store.changelog_records()
    store.commit()
    return records


def compacted(records: Iterable[ChangelogRecord], into: dict[bytes, bytes] | None = None) -> dict[bytes, bytes]:
    latest = {} if into is None else into
    for partition, key, value in records:
        assert partition == PARTITION
        latest[key] = value
    return latest


def restored(values: dict[bytes, bytes], partners: Classifier, window: int = 256) -> AccountStore:
    store = AccountStore(
        Classifier(dedup_window=window, partners=partners.partners), input_partitions=1, decode_legacy=avro_states
    )
    store.assign([RestoredPartition(PARTITION, dict(values), len(values), 0.0)], CLOCK_START)
    return store


def states(store: AccountStore) -> dict[tuple[str, str], AccountState]:
    engine = store.classifier
    return {key: state for key in sorted(engine) if (state := engine.get(key)) is not None}


def purchase(
    eid: str, sid: str, *, day: int = 1, key: tuple[str, str] = ("P1", "C1"), seller: str | None = None
) -> SubscriptionPurchased:
    pid, cid = key
    return SubscriptionPurchased(
        eid,
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=day),
        pid,
        cid,
        sid,
        "O365",
        BillingModel.LICENSE,
        Channel.MICROSOFT_DIRECT if seller is None else Channel.THIRD_PARTY,
        seller,
        1,
        date(2026, 1, 1),
        date(2027, 1, 1 + day % 28),
    )


def test_a_restore_from_the_compacted_changelog_rebuilds_every_account() -> None:
    """A generated stream in batches (timers, flags, partner changes, duplicates), the changelog compacted:
    a store restored from it holds every account as the live one does, dedup window and sequence included,
    and one restored at every tenth batch goes on to the same accounts."""
    live = new_store()
    values: dict[bytes, bytes] = {}
    clock = CLOCK_START
    stream = events(7)
    for i in range(0, len(stream), 20):
        clock += timedelta(days=7)
        compacted(batch(live, stream[i : i + 20], clock), values)
        if i % 200 == 0:
            again = restored(values, live.classifier)
            assert states(again) == states(live)
    again = restored(values, live.classifier)
    assert states(again) == states(live)
    assert len(again) == len(live) > 30


def test_what_an_event_writes_does_not_grow_with_the_account() -> None:
    """An account of 2,000 subscriptions and one of 20: one more purchase writes that subscription alone (with
    the account's progress: its sequence, clock and open dedup page), the same bytes but for the open dedup
    page, whatever the account holds."""
    written = {}
    for size in (20, 2_000):
        store = new_store()
        batch(store, [purchase(f"e{i}", f"S{i:05}") for i in range(size)], CLOCK_START)
        records = batch(store, [purchase("e-next", "S-next")], CLOCK_START + timedelta(hours=1))
        keys = sorted(key for _p, key, _v in records)
        assert keys == [b"P1:C1\x1fsS-next"], "the subscription, carrying the account's progress"
        written[size] = sum(len(k) + len(v) for _p, k, v in records)
    assert written[2_000] <= written[20] + 100, written  # the open dedup page differs, by < 16 ids
    assert written[2_000] < 2_048


def test_the_dedup_window_survives_a_restore_page_by_page() -> None:
    """Past the window, the restored account still knows its last `window` event ids (as pages written once
    each and the open page in the account's record) and no older one."""
    window = 64
    store = new_store(window)
    values: dict[bytes, bytes] = {}
    sent = []
    for b in range(10):  # 10 batches of 13 purchases: pages complete inside batches and across them
        evs = [purchase(f"e{b}-{i}", f"S{b}-{i}") for i in range(13)]
        sent += [ev.event_id for ev in evs]
        records = batch(store, evs, CLOCK_START)
        pages = [k for _p, k, _v in records if b"\x1fd" in k]
        assert len(pages) <= 1 + 13 // 16, "a page is written when it completes, not at every event"
        compacted(records, values)
    again = restored(values, store.classifier, window)
    state = again.classifier.get(("P1", "C1"))
    assert state is not None
    assert list(state.recent_event_ids) == sent[-window:]
    assert state.appended_ids == len(sent)
    assert again.classifier.apply(purchase(sent[-window], "S-x"), CLOCK_START) is None, "a repeat in the window"
    assert again.classifier.apply(purchase(sent[-window - 1], "S-y"), CLOCK_START) is not None


def test_sellers_and_timers_are_read_from_the_subscriptions_headers() -> None:
    """A restored account is held undecoded, yet indexed under its sellers and scheduled at its pending
    term ends: a partner change of a seller re-evaluates it, and its term end fires."""
    store = new_store()
    values = compacted(batch(store, [purchase("e1", "S1", seller="P9"), purchase("e2", "S2", day=3)], CLOCK_START))
    again = restored(values, store.classifier)
    assert again.classifier.held == 1
    assert again.classifier.affected_by_partner("P9") == {("P1", "C1")}
    assert sorted(again.classifier.deadlines) == sorted(store.classifier.deadlines)
    assert again.classifier.held == 1, "nothing was decoded to index or schedule it"


def test_values_of_every_earlier_format_restore_and_are_rewritten_whole_once() -> None:
    """Fixtures written by earlier releases (0x00 Avro, 0x01, 0x02) restore to the accounts their run held; an
    account's first change writes it whole in 0x03 (every subscription), and later ones only what moved;
    a restore of the changelog that then mixes 0x03 with earlier values gives the same accounts."""
    engine, clock = fixture_run()
    expected = {key: state for key in sorted(engine) if (state := engine.get(key)) is not None}
    for name, first_byte in (("changelog_v0.jsonl", 0), ("changelog_v1.jsonl", 1), ("changelog_v2.jsonl", 2)):
        lines = [json.loads(line) for line in (DATA / name).open()]
        values = {f"{a}:{b}".encode(): base64.b64decode(line["value"]) for line in lines for a, b in [line["key"]]}
        assert {v[0] for v in values.values()} == {first_byte}
        store = restored(values, engine)
        got = states(store)
        if first_byte == 0:  # the Avro form kept no clock: the restore counts it as evaluated then
            got = {k: s._replace(evaluated_at=expected[k].evaluated_at) for k, s in got.items()}
        assert got == expected, name
        key = next(iter(expected))
        bigger = max(expected, key=lambda k: len(expected[k].subscriptions))
        evs = [purchase(f"late-{name}", "S-late", key=bigger)]
        first = batch(store, evs, clock)
        subs = {k for _p, k, _v in first if b"\x1fs" in k}
        assert len(subs) == len(expected[bigger].subscriptions) + 1, "written whole once"
        assert all(v[0] == 3 for _p, _k, v in first)
        again = batch(store, [purchase(f"later-{name}", "S-later", key=bigger)], clock)
        assert len([k for _p, k, _v in again if b"\x1fs" in k]) == 1, "then only what moved"
        mixed = restored(compacted(first + again, values), engine)
        assert states(mixed) == states(store)
        assert key in states(mixed)


def test_an_aborted_batch_is_not_taken_as_the_rewrite() -> None:
    """An account restored from 0x02 whose first change is rolled back is still written whole the next time."""
    lines = [json.loads(line) for line in (DATA / "changelog_v2.jsonl").open()]
    values = {f"{a}:{b}".encode(): base64.b64decode(line["value"]) for line in lines for a, b in [line["key"]]}
    store = restored(values, Classifier())
    key = next(k for k, s in states(store).items() if len(s.subscriptions) > 1)
    ev = purchase("late", "S-late", key=key)
    store.begin()
    store.classifier.apply(ev, CLOCK_START + timedelta(days=400))
    store.note(PARTITION, [key])
    prefix = f"{key[0]}:{key[1]}\x1fs".encode()
    assert len([k for _p, k, _v in store.changelog_records() if k.startswith(prefix)]) == 3
    store.rollback()
    records = batch(store, [ev], CLOCK_START + timedelta(days=400))
    assert len([k for _p, k, _v in records if k.startswith(prefix)]) == len(states(store)[key].subscriptions) == 3


def test_a_cancellation_rewrites_its_subscription_only() -> None:
    """A cancellation rewrites the account record and its own subscription's record, not the other 49."""
    store = new_store()
    batch(store, [purchase(f"e{i}", f"S{i}") for i in range(50)], CLOCK_START)
    cancel = SubscriptionCancelled("c1", datetime(2026, 2, 1, tzinfo=UTC), "P1", "C1", "S7")
    records = batch(store, [cancel], CLOCK_START + timedelta(days=40))
    assert sorted(k for _p, k, _v in records) == [b"P1:C1\x1fsS7"]


def test_accounts_past_the_in_use_limit_are_held_frozen_and_nothing_else_changes() -> None:
    """With at most 5 accounts in use, the others are frozen after each batch and thawed at their next use:
    every batch emits the same records and writes the same changelog as with no limit, and each account,
    frozen or not, is the same state (dedup window and sequence included)."""
    free = new_store(window=32)
    capped = AccountStore(Classifier(dedup_window=32), input_partitions=1, decode_legacy=avro_states, accounts_in_use=5)
    capped.owned.add(PARTITION)
    clock = CLOCK_START
    stream = events(11)
    for i in range(0, len(stream), 15):
        clock += timedelta(days=5)
        outs = []
        for store in (free, capped):
            store.begin()
            engine = store.classifier
            emitted = [r.to_dict() for r in engine.fire_due(clock)]
            keys = []
            for ev in stream[i : i + 15]:
                emitted += [r.to_dict() for r in engine.apply(ev, clock) or ()]
                if not isinstance(ev, PartnerProgramChanged):
                    keys.append((ev.partner_id, ev.customer_id))
            store.note(PARTITION, keys)
            outs.append((emitted, store.changelog_records()))
            store.commit()
        assert outs[0] == outs[1]
        assert len(capped.classifier._accounts) <= 5
    assert capped.classifier.held == len(capped) - 5 > 20
    assert states(capped) == states(free)


def test_an_earlier_release_writing_after_this_one_is_refused_at_the_restore() -> None:
    """An account whose latest own value is 0x02 while its 0x03 subscriptions exist was written by an instance
    of the earlier release after this one: a rolling upgrade, which is not supported. The restore stops with
    one error that says so, instead of holding a mix of the two."""
    store = new_store()
    values = compacted(batch(store, [purchase("e1", "S1")], CLOCK_START))
    line = json.loads((DATA / "changelog_v2.jsonl").open().readline())
    values[b"P1:C1"] = base64.b64decode(line["value"])
    with pytest.raises(MixedReleases, match="rolling upgrade is not supported"):
        restored(values, store.classifier)


def test_the_partner_view_is_written_when_it_moves_and_a_restore_reads_it() -> None:
    """The view goes with the account's first write, not with every event after it; a partner change that
    moves it writes it again; a store restored from the changelog holds the account as current (nothing to
    re-evaluate), and one restored from a changelog that lost the latest view re-evaluates it."""
    store = new_store()
    first = batch(store, [purchase("e1", "S1", seller="P9")], CLOCK_START)
    assert b"P1:C1\x1fv" in {k for _p, k, _v in first}
    second = batch(store, [purchase("e2", "S2", seller="P9")], CLOCK_START)
    assert b"P1:C1\x1fv" not in {k for _p, k, _v in second}
    change = PartnerProgramChanged("pe-1", datetime(2026, 1, 3, tzinfo=UTC), "P1", Program.CSP_DIRECT, ())
    third = batch(store, [change], CLOCK_START + timedelta(days=1))
    assert b"P1:C1\x1fv" in {k for _p, k, _v in third}
    values = compacted(first + second + third)
    assert restored(values, store.classifier).pending_reconcile == set()
    stale = compacted(first + second + [r for r in third if r[1] != b"P1:C1\x1fv"])
    assert restored(stale, store.classifier).pending_reconcile == {("P1", "C1")}
