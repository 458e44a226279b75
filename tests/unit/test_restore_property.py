"""A checkpoint, a restore and an aborted batch are invisible in the output: realistic account streams (big
accounts, every event kind, duplicates, late partner changes) run batch by batch through the store and the
processor emit, record for record and in order (decided_at and caused_by_event_id included), the same
decisions and statuses whether the run goes uninterrupted, restarts at batch boundaries from the compacted
changelog it wrote, or aborts a batch and runs it again. Under the `current` rule book the streams carry
contract 1.1's fields (NCE purchases with cancellation windows, renewals with windows, GDAP grants that
expire, Azure Expert MSP partners), so that its two further timers, window ends and GDAP expiries, cross
restores too.

Only public seams are used (`AccountStore`, `RestoredPartition`, `BatchProcessor.process`), never the
changelog's encoding: a restore hands over the latest value of each key written so far."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.batch import BatchOutput, BatchProcessor
from consumers.changelog import RestoredPartition
from consumers.metrics import BatchTally
from consumers.state_format import decode_partner_entry
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.model import Event, NextAction, PartnerProgramChanged
from multichannel.parse import parse_event
from multichannel.records import SubscriptionDecision
from multichannel.rulebooks import CURRENT, SEED, RuleBook
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec

INPUT_PARTITIONS = 2
PARTNER_PARTITIONS = 2
RUNS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class FakeRecord:
    """A consumed record's accessors, as the processor reads them; the codec hands `event` through."""

    event: Event
    part: int
    off: int
    topic_name: str

    def value(self) -> Any:
        return self.event

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def headers(self) -> None:
        return None

    def key(self) -> bytes:
        return b""

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def topic(self) -> str:
        return self.topic_name


class FakeCodec:
    """Hands the records' events through and writes output records as their repr (every field, in order; a
    status's decision counts sorted, as a map's order means nothing on the wire). `decisions` maps what it
    wrote back to the decision (a repr holds every field: equal bytes, equal records)."""

    def __init__(self) -> None:
        self.decisions: dict[bytes, SubscriptionDecision] = {}

    def decode_subscription_batch(self, msgs: Any) -> list[Any]:
        return [m.value() for m in msgs]

    def decode_partner_batch(self, msgs: Any) -> list[Any]:
        return [m.value() for m in msgs]

    def encode_decision(self, rec: Any, /) -> bytes:
        value = repr(rec).encode()
        self.decisions[value] = rec
        return value

    def encode_status(self, rec: Any, /) -> bytes:
        return repr(replace(rec, decision_counts=dict(sorted(rec.decision_counts.items())))).encode()


@dataclass
class Batch:
    records: list[FakeRecord]
    partner_records: list[FakeRecord]
    now: datetime


@dataclass
class Shape:
    """What hypothesis draws; the events themselves come from the seeded realistic generator."""

    seed: int
    customers: int
    giant: int
    duplicate_rate: float
    late_partner_rate: float
    partner_change_rate: float
    batches: int
    idle_share: float
    checkpoints: frozenset[int]
    aborts: frozenset[int]
    compacted_partner_topic: bool
    in_use: int | None = None
    """Accounts the interrupted run keeps in use (`accounts_in_use`): the others are frozen after each batch."""
    rulebook: RuleBook = SEED
    """The book both runs decide by; under `current` the events carry contract 1.1's fields (`with_contract_1_1`)."""


def _partition(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def _day_after(timestamp: str, rng: random.Random, low: int, high: int) -> str:
    """A date `low`..`high` days after the date of `timestamp` (before it when negative)."""
    return (date.fromisoformat(timestamp[:10]) + timedelta(days=rng.randint(low, high))).isoformat()


def _instant_after(timestamp: str, rng: random.Random, low: float, high: float) -> str:
    """A timestamp `low`..`high` days (to the second) after `timestamp`: GDAP ends fall at any second."""
    at = datetime.fromisoformat(timestamp) + timedelta(seconds=int(rng.uniform(low, high) * 86_400))
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def with_contract_1_1(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """The generated stream with contract 1.1's fields, as a billing system on new commerce sends them: half the
    licenses NCE, most with a cancellation window that may already have closed when the purchase is applied
    (a few legacy ones carry a window too, which only NCE reads), renewals with the new term's window or none,
    GDAP grants that expire (some before they are applied), some extended or made endless by a newer grant,
    and partners marked Azure Expert MSP."""
    out: list[dict[str, Any]] = []
    for generated in events:
        kind = generated["event_type"]
        ev = dict(generated)
        if kind == "subscription_purchased" and ev["billing_model"] == "license":
            if rng.random() < 0.5:
                ev["commerce"] = "nce"
            if rng.random() < (0.8 if ev.get("commerce") else 0.1):
                ev["cancellation_allowed_until"] = _day_after(ev["occurred_at"], rng, -10, 40)
        elif kind == "subscription_renewed" and rng.random() < 0.6:
            ev["cancellation_allowed_until"] = _day_after(ev["occurred_at"], rng, -3, 30)
        elif kind == "partner_program_changed" and rng.random() < 0.4:
            ev["azure_expert_msp"] = True
        out.append(ev)
        if kind == "delegated_admin_granted" and rng.random() < 0.8:
            ev["expires_at"] = _instant_after(ev["occurred_at"], rng, -2, 45)
            if rng.random() < 0.4:  # an extension: a newer grant, ending later or never
                newer = dict(
                    ev, event_id=ev["event_id"] + "-x", occurred_at=_instant_after(ev["occurred_at"], rng, 1, 20)
                )
                if rng.random() < 0.7:
                    newer["expires_at"] = _instant_after(ev["expires_at"], rng, 1, 60)
                else:
                    del newer["expires_at"]
                out.append(newer)
    return out


def build_batches(shape: Shape) -> list[Batch]:
    """The stream cut into `shape.batches` runs of varied size, with idle batches (no input, only the clock
    moving, as the service's punctuation) between some; each batch's clock is past its events' times and the
    previous batch's, so term ends fire by timer in the batches where the clock crosses a month boundary."""
    spec = WorkloadSpec(
        seed=shape.seed,
        partners=10,
        customers=shape.customers,
        shape="realistic",
        max_subscriptions=300,
        giant_accounts=(shape.giant,),
        days=150,
        bad_rate=0.0,
        duplicate_rate=shape.duplicate_rate,
        partner_change_rate=shape.partner_change_rate,
        late_partner_rate=shape.late_partner_rate,
    )
    raw = [i for i in WorkloadGenerator(spec).events() if not isinstance(i, BadRecord)]
    if shape.rulebook is CURRENT:
        raw = with_contract_1_1(raw, random.Random(shape.seed + 1))
    events = [parse_event(i) for i in raw]
    rng = random.Random(shape.seed)
    cuts = sorted(rng.sample(range(1, len(events)), shape.batches - 1))
    offsets = {("subs", p): 0 for p in range(INPUT_PARTITIONS)} | {
        ("partners", p): 0 for p in range(PARTNER_PARTITIONS)
    }

    def record(ev: Event) -> FakeRecord:
        if isinstance(ev, PartnerProgramChanged):
            slot = ("partners", _partition(ev.partner_id, PARTNER_PARTITIONS))
        else:
            slot = ("subs", _partition(ev.customer_id, INPUT_PARTITIONS))
        offsets[slot] += 1
        return FakeRecord(ev, slot[1], offsets[slot] - 1, slot[0])

    batches: list[Batch] = []
    now = events[0].occurred_at
    for chunk in (events[a:b] for a, b in zip([0, *cuts], [*cuts, len(events)], strict=True)):
        while rng.random() < shape.idle_share:  # a punctuation: only timers can fire
            now += timedelta(days=rng.uniform(0.5, 20))
            batches.append(Batch([], [], now))
        recs = [record(ev) for ev in chunk]
        subs = sorted((r for r in recs if r.topic_name == "subs"), key=lambda r: r.part)  # runs of one partition
        partners = [r for r in recs if r.topic_name == "partners"]
        now = max(now + timedelta(seconds=rng.randint(1, 3_600)), *(ev.occurred_at for ev in chunk))
        batches.append(Batch(subs, partners, now))
    batches.append(Batch([], [], now + timedelta(days=2_000)))  # every term still open ends, renewed ones too
    return batches


@dataclass
class Log:
    """What the broker would hold: the changelog, the service's partner table topic and the partner topic."""

    changelog: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    partner_table: list[tuple[bytes, bytes]] = field(default_factory=list)
    partner_topic: list[FakeRecord] = field(default_factory=list)


def new_instance(in_use: int | None = None, rulebook: RuleBook = SEED) -> BatchProcessor:
    store = AccountStore(
        Classifier(rulebook=rulebook),
        input_partitions=INPUT_PARTITIONS,
        decode_legacy=lambda values: [],
        accounts_in_use=in_use,
    )
    return BatchProcessor(
        store, FakeCodec(), subscription_topic="subs", partner_topic="partners", dead_letter_limit=1 << 20
    )


def restored_instance(log: Log, now: datetime, shape: Shape) -> BatchProcessor:
    """A fresh instance started the way the service starts: the partner table topic, then the partner topic
    (compacted to each partner's last arrival or not), then the compacted changelog of every partition."""
    proc = new_instance(shape.in_use, shape.rulebook)
    table = dict(log.partner_table)
    proc.store.classifier.partners.restore(decode_partner_entry(v) for v in table.values())
    partner_records: Sequence[FakeRecord] = log.partner_topic
    if shape.compacted_partner_topic:
        last = {r.event.partner_id: r for r in log.partner_topic if isinstance(r.event, PartnerProgramChanged)}
        partner_records = sorted(last.values(), key=lambda r: (r.part, r.off))
    proc.catch_up(partner_records, proc.store.now(now))  # type: ignore[arg-type]
    latest: dict[int, dict[bytes, bytes]] = {p: {} for p in range(INPUT_PARTITIONS)}
    read = dict.fromkeys(range(INPUT_PARTITIONS), 0)
    for p, key, value in log.changelog:
        read[p] += 1
        if value is None:
            latest[p].pop(key, None)
        else:
            latest[p][key] = value
    parts = [RestoredPartition(p, latest[p], read[p], 0.0) for p in range(INPUT_PARTITIONS)]
    proc.store.assign(parts, now)
    return proc


def run_batch(proc: BatchProcessor, batch: Batch) -> BatchOutput:
    proc.store.begin()
    out = proc.process(batch.records, batch.partner_records, proc.store.now(batch.now), BatchTally())  # type: ignore[arg-type]
    proc.store.commit()
    return out


@dataclass
class Run:
    """What a run committed: decisions and statuses as written, and the decisions as records."""

    decisions: list[bytes] = field(default_factory=list)
    statuses: list[bytes] = field(default_factory=list)
    records: list[SubscriptionDecision] = field(default_factory=list)


def run(batches: list[Batch], shape: Shape, interrupted: bool = True) -> Run:
    """Every batch in order under `shape.rulebook`, restarting before the batches in `shape.checkpoints` and
    aborting once the batches in `shape.aborts` (unless not `interrupted`); what it committed."""
    log = Log()
    proc = new_instance(shape.in_use if interrupted else None, shape.rulebook)
    proc.store.assign([RestoredPartition(p, {}, 0, 0.0) for p in range(INPUT_PARTITIONS)], batches[0].now)
    done = Run()
    for i, batch in enumerate(batches):
        if interrupted and i in shape.checkpoints:
            proc = restored_instance(log, batches[i - 1].now, shape)
        if interrupted and i in shape.aborts:
            proc.store.begin()
            proc.process(batch.records, batch.partner_records, proc.store.now(batch.now), BatchTally())  # type: ignore[arg-type]
            proc.store.rollback()
        out = run_batch(proc, batch)
        done.decisions += [r["value"] for r in out.decisions]
        done.statuses += [r["value"] for r in out.statuses]
        assert isinstance(proc.codec, FakeCodec)
        done.records += [proc.codec.decisions[r["value"]] for r in out.decisions]
        log.changelog += out.changelog
        log.partner_table += [(r["key"], r["value"]) for r in out.partner_table]
        log.partner_topic += batch.partner_records
    return done


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    batches = draw(st.integers(6, 30))
    boundary = st.integers(1, batches - 1)
    return Shape(
        seed=draw(st.integers(0, 2**20)),
        customers=draw(st.integers(4, 40)),
        giant=draw(st.integers(200, 2_500)),
        duplicate_rate=draw(st.sampled_from((0.0, 0.02, 0.1))),
        late_partner_rate=draw(st.sampled_from((0.0, 0.3, 0.9))),
        partner_change_rate=draw(st.sampled_from((0.1, 0.5))),
        batches=batches,
        idle_share=draw(st.sampled_from((0.0, 0.2))),
        checkpoints=frozenset(draw(st.lists(boundary, min_size=1, max_size=4))),
        aborts=frozenset(draw(st.lists(st.integers(0, batches - 1), max_size=3))),
        compacted_partner_topic=draw(st.booleans()),
        in_use=draw(st.sampled_from((None, 1, 3))),
    )


def first_difference(got: list[bytes], want: list[bytes]) -> str:
    for n, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return f"record {n}: {g.decode()} != {w.decode()}"
    return f"{len(got)} records != {len(want)}"


def assert_same_run(shape: Shape) -> Run:
    """The interrupted run of `shape` commits what the uninterrupted one does, record for record, in order."""
    batches = build_batches(shape)
    want = run(batches, shape, interrupted=False)
    got = run(batches, shape)
    assert len(want.decisions) > shape.giant, "the stream must decide every subscription of the big account"
    assert got.decisions == want.decisions, first_difference(got.decisions, want.decisions)
    assert got.statuses == want.statuses, first_difference(got.statuses, want.statuses)
    return got


@RUNS
@given(shapes())
def test_restore_and_abort_emit_what_the_uninterrupted_run_emits(shape: Shape) -> None:
    """Checkpoint-and-restore at random batch boundaries, aborted batches run again, and accounts frozen past a
    small in-use limit: the same decisions and statuses, record for record, in order."""
    assert_same_run(shape)


def timer_steps(records: list[SubscriptionDecision]) -> list[tuple[str, str, str, datetime]]:
    """(partner, customer, subscription, deadline) of each decision a timer made (no event caused it)."""
    return [
        (r.partner_id, r.customer_id, r.subscription_id, r.decided_at) for r in records if r.caused_by_event_id is None
    ]


@RUNS
@given(shapes().map(lambda shape: replace(shape, rulebook=CURRENT)))
def test_under_current_window_ends_and_gdap_expiries_survive_restores(shape: Shape) -> None:
    """Under `current`, with NCE windows, renewals' windows and expiring GDAP grants in the stream: restores,
    aborts and frozen accounts change no record; no timer fires twice for a subscription at one deadline, and
    decided_at never goes backwards."""
    got = assert_same_run(shape)
    times = [r.decided_at for r in got.records]
    assert times == sorted(times)
    steps = timer_steps(got.records)
    assert len(steps) == len(set(steps))


def test_term_ends_fire_by_timer_and_in_idle_batches() -> None:
    """The clock of the stream's batches crosses term ends: some decisions are made by a timer (no event
    caused them), some of them in a batch without input."""
    shape = Shape(7, 10, 600, 0.02, 0.3, 0.5, 12, 0.2, frozenset({3}), frozenset({5}), False)
    batches = build_batches(shape)
    proc = new_instance()
    proc.store.assign([RestoredPartition(p, {}, 0, 0.0) for p in range(INPUT_PARTITIONS)], batches[0].now)
    by_timer = idle = 0
    for batch in batches:
        out = run_batch(proc, batch)
        fired = [r for r in out.decisions if b"caused_by_event_id=None" in r["value"]]
        by_timer += len(fired)
        idle += len(fired) if not batch.records and not batch.partner_records else 0
    assert by_timer > 0 and idle > 0


def test_under_current_windows_and_gdap_expiries_fire_by_timer_across_restores() -> None:
    """The `current` stream is not vacuous: window ends (WAIT_FOR_TERM_END by a timer, off the generator's
    first-of-month term ends) and GDAP expiries (REQUEST_DELEGATED_ADMIN_FOR_RESELLER by a timer, at a second
    of the day) are decided by timers, some of them for subscriptions decided before the first restore and
    fired after it, and the restored run still emits what the uninterrupted one does."""
    shape = Shape(11, 40, 400, 0.02, 0.3, 0.5, 24, 0.2, frozenset({4, 9, 15}), frozenset({6}), False, 3, CURRENT)
    records = assert_same_run(shape).records
    restore = build_batches(shape)[min(shape.checkpoints) - 1].now
    decided_before = {(r.partner_id, r.customer_id, r.subscription_id) for r in records if r.decided_at <= restore}

    def by_timer_across_the_restore(action: NextAction) -> int:
        """Timer decisions with `action` after the restore, of subscriptions decided before it, off the term
        ends (00:00 on the 1st of a month)."""
        return sum(
            1
            for r in records
            if r.caused_by_event_id is None
            and action in r.next_actions
            and r.decided_at > restore
            and (r.partner_id, r.customer_id, r.subscription_id) in decided_before
            and not (r.decided_at.day == 1 and r.decided_at.time() == datetime.min.time())
        )

    assert by_timer_across_the_restore(NextAction.WAIT_FOR_TERM_END) > 0, "window ends"
    assert by_timer_across_the_restore(NextAction.REQUEST_DELEGATED_ADMIN_FOR_RESELLER) > 0, "GDAP expiries"
