"""Term-end timers fired in bounded steps: `fire_due(clock, limit)` emits, over as many calls as it takes
(with commits, or rollbacks and retries, between them), exactly what one unbounded call emits."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multichannel.engine import Classifier
from multichannel.model import (
    BillingModel,
    Channel,
    Event,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.records import OutputRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENDS = (date(2026, 3, 1), date(2026, 6, 1), date(2026, 9, 1), date(2027, 1, 1))
CLOCKS = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC))
PROGRAMS = {"P1": Program.CSP_DIRECT, "P2": Program.CSP_DIRECT, "P3": Program.NONE}  # P3: R2, due but silent


def purchase(eid: str, pid: str, cid: str, sid: str, end: date, channel: Channel) -> SubscriptionPurchased:
    return SubscriptionPurchased(
        eid, T0, pid, cid, sid, "O", BillingModel.LICENSE, channel, None, 1, date(2025, 1, 1), end
    )


subscription_spec = st.tuples(
    st.sampled_from(ENDS),
    st.sampled_from([Channel.OPEN, Channel.MICROSOFT_DIRECT]),
    st.none() | st.sampled_from(ENDS),  # a renewal's new term end
    st.booleans(),  # cancelled
)
account_spec = st.tuples(
    st.sampled_from(sorted(PROGRAMS)),
    st.lists(subscription_spec, min_size=1, max_size=3),
    st.booleans(),  # relationship accepted
)


def events_of(accounts: list[tuple[str, list[Any], bool]]) -> list[Event]:
    out: list[Event] = [PartnerProgramChanged(f"p-{p}", T0, p, prog, ()) for p, prog in PROGRAMS.items()]
    for i, (pid, subs, related) in enumerate(accounts):
        cid = f"C{i:03d}"
        for j, (end, channel, renewed, cancelled) in enumerate(subs):
            sid = f"S{j}"
            out.append(purchase(f"e{i}-{j}", pid, cid, sid, end, channel))
            if renewed is not None:
                out.append(SubscriptionRenewed(f"r{i}-{j}", T0, pid, cid, sid, renewed))
            if cancelled:
                out.append(SubscriptionCancelled(f"c{i}-{j}", T0, pid, cid, sid))
        if related:
            out.append(RelationshipAccepted(f"a{i}", T0, pid, cid))
    return out


def engine_of(events: list[Event]) -> Classifier:
    engine = Classifier()
    for event in events:
        engine.apply(event, T0)
    engine.commit()
    return engine


def step_of(r: OutputRecord) -> tuple[str, str, datetime]:
    """The step a record belongs to: one account at one deadline."""
    return (r.partner_id, r.customer_id, r.decided_at)


def accounts_of(engine: Classifier) -> dict[Any, Any]:
    return {key: engine.get(key) for key in engine}


@settings(max_examples=60, deadline=None)
@given(
    accounts=st.lists(account_spec, min_size=1, max_size=30),
    limit=st.integers(1, 12),
    rollbacks=st.lists(st.booleans(), max_size=40),
)
def test_bounded_firing_with_commits_between_equals_one_unbounded_call(
    accounts: list[tuple[str, list[Any], bool]], limit: int, rollbacks: list[bool]
) -> None:
    """Firing in chunks of any limit, with commits and rolled-back retries between them, emits record for
    record what one unbounded call emits, and each chunk stops right after the account that reached the limit."""
    events = events_of(accounts)
    whole = engine_of(events)
    want = [whole.fire_due(clock) for clock in CLOCKS]
    chunked = engine_of(events)
    retry = iter(rollbacks)
    for clock, expected in zip(CLOCKS, want, strict=True):
        got: list[OutputRecord] = []
        while chunked.timers_due(clock):
            if next(retry, False):  # a batch that aborts: its chunk fires again, the same, after the rollback
                before = accounts_of(chunked)
                first = chunked.fire_due(clock, limit)
                chunked.rollback()
                assert accounts_of(chunked) == before
                assert chunked.timers_due(clock)
                assert chunked.fire_due(clock, limit) == first
                chunk = first
            else:
                chunk = chunked.fire_due(clock, limit)
            chunked.commit()
            if chunked.timers_due(clock):  # stopped by the limit, after the account that reached it
                assert len(chunk) >= limit
                assert {step_of(r) for r in chunk[limit - 1 :]} == {step_of(chunk[-1])}
            got.extend(chunk)
        assert got == expected
        assert not chunked.timers_due(clock)
    assert accounts_of(chunked) == accounts_of(whole)
    assert chunked.deadlines == whole.deadlines


def many_accounts(n: int, end: date = ENDS[0]) -> list[Event]:
    out: list[Event] = [PartnerProgramChanged("p1", T0, "P1", Program.CSP_DIRECT, ())]
    out += [purchase(f"e{i}", "P1", f"C{i:03d}", "S1", end, Channel.OPEN) for i in range(n)]
    return out


def test_a_rollback_puts_a_partly_fired_deadline_back_at_the_same_account() -> None:
    """Rolling back a chunk of a partly fired deadline resumes it at the account the last commit left it at,
    accounts and deadline heap as committed."""
    clock = CLOCKS[0]
    engine = engine_of(many_accounts(10))
    first = engine.fire_due(clock, 4)  # two accounts, a decision and a status each
    assert [r.customer_id for r in first] == ["C000", "C000", "C001", "C001"]
    engine.commit()
    committed = accounts_of(engine)
    second = engine.fire_due(clock, 4)
    assert engine.fire_due(clock) and not engine.timers_due(clock)  # the rest of the deadline
    engine.rollback()
    assert engine.timers_due(clock)
    assert engine.deadlines == [datetime(2026, 3, 1, tzinfo=UTC)]
    assert accounts_of(engine) == committed
    assert engine.fire_due(clock, 4) == second
    assert [r.customer_id for r in second] == ["C002", "C002", "C003", "C003"]


def test_an_account_restored_at_a_partly_fired_deadline_fires_in_order_with_the_rest() -> None:
    """An account restored while its deadline is partly fired joins the deadline's remainder in (partner_id,
    customer_id) order."""
    clock = CLOCKS[0]
    source = engine_of(many_accounts(6))
    late = source.get(("P1", "C002"))
    assert late is not None
    engine = engine_of([e for e in many_accounts(6) if getattr(e, "customer_id", None) != "C002"])
    assert {r.customer_id for r in engine.fire_due(clock, 2)} == {"C000"}
    engine.commit()
    engine.load([late], T0)
    assert [r.customer_id for r in engine.fire_due(clock)] == [f"C00{i}" for i in range(1, 6) for _ in "ds"]
    assert not engine.timers_due(clock) and engine.deadlines == []


def test_a_limit_below_one_is_refused() -> None:
    """A limit below one is refused rather than read as one."""
    with pytest.raises(ValueError, match="at least 1"):
        engine_of(many_accounts(1)).fire_due(CLOCKS[0], 0)
