"""A month-end storm through `BatchProcessor.process`: 20,000 term ends at one instant fire in bounded
batches, in the order one unbounded fire gives, with the input left unread until they are all fired, and
an aborted batch in the middle fires the same accounts again (no broker: fake records and codec)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from consumers.batch import BatchOutput, BatchProcessor
from consumers.metrics import BatchTally
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
