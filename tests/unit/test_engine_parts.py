"""An account kept by its host in parts (its fields, each subscription, its dedup window, its seq) and
held as an opaque payload: `Account.build` makes the same working copy `Account.restore` makes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.engine import Classifier
from multichannel.model import Event
from multichannel.parse import parse_event
from multichannel.state import Account, AccountState
from producers.generator import WorkloadGenerator, WorkloadSpec


def events(seed: int) -> list[Event]:
    spec = WorkloadSpec(seed=seed, partners=8, customers=20, bad_rate=0.0, duplicate_rate=0.05, partner_change_rate=0.3)
    return [parse_event(item) for item in WorkloadGenerator(spec).events() if isinstance(item, dict)]


def live_engine(seed: int, cut: float) -> tuple[Classifier, datetime]:
    stream = events(seed)
    engine = Classifier(dedup_window=8)  # small: ids leave the window, seq is more than len(recent)
    clock = datetime.min.replace(tzinfo=UTC)
    for event in stream[: int(len(stream) * cut)]:
        if event.occurred_at > clock:
            clock = event.occurred_at
            engine.fire_due(clock)
        engine.apply(event, clock)
    engine.commit()
    return engine, clock


def parts(acct: Account) -> tuple[Any, ...]:
    """What a host keeping accounts apart would store of one."""
    state = acct.snapshot()
    return (acct.fields(), list(state.subscriptions.values()), list(acct.recent), acct.seq)


def header(acct: Account) -> tuple[list[str], list[datetime]]:
    """Its sellers and the deadlines it has not passed, as a changelog header says them."""
    sellers, deadlines = [], set()
    for sub in acct.subscriptions.values():
        if sub.purchase is not None and sub.purchase.seller_partner_id is not None:
            sellers.append(sub.purchase.seller_partner_id)
        if sub.deadline is not None and (acct.evaluated_at is None or sub.deadline > acct.evaluated_at):
            deadlines.add(sub.deadline)
    return sellers, sorted(deadlines)


def derived(acct: Account) -> tuple[Any, ...]:
    return (
        acct.counts,
        acct.multichannel,
        acct.status,
        acct.seq,
        {sid: (s.term_end, s.deadline) for sid, s in acct.subscriptions.items()},
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.2, 1.0))
def test_an_account_built_from_its_parts_is_the_one_restored_from_its_state(seed: int, cut: float) -> None:
    """Account.build of an account's fields, subscriptions, window and seq is the working copy Account.restore
    makes of its snapshot, derived fields included."""
    engine, _clock = live_engine(seed, cut)
    for key, acct in engine._accounts.items():
        built = Account.build(*parts(acct))
        restored = Account.restore(acct.snapshot())
        assert built.snapshot() == restored.snapshot() == acct.snapshot()
        assert derived(built) == derived(restored) == derived(acct), key


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.floats(0.2, 0.8))
def test_accounts_held_as_opaque_payloads_carry_on_as_the_live_ones(seed: int, cut: float) -> None:
    """Held as (fields, subscriptions, window, seq) tuples and built by `Account.build` on first use, the
    accounts fire the same timers and take the rest of the stream as the engine that never stopped."""
    live, clock = live_engine(seed, cut)
    held = Classifier(partners=copy.deepcopy(live.partners), dedup_window=8)  # its own: both take the stream
    restored = [(*key, *header(acct), live.account_view(acct), parts(acct)) for key, acct in live._accounts.items()]
    assert held.hold_all(restored, lambda payload: Account.build(*payload)) == []
    assert held.held == len(live)
    stream = events(seed)
    for event in stream[int(len(stream) * cut) :]:
        if event.occurred_at > clock:
            clock = event.occurred_at
            assert held.fire_due(clock) == live.fire_due(clock)
        assert held.apply(event, clock) == live.apply(event, clock)
    later = clock + timedelta(days=400)
    assert held.fire_due(later) == live.fire_due(later)
    assert {k: held.get(k) for k in held} == {k: live.get(k) for k in live}


def test_a_payload_is_opaque_none_included_and_one_thaw_serves_every_held_account() -> None:
    """Any object is a payload (None too, which `held` must not take for absence), and a second thaw while
    accounts are held is refused."""
    engine, _clock = live_engine(1, 1.0)
    key, acct = next(iter(engine._accounts.items()))
    state = acct.snapshot()
    saved: dict[Any, AccountState] = {None: state}
    held = Classifier(partners=engine.partners)
    held.hold(key, [], [], "", None, saved.__getitem__)  # an empty view: stale, re-evaluated
    with pytest.raises(ValueError, match="one thaw"):
        held.hold(("P-other", "C-other"), [], [], "", b"", lambda _payload: state)
    assert held.get(key) == state
    assert held.held == 0
