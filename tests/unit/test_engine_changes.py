"""Per-account change tracking of a transaction (`Classifier.changes`): which subscriptions moved and how
many event ids the dedup window took, kept as events are applied, checked against snapshots."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.engine import Classifier
from multichannel.model import (
    AccountKey,
    BillingModel,
    Channel,
    Event,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    RelationshipEnded,
    SubscriptionPurchased,
)
from multichannel.parse import parse_event
from multichannel.state import Account, AccountState
from producers.generator import WorkloadGenerator, WorkloadSpec

T = datetime(2026, 3, 1, tzinfo=UTC)


def events(seed: int) -> list[Event]:
    spec = WorkloadSpec(seed=seed, partners=8, customers=20, bad_rate=0.0, duplicate_rate=0.1, partner_change_rate=0.3)
    return [parse_event(item) for item in WorkloadGenerator(spec).events() if isinstance(item, dict)]


def snapshots(engine: Classifier) -> dict[AccountKey, AccountState]:
    return {key: state for key in engine if (state := engine.get(key)) is not None}


def run(engine: Classifier, stream: list[Event], clock: datetime) -> tuple[datetime, Counter[AccountKey]]:
    """Apply `stream`, firing due timers as the clock (the latest occurred_at) moves; the ids each account's
    dedup window took (its events applied, duplicates not)."""
    appended: Counter[AccountKey] = Counter()
    for event in stream:
        if event.occurred_at > clock:
            clock = event.occurred_at
            engine.fire_due(clock)
        if engine.apply(event, clock) is not None and not isinstance(event, PartnerProgramChanged):
            appended[event.partner_id, event.customer_id] += 1
    return clock, appended


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.1, 0.9), size=st.integers(1, 80))
def test_changes_name_exactly_the_subscriptions_whose_state_moved_and_the_ids_appended(
    seed: int, cut: float, size: int
) -> None:
    """For random batches (partner changes and timers included), the (account, subscription) pairs reported
    are exactly those whose snapshot differs after the batch, `appended` is the ids its applied events added,
    and a rollback clears both."""
    stream = events(seed)
    head = int(len(stream) * cut)
    engine = Classifier(dedup_window=16)  # small: ids leave the window, seq goes past len(recent)
    clock, _ = run(engine, stream[:head], datetime.min.replace(tzinfo=UTC))
    engine.commit()
    assert engine.changes() == []
    before = snapshots(engine)
    _, appended = run(engine, stream[head : head + size], clock)
    after = snapshots(engine)
    changes = engine.changes()

    assert [c.key for c in changes] == sorted(key for key, _acct in engine.changed_accounts())
    reported = {(c.key, sid) for c in changes for sid in c.subscription_ids}
    differing = {
        (key, sid)
        for key, state in after.items()
        for sid, sub in state.subscriptions.items()
        if (old := before.get(key)) is None or old.subscriptions.get(sid) != sub
    }
    assert reported == differing
    assert {key for key, state in after.items() if before.get(key) != state} <= {c.key for c in changes}
    assert {key for key, n in appended.items() if n} <= {c.key for c in changes}
    for change in changes:
        old, new = before.get(change.key), after[change.key]
        old_subs = {} if old is None else old.subscriptions
        moved = sorted(sid for sid, sub in new.subscriptions.items() if old_subs.get(sid) != sub)
        assert change.subscription_ids == tuple(moved)
        assert change.appended == appended[change.key]
        assert new.appended_ids == (0 if old is None else old.appended_ids) + change.appended
        assert change.account is engine._accounts[change.key]

    engine.rollback()
    assert engine.changes() == []
    assert snapshots(engine) == before


def purchase(eid: str, sid: str) -> SubscriptionPurchased:
    return SubscriptionPurchased(
        eid, T, "P1", "C1", sid, "O", BillingModel.LICENSE, Channel.OPEN, None, 1, date(2026, 1, 1), date(2027, 1, 1)
    )


def committed(window: int = 256) -> Classifier:
    engine = Classifier(dedup_window=window)
    engine.apply(PartnerProgramChanged("p1", T, "P1", Program.CSP_DIRECT, ()), T)
    engine.apply(purchase("e1", "S1"), T)
    engine.apply(purchase("e2", "S2"), T)
    engine.commit()
    return engine


def test_a_verdict_that_moves_and_comes_back_within_the_batch_is_not_a_change() -> None:
    """A verdict moved and moved back within one batch is not reported (its state is what it was at the
    commit); its events still count as appended."""
    engine = committed()
    engine.apply(RelationshipAccepted("r1", T.replace(hour=1), "P1", "C1"), T)  # S1, S2: R9 -> R10
    engine.apply(RelationshipEnded("r2", T.replace(hour=2), "P1", "C1"), T)  # and back to R9
    engine.apply(purchase("e1", "S1"), T)  # a duplicate: nothing appended
    [change] = engine.changes()
    assert (change.key, change.subscription_ids, change.appended) == (("P1", "C1"), (), 2)
    engine.apply(purchase("e3", "S3"), T)
    assert [(c.subscription_ids, c.appended) for c in engine.changes()] == [(("S3",), 3)]


def test_a_partner_change_reports_the_subscriptions_it_reclassified() -> None:
    """A partner change reports every subscription it re-classified, with nothing appended to the account's
    dedup window."""
    engine = committed()
    engine.apply(PartnerProgramChanged("p2", T.replace(hour=1), "P1", Program.NONE, ()), T)
    assert [(c.subscription_ids, c.appended) for c in engine.changes()] == [(("S1", "S2"), 0)]


def test_seq_counts_every_id_appended_and_survives_restore_and_rollback() -> None:
    """seq counts ids that left the window too, survives a snapshot and restore, is put back by a rollback,
    and reads as len(recent) for a state written without it."""
    engine = committed(window=2)
    engine.apply(purchase("e3", "S3"), T)
    state = engine.get(("P1", "C1"))
    assert state is not None and (state.recent_event_ids, state.seq, state.appended_ids) == (("e2", "e3"), 3, 3)
    assert Account.restore(state).seq == 3
    engine.rollback()
    state = engine.get(("P1", "C1"))
    assert state is not None and (state.seq, state.appended_ids) == (None, 2)  # None: len(recent) says it
    old = AccountState("P1", "C1", recent_event_ids=("a", "b", "c"))  # written before seq was kept
    assert Account.restore(old).seq == 3
