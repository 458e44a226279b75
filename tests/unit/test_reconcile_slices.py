"""A switch of rule book through `BatchProcessor.process`: every restored account waits for a re-evaluation,
and they are re-evaluated in bounded slices, in key order, record for record what one unbounded pass emits,
with the input left unapplied until the last slice, and an aborted slice done again the same (no broker)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from consumers.batch import BatchProcessor
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.model import BillingModel, Channel, PartnerProgramChanged, Program, SubscriptionPurchased
from multichannel.records import SubscriptionDecision
from multichannel.rulebooks import CURRENT, SEED
from tests.unit.test_partner_table import FakeRecord
from tests.unit.test_timer_storm import Output, RecordingCodec, accounts, in_order, outputs, run

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNTS = 3_000
PARTITIONS = 4
PARTNERS = (
    PartnerProgramChanged("pd", T0, "PD", Program.CSP_INDIRECT_PROVIDER, ()),
    PartnerProgramChanged("pr", T0, "PR", Program.CSP_INDIRECT_RESELLER, ("PD",)),
)


def purchase(i: int, sid: str = "S0") -> SubscriptionPurchased:
    return SubscriptionPurchased(
        f"e{i}-{sid}", T0, "PR", f"C{i:05d}", sid, "O", BillingModel.LICENSE, Channel.OPEN, None, 1,
        date(2025, 1, 1), date(2027, 1, 1),
    )  # fmt: skip


def switched(limit: int | None) -> tuple[BatchProcessor, RecordingCodec]:
    """A reseller's accounts decided under `seed` (R9: the provider's invitation), restored into a store whose
    engine decides under `current` (R9: the reseller's own invitation): each one waits for a re-evaluation."""
    before = Classifier(rulebook=SEED, transactional=False)
    for partner in PARTNERS:
        before.apply(partner, T0)
    for i in range(ACCOUNTS):
        before.apply(purchase(i), T0)
    engine = Classifier(rulebook=CURRENT)
    for event in PARTNERS:
        engine.apply(event, T0)
    engine.commit()
    store = AccountStore(engine, input_partitions=PARTITIONS, decode_legacy=lambda values: [])
    store.owned |= set(range(PARTITIONS))
    states = [state for key in before if (state := before.get(key)) is not None]
    engine.load(states)
    for i, state in enumerate(states):
        store.note(i % PARTITIONS, [state.key])
    store.pending_reconcile |= {state.key for state in states}
    store.commit()
    codec = RecordingCodec()
    proc = BatchProcessor(
        store, codec, subscription_topic="subs", partner_topic="partners", dead_letter_limit=1 << 20,
        timer_batch_records=limit,
    )  # fmt: skip
    return proc, codec


def test_a_switch_is_re_evaluated_in_bounded_slices_as_one_unbounded_pass() -> None:
    """Slices of at most `limit` records, each saved in its own transaction, that together emit what one
    unbounded pass emits, each account once, stamped with the new book."""
    whole, whole_codec = switched(limit=None)
    unbounded = in_order(whole_codec, run(whole))
    assert len(accounts(unbounded)) == ACCOUNTS and not whole.store.pending_reconcile

    proc, codec = switched(limit=500)
    done: list[Output] = []
    batches = 0
    while proc.store.pending_reconcile:
        out = run(proc)
        batch = in_order(codec, out)
        assert len(batch) <= 500 + 1, "a slice holds at most its limit (an account's records are never split)"
        assert out.changelog, "a slice's accounts are saved in its own transaction"
        done += batch
        batches += 1
    assert batches >= ACCOUNTS // 500
    assert done == unbounded
    assert {r.rulebook_version for r in done} == {"2026-12.1"}
    assert len(accounts(done)) == ACCOUNTS


def test_input_waits_for_the_last_slice_and_an_aborted_slice_is_done_again() -> None:
    """While more accounts wait than a slice holds, a batch applies none of its input; a rolled-back slice is
    re-evaluated again with the same records; once the re-evaluations are done, the input applies."""
    whole, whole_codec = switched(limit=None)
    unbounded = in_order(whole_codec, run(whole))

    proc, codec = switched(limit=500)
    records = [FakeRecord(purchase(7, "S9"), 3, 100)]
    done: list[Output] = []
    batches = 0
    while len(proc.store.pending_reconcile) > 500:
        if batches == 2:
            aborted = in_order(codec, run(proc, records, commit=False))
            out = run(proc, records)
            assert in_order(codec, out) == aborted
        else:
            out = run(proc, records)
        assert out.timers_pending
        assert all(r.subscription_id != "S9" for r in outputs(codec, out) if isinstance(r, SubscriptionDecision))
        done += in_order(codec, out)
        batches += 1
    out = run(proc, records)
    assert not out.timers_pending
    last = in_order(codec, out)
    assert [r.subscription_id for r in last if isinstance(r, SubscriptionDecision)][-1] == "S9"
    done += [r for r in last if r.caused_by_event_id != "e7-S9"]
    assert sorted(map(repr, done)) == sorted(map(repr, unbounded))
