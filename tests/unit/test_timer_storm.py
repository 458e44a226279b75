"""A month-end storm through `BatchProcessor.process` and the service session: 20,000 term ends at one
instant fire in bounded batches, in the order one unbounded fire gives, with the input left unread until
they are all fired, and an aborted batch in the middle fires the same accounts again (no broker: fake
records, codec and clients)."""

from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any

from confluent_kafka import TopicPartition

from config.settings import Settings
from consumers.batch import BatchOutput, BatchProcessor
from consumers.limits import OutputTopics, RecordLimits
from consumers.metrics import BatchTally, HealthState, ServiceMetrics
from consumers.service import _Session
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.model import BillingModel, Channel, PartnerProgramChanged, Program, SubscriptionPurchased
from multichannel.records import CustomerStatusRecord, SubscriptionDecision
from tests.unit.test_partner_table import FakeRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TERM_END = date(2026, 3, 1)
CLOCK = datetime(2026, 3, 1, 0, 0, 5, tzinfo=UTC)
ACCOUNTS = 20_000
PARTITIONS = 4

Output = SubscriptionDecision | CustomerStatusRecord


class RecordingCodec:
    """Hands events through; encodes an output record as its index in `emitted`, so a batch's outputs can
    be read back as the engine's records."""

    def __init__(self) -> None:
        self.emitted: list[Output] = []

    def decode_subscription_batch(self, msgs: Any) -> list[Any]:
        return [m.value() for m in msgs]

    def decode_partner_batch(self, msgs: Any) -> list[Any]:
        return [m.event for m in msgs]

    def encode_decision(self, rec: SubscriptionDecision, /) -> bytes:
        return self._keep(rec)

    def encode_status(self, rec: CustomerStatusRecord, /) -> bytes:
        return self._keep(rec)

    def _keep(self, rec: Output) -> bytes:
        self.emitted.append(rec)
        return str(len(self.emitted) - 1).encode()


def purchase(i: int, sid: str = "S0") -> SubscriptionPurchased:
    cid = f"C{i:05d}"
    return SubscriptionPurchased(
        f"e{i}-{sid}", T0, "P1", cid, sid, "O", BillingModel.LICENSE, Channel.OPEN, None, 1, date(2025, 1, 1), TERM_END
    )


def storm(limit: int | None) -> tuple[BatchProcessor, RecordingCodec]:
    """20,000 accounts whose terms all end at the same instant, held on `PARTITIONS` owned partitions."""
    store = AccountStore(Classifier(), input_partitions=PARTITIONS, decode_legacy=lambda values: [])
    store.owned |= set(range(PARTITIONS))
    engine = store.classifier
    engine.apply(PartnerProgramChanged("p1", T0, "P1", Program.CSP_DIRECT, ()), T0)
    for i in range(ACCOUNTS):
        event = purchase(i)
        engine.apply(event, T0)
        store.note(i % PARTITIONS, [(event.partner_id, event.customer_id)])
    store.commit()
    codec = RecordingCodec()
    proc = BatchProcessor(
        store,
        codec,
        subscription_topic="subs",
        partner_topic="partners",
        dead_letter_limit=1 << 20,
        timer_batch_records=limit,
    )
    return proc, codec


def outputs(codec: RecordingCodec, out: BatchOutput) -> list[Output]:
    return [codec.emitted[int(r["value"])] for r in out.decisions + out.statuses]


def in_order(codec: RecordingCodec, out: BatchOutput) -> list[Output]:
    """The batch's records in the order the engine emitted them (decisions and statuses are kept apart)."""
    return [codec.emitted[i] for i in sorted(int(r["value"]) for r in out.decisions + out.statuses)]


def run(proc: BatchProcessor, records: list[FakeRecord] | None = None, *, commit: bool = True) -> BatchOutput:
    proc.store.begin()
    out = proc.process(records or [], [], CLOCK, BatchTally())  # type: ignore[arg-type]
    if commit:
        proc.store.commit()
    else:
        proc.store.rollback()
    return out


def accounts(records: list[Output]) -> list[tuple[str, str]]:
    """The accounts of `records`, each once, in their order."""
    return list(dict.fromkeys((r.partner_id, r.customer_id) for r in records))


def test_a_storm_fires_in_bounded_batches_in_the_order_of_one_unbounded_fire() -> None:
    """A timer storm fired in bounded slices emits, record for record, what one unbounded fire emits."""
    whole, whole_codec = storm(limit=None)
    unbounded = in_order(whole_codec, run(whole))
    assert len(accounts(unbounded)) == ACCOUNTS and not whole.timers_due(CLOCK)

    proc, codec = storm(limit=1000)
    fired: list[Output] = []
    batches = 0
    while proc.timers_due(CLOCK):
        out = run(proc)
        batch = in_order(codec, out)
        batches += 1
        assert len(accounts(batch)) <= 1000 and len(batch) <= 1000 + 1, "an account's records are never split"
        assert out.changelog, "a slice's fired accounts are saved in its own transaction"
        fired += batch
    assert batches >= 20
    assert fired == unbounded, "bounded slices emit record for record what one unbounded fire emits"
    assert [r.decided_at for r in fired if isinstance(r, SubscriptionDecision)] == [
        datetime(2026, 3, 1, tzinfo=UTC)
    ] * (ACCOUNTS)


def test_a_batch_that_leaves_timers_due_takes_none_of_its_input() -> None:
    """Events apply after the timers due before them: while a slice leaves timers due, the batch's records
    are not applied (the service reads them again), and once the storm is over they are."""
    proc, codec = storm(limit=1000)
    records = [FakeRecord(purchase(7, "S9"), 3, 100)]
    out = run(proc, records)
    assert out.timers_pending
    assert all(r.subscription_id != "S9" for r in outputs(codec, out) if isinstance(r, SubscriptionDecision))
    while proc.timers_due(CLOCK):
        assert run(proc).timers_pending or not proc.timers_due(CLOCK)
    out = run(proc, records)
    assert not out.timers_pending
    assert [r.subscription_id for r in outputs(codec, out) if isinstance(r, SubscriptionDecision)] == ["S9"]


def test_an_aborted_slice_fires_the_same_accounts_again() -> None:
    """A rollback in the middle of a storm (a partly fired deadline) puts the slice back: the retry fires the
    same accounts with the same records, and the whole storm still matches one unbounded fire."""
    whole, whole_codec = storm(limit=None)
    unbounded = in_order(whole_codec, run(whole))

    proc, codec = storm(limit=1000)
    fired: list[Output] = []
    batches = 0
    while proc.timers_due(CLOCK):
        if batches == 7:
            aborted = in_order(codec, run(proc, commit=False))
            retried_out = run(proc)
            retried = in_order(codec, retried_out)
            assert accounts(retried) == accounts(aborted) and retried == aborted
            assert retried_out.changelog
        else:
            retried = in_order(codec, run(proc))
        fired += retried
        batches += 1
    assert fired == unbounded


class ConsumedRecord(FakeRecord):
    def error(self) -> None:
        return None


class StormConsumer:
    """The consumer calls of a storm: the assignment is paused, nothing new is read, and the record that was
    fetched before the pause is read again from its offset."""

    def __init__(self, prefetched: list[FakeRecord]) -> None:
        self.prefetched = prefetched
        self.calls: list[str] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("subs", p) for p in range(PARTITIONS)]

    def pause(self, tps: list[TopicPartition]) -> None:
        self.calls.append("pause")

    def resume(self, tps: list[TopicPartition]) -> None:
        self.calls.append("resume")

    def consume(self, num_messages: int, timeout: float) -> list[FakeRecord]:
        self.calls.append("consume")
        taken, self.prefetched = self.prefetched, []
        return taken

    def seek(self, tp: TopicPartition) -> None:
        self.calls.append(f"seek {tp.partition}@{tp.offset}")


class Transactions:
    """The exactly-once strategy's calls: what each transaction would write, and the offsets it would send."""

    def __init__(self) -> None:
        self.offsets: list[dict[int, int]] = []
        self.sizes: list[int] = []

    def begin(self) -> None:
        """Nothing to open."""

    def finish(self, out: BatchOutput, tally: BatchTally, next_offsets: dict[int, int]) -> None:
        self.offsets.append(dict(next_offsets))
        self.sizes.append(len(out.decisions) + len(out.statuses))


class Partners:
    def mark(self) -> None:
        """Nothing read."""

    def rewind(self) -> None:
        """Nothing read."""


def session(proc: BatchProcessor, consumer: StormConsumer, txn: Transactions) -> Any:
    """A service session around the processor, with fake clients (no broker)."""
    svc = SimpleNamespace(clock=lambda: CLOCK, health=HealthState(), _stop=threading.Event(), tracing=None)
    s = _Session.__new__(_Session)
    s.svc, s.s, s.metrics = svc, Settings(batch_size=100), ServiceMetrics()  # type: ignore[assignment]
    s.guard = lambda _what, _timeout_s: nullcontext()  # type: ignore[assignment,return-value]
    s.store, s.processor, s.consumer = proc.store, proc, consumer  # type: ignore[assignment]
    s.partners, s.exactly_once = Partners(), txn  # type: ignore[assignment]
    s.limits = RecordLimits(OutputTopics("d", "s", "c"), {}, 1 << 20)
    s.topics, s.refused_deliveries, s.storm, s.assigned_once = s.limits.topics, [], False, True
    s.last_lag_update = time.monotonic() + 3600
    return s


def test_the_service_pauses_its_input_while_a_storm_fires_and_reads_it_again_after() -> None:
    """The batch that meets the storm fires a slice and gives its record back (no offsets sent, a seek to it);
    each following turn pauses the input, still calls the consumer, and fires the next slice; once no timer
    is due the input is resumed and the record is applied."""
    proc, codec = storm(limit=1000)
    record = ConsumedRecord(purchase(7, "S9"), 1, 40)
    consumer, txn = StormConsumer(prefetched=[record]), Transactions()
    s = session(proc, consumer, txn)
    s._batch([record], [])
    assert s.storm and txn.offsets == [{}] and consumer.calls == ["seek 1@40"]
    turns = 0
    while s.storm:
        s._storm_turn(1.0)
        turns += 1
        assert turns < 100
    assert turns >= 19 and max(txn.sizes) <= 1001 and all(o == {} for o in txn.offsets)
    assert consumer.calls[1:4] == ["pause", "consume", "seek 1@40"], "a record fetched before the pause is read again"
    assert consumer.calls.count("pause") == turns and consumer.calls[-1] == "resume"
    assert s.svc.health.ready and s.metrics.transaction_records_max._value.get() <= 1001
    s._batch([record], [])
    assert txn.offsets[-1] == {1: 41}
    assert [r.subscription_id for r in codec.emitted[-2:] if isinstance(r, SubscriptionDecision)] == ["S9"]
