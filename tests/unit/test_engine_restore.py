"""A restart is invisible in the decision stream: accounts saved the way the service writes its changelog
and restored into a fresh classifier emit, record for record, what an uninterrupted run emits."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.state_format import CODES, StateFormatError, decode_state, encode_account, read_header, read_headers
from multichannel.codec import state_from_record, state_to_record
from multichannel.engine import Classifier
from multichannel.model import (
    BillingModel,
    Channel,
    Event,
    PartnerProgramChanged,
    Program,
    SubscriptionPurchased,
)
from multichannel.parse import parse_event
from multichannel.partners import PartnerTable
from multichannel.records import OutputRecord, SubscriptionDecision
from multichannel.state import Account, AccountState
from producers.generator import WorkloadGenerator, WorkloadSpec
from schemas import ACCOUNT_STATE, parsed_schema

FAST = settings(max_examples=40, deadline=None)
CLOCK_START = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)


def through_changelog(state: AccountState | Account) -> AccountState:
    """The account as a restore reads it back: in the changelog's compact format, then decoded."""
    acct = Account.restore(state) if isinstance(state, AccountState) else state
    return decode_state(encode_account(acct, ""))


def through_avro_changelog(state: AccountState) -> AccountState:
    """The state as the earlier release's changelog held it: the Avro record of the changelog schema."""
    schema = parsed_schema(ACCOUNT_STATE)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, state_to_record(state))
    buf.seek(0)
    record = fastavro.schemaless_reader(buf, schema, schema)
    assert isinstance(record, dict)
    return state_from_record(record)


def events(seed: int) -> list[Event]:
    """A generated stream (purchases, renewals, cancellations, flags, duplicates) with frequent partner
    changes; term ends fall before, inside and after the clock's range."""
    spec = WorkloadSpec(
        seed=seed, partners=10, customers=30, bad_rate=0.0, duplicate_rate=0.05, partner_change_rate=0.6
    )
    return [parse_event(item) for item in WorkloadGenerator(spec).events() if isinstance(item, dict)]


def fixture_run() -> tuple[Classifier, datetime]:
    """The run whose accounts the changelog fixtures in `data/` hold (written by earlier releases): stream 7,
    a week of clock per 20 events, due term ends fired first; and its last clock."""
    engine = Classifier(transactional=False)
    clock = CLOCK_START
    for i, ev in enumerate(events(7)):
        if i % 20 == 0:
            clock += timedelta(days=7)
            engine.fire_due(clock)
        engine.apply(ev, clock)
    return engine, clock


def record_key(r: OutputRecord) -> tuple[str, ...]:
    if isinstance(r, SubscriptionDecision):
        return ("decision", r.partner_id, r.customer_id, r.subscription_id)
    return ("status", r.partner_id, r.customer_id)


def by_key(records: Sequence[OutputRecord]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    out: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(record_key(r), []).append(r.to_dict())
    return out


class ServiceLike:
    """The service's use of the engine, Kafka taken away: one committed batch at a time (due timers,
    then events, then the changed accounts to the changelog in its compact format); a restart holds the
    changelog's accounts in a fresh classifier (built on first use), with the same partner table or one
    rebuilt from the partner events, and reconciles those whose partner view moved before the next
    batch's events."""

    def __init__(self) -> None:
        self.engine = Classifier()
        self.changelog: dict[tuple[str, str], bytes] = {}
        self.partner_events: list[PartnerProgramChanged] = []
        self.pending_reconcile: set[tuple[str, str]] = set()
        self.emitted: list[OutputRecord] = []
        self.reconciled = 0

    def restart(self, clock: datetime, *, rebuild_table: bool) -> None:
        table = self.engine.partners
        if rebuild_table:
            table = PartnerTable()
            for ev in self.partner_events:
                table.apply(ev)
            table.commit()
        self.engine = Classifier(partners=table)
        held, _latest = read_headers(list(self.changelog.values()))
        assert [(h[0], h[1]) for h in held] == list(self.changelog)
        self.pending_reconcile.update(self.engine.hold_all(held, decode_state))
        self.reconciled += len(self.pending_reconcile)

    def batch(self, batch: Sequence[Event], clock: datetime) -> None:
        engine = self.engine
        records = engine.fire_due(clock)
        if self.pending_reconcile:
            records += engine.reconcile(clock, sorted(self.pending_reconcile))
            self.pending_reconcile.clear()
        for ev in batch:
            if isinstance(ev, PartnerProgramChanged):
                self.partner_events.append(ev)
            records += engine.apply(ev, clock) or []
        for key, acct in engine.changed_accounts():
            self.changelog[key] = encode_account(acct, engine.account_view(acct))
        engine.commit()
        self.emitted += records


def run(
    stream: list[Event], cuts: list[int], clocks: list[datetime], restarts: set[int], rebuild: set[int]
) -> list[OutputRecord]:
    service = ServiceLike()
    start = 0
    for i, (end, clock) in enumerate(zip(cuts, clocks, strict=True)):
        if i in restarts:
            service.restart(clock, rebuild_table=i in rebuild)
        service.batch(stream[start:end], clock)
        start = end
    return service.emitted


@FAST
@given(
    seed=st.integers(0, 10_000),
    rnd=st.randoms(use_true_random=False),
    restart_rate=st.sampled_from([0.05, 0.2, 0.6]),
)
def test_restarts_at_any_batch_leave_every_keys_sequence_as_an_uninterrupted_run(
    seed: int, rnd: random.Random, restart_rate: float
) -> None:
    """Batches of random size at a clock that advances by minutes to months (so term ends pass between
    batches, several at once after a long gap); restarting before random batches, with the partner
    table kept or rebuilt, changes no decision or status record of any key, decided_at included."""
    stream = events(seed)
    cuts: list[int] = []
    at = 0
    while at < len(stream):
        at = min(len(stream), at + rnd.randint(1, 40))
        cuts.append(at)
    clocks: list[datetime] = []
    clock = CLOCK_START
    for _ in cuts:
        clock += timedelta(minutes=rnd.choice((0, 1, 90, 60 * 24, 60 * 24 * 20, 60 * 24 * 90)))
        clocks.append(clock)
    restarts = {i for i in range(1, len(cuts)) if rnd.random() < restart_rate}
    rebuild = {i for i in restarts if rnd.random() < 0.5}
    clocks.append(clock + timedelta(days=1200))  # a last, empty batch after every term end
    cuts.append(len(stream))
    restarts.add(len(cuts) - 1)

    uninterrupted = by_key(run(stream, cuts, clocks, set(), set()))
    restarted = by_key(run(stream, cuts, clocks, restarts, rebuild))
    assert sum(map(len, uninterrupted.values())) > 50, "the stream must produce real records"
    assert restarted == uninterrupted


@FAST
@given(seed=st.integers(0, 10_000), rnd=st.randoms(use_true_random=False))
def test_decided_at_never_goes_backwards_for_a_key_across_restarts(seed: int, rnd: random.Random) -> None:
    """Per decision key (customer) and per status key (account), decided_at is non-decreasing in the
    emitted order, with a restart before every batch."""
    stream = events(seed)
    cuts = list(range(25, len(stream), 25)) + [len(stream)]
    clock = CLOCK_START
    clocks = []
    for _ in cuts:
        clock += timedelta(days=rnd.choice((0, 1, 30, 200)))
        clocks.append(clock)
    emitted = run(stream, cuts, clocks, set(range(1, len(cuts))), set())
    last: dict[tuple[str, ...], datetime] = {}
    for r in emitted:
        key = ("decision", r.customer_id) if isinstance(r, SubscriptionDecision) else record_key(r)
        assert r.decided_at >= last.get(key, r.decided_at), (key, r)
        last[key] = r.decided_at


def direct_license(eid: str, sid: str, term_end: date) -> SubscriptionPurchased:
    return SubscriptionPurchased(
        eid,
        datetime(2025, 1, 1, tzinfo=UTC),
        "P1",
        "C1",
        sid,
        "O365-E3",
        BillingModel.LICENSE,
        Channel.MICROSOFT_DIRECT,
        None,
        10,
        date(2025, 1, 1),
        term_end,
    )


def test_restored_account_does_not_fire_term_ends_it_has_passed() -> None:
    """Regression: two licenses bought from Microsoft direct, both terms ended when applied (R5
    TERM_ENDED); restoring the account and firing timers at the same clock emits nothing (it used to
    emit R9 with decided_at 2026-03-25, then R5 again at 2026-08-17)."""
    clock = datetime(2026, 11, 25, tzinfo=UTC)
    live = Classifier()
    live.apply(PartnerProgramChanged("p1", datetime(2025, 1, 1, tzinfo=UTC), "P1", Program.CSP_DIRECT, ()), clock)
    for eid, sid, end in (("e1", "S1", date(2026, 3, 25)), ("e2", "S2", date(2026, 8, 17))):
        records = live.apply(direct_license(eid, sid, end), clock)
        assert [(r.rule.value, r.reason.value) for r in records or [] if isinstance(r, SubscriptionDecision)] == [
            ("R5", "TERM_ENDED")
        ]
    saved = live.get(("P1", "C1"))
    assert saved is not None

    restored = Classifier(partners=live.partners)
    restored.load([through_changelog(saved)], clock)
    assert restored.fire_due(clock) == []
    assert restored.reconcile(clock) == []
    assert restored.get(("P1", "C1")) == saved


@FAST
@given(seed=st.integers(0, 10_000), cut=st.floats(0.1, 1.0))
def test_an_account_is_the_same_after_save_and_load(seed: int, cut: float) -> None:
    """Everything an account holds (events, flags, verdicts, status and its counts, the dedup window,
    the clock it was evaluated at) survives the changelog round trip: load(save(account)) == account."""
    stream = events(seed)
    stream = stream[: int(len(stream) * cut)]
    engine = Classifier(transactional=False)
    clock = CLOCK_START
    for i, ev in enumerate(stream):
        if i % 20 == 0:
            clock += timedelta(days=7)
            engine.fire_due(clock)
        engine.apply(ev, clock)
    states = [engine.get(key) for key in engine]
    assert [through_avro_changelog(s) for s in states if s is not None] == states
    restored = Classifier(partners=engine.partners)
    restored.load([through_changelog(s) for s in states if s is not None], clock)
    for key in engine:
        before, after = engine.get(key), restored.get(key)
        assert after == before
        assert after is not None
        working = Account.restore(after)
        original = engine._accounts[key]  # the working copy's derived fields, not only the snapshot
        assert (working.counts, working.multichannel, working.status) == (
            original.counts,
            original.multichannel,
            original.status,
        )
        assert {sid: s.deadline for sid, s in working.subscriptions.items()} == {
            sid: s.deadline for sid, s in original.subscriptions.items()
        }


def test_a_state_saved_before_evaluated_at_was_kept_is_restored_without_firing_past_term_ends() -> None:
    """A changelog value written by the earlier release (its schema has no evaluated_at) still decodes;
    the account counts as evaluated at the restore clock, so passed term ends do not fire again and
    `reconcile` says what changed."""
    import json

    from schemas import schema_str

    old_schema_json = json.loads(schema_str(ACCOUNT_STATE))
    old_schema_json["fields"] = [f for f in old_schema_json["fields"] if f["name"] != "evaluated_at"]
    old_schema = fastavro.parse_schema(old_schema_json)
    clock = datetime(2026, 11, 25, tzinfo=UTC)
    live = Classifier()
    live.apply(PartnerProgramChanged("p1", datetime(2025, 1, 1, tzinfo=UTC), "P1", Program.CSP_DIRECT, ()), clock)
    live.apply(direct_license("e1", "S1", date(2026, 3, 25)), clock)
    live.apply(direct_license("e2", "S2", date(2026, 8, 17)), clock)
    live.apply(direct_license("e3", "S3", date(2027, 2, 1)), clock)
    saved = live.get(("P1", "C1"))
    assert saved is not None
    buf = io.BytesIO()
    record = state_to_record(saved)
    del record["evaluated_at"]
    fastavro.schemaless_writer(buf, old_schema, record)
    buf.seek(0)
    decoded = fastavro.schemaless_reader(buf, old_schema, parsed_schema(ACCOUNT_STATE))
    assert isinstance(decoded, dict)
    legacy = state_from_record(decoded)
    assert legacy.evaluated_at is None
    assert legacy._replace(evaluated_at=saved.evaluated_at) == saved

    restored = Classifier(partners=live.partners)
    restored.load([legacy], clock)
    assert restored.fire_due(clock) == []
    assert restored.reconcile(clock) == []
    assert restored.deadlines == [datetime(2027, 2, 1, tzinfo=UTC)]


def test_a_held_account_is_reconciled_only_when_its_partner_view_moved() -> None:
    """An account saved with the partner table it was evaluated with is held without a re-evaluation;
    once its partner's program moved (the partner topic ran ahead of the saved state), holding it says
    so, and reconcile emits what the move changed. Held accounts are built only on first use."""
    clock = datetime(2026, 11, 25, tzinfo=UTC)
    live = Classifier()
    live.apply(PartnerProgramChanged("p1", datetime(2025, 1, 1, tzinfo=UTC), "P1", Program.CSP_DIRECT, ()), clock)
    live.apply(direct_license("e1", "S1", date(2027, 3, 25)), clock)
    [(key, acct)] = live.changed_accounts()
    saved = encode_account(acct, live.account_view(acct))
    live.commit()
    head = read_header(saved)

    same = Classifier(partners=live.partners)
    assert not same.hold(key, head.sellers, head.deadlines, head.partner_view, saved, decode_state)
    assert (len(same), same.held) == (1, 1)
    assert same.deadlines == [datetime(2027, 3, 25, tzinfo=UTC)]

    moved = PartnerTable()
    moved.apply(PartnerProgramChanged("p1", datetime(2025, 1, 1, tzinfo=UTC), "P1", Program.CSP_DIRECT, ()))
    moved.apply(PartnerProgramChanged("p2", datetime(2025, 6, 1, tzinfo=UTC), "P1", Program.NONE, ()))
    moved.commit()
    later = Classifier(partners=moved)
    assert later.hold(key, head.sellers, head.deadlines, head.partner_view, saved, decode_state)
    records = later.reconcile(clock, [key])
    assert [(r.rule.value, r.caused_by_event_id) for r in records if isinstance(r, SubscriptionDecision)] == [
        ("R2", "p2")
    ]
    assert later.held == 0


def test_headers_read_together_are_the_headers_read_one_by_one() -> None:
    """The restore's bulk read gives, per value, what `read_header` gives, and the latest evaluated_at."""
    values = []
    for i, evaluated in enumerate([datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 2, 7, tzinfo=UTC), None]):
        live = Classifier()
        live.apply(direct_license(f"e{i}", f"S{i}", date(2027, 3, 25 - i)), datetime(2026, 1, 1, tzinfo=UTC))
        [(_key, acct)] = live.changed_accounts()
        acct.evaluated_at = evaluated
        values.append(encode_account(acct, live.account_view(acct)))
    held, latest = read_headers(values)
    assert latest == datetime(2026, 5, 2, 7, tzinfo=UTC)
    for (pid, cid, sellers, deadlines, view, saved), value in zip(held, values, strict=True):
        head = read_header(value)
        assert (pid, cid, sellers, deadlines, view, saved) == (
            head.partner_id,
            head.customer_id,
            head.sellers,
            head.deadlines,
            head.partner_view,
            value,
        )


def test_a_changelog_written_in_format_01_reads_as_the_accounts_it_saved() -> None:
    """Values the previous release wrote (format 0x01: codes by name, times ending in +00:00; saved in
    `data/changelog_v1.jsonl` from the same run as here) decode to exactly the accounts the engine holds,
    their headers read as before, and each is written again as 0x02 without a change and smaller. Their
    partner views, in the earlier `version|eid,...` form, are still current for the same partner table:
    holding them re-evaluates nothing."""
    engine, _clock = fixture_run()
    lines = [json.loads(line) for line in (Path(__file__).parent / "data" / "changelog_v1.jsonl").open()]
    assert len(lines) == len(engine) > 30
    old_values = [base64.b64decode(line["value"]) for line in lines]
    held, _latest = read_headers(old_values)
    for line, value, head in zip(lines, old_values, held, strict=True):
        key = (line["key"][0], line["key"][1])
        assert value[0] == 1 and (head[0], head[1]) == key
        state = decode_state(value)
        assert state == engine.get(key)
        acct = engine._accounts[key]
        rewritten = encode_account(acct, engine.account_view(acct))
        assert rewritten[0] == 2 and len(rewritten) < len(value)
        assert decode_state(rewritten) == state
        assert read_headers([rewritten])[0][0][:4] == head[:4]
        assert isinstance(head[4], str) and head[4].startswith(engine.rulebook_version + "|")
    assert Classifier(partners=engine.partners).hold_all(held, decode_state) == []


def test_every_code_has_a_fixed_place_in_format_02() -> None:
    """Format 0x02 writes a code as its index in `CODES`: every member of each enum has one, and the
    table is exactly the enum's codes (a new member goes at the end of its table, never in between)."""
    for enum, codes in CODES.items():
        assert sorted(codes) == sorted(m.value for m in enum), enum.__name__
        assert len(set(codes)) == len(codes)


def test_a_value_in_an_unknown_format_is_refused() -> None:
    """A changelog value in no known format is refused with StateFormatError, not misread."""
    for value in (b"", b"\x03[]\n[]", b"\xff"):
        with pytest.raises(StateFormatError):
            decode_state(value)
        with pytest.raises(StateFormatError):
            read_headers([value])
