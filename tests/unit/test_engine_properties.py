"""Properties of the engine over random generated streams (hypothesis chooses seeds and shuffles)."""

from __future__ import annotations

import io
import random
from datetime import datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.classify_runner import classify_stream
from multichannel.codec import state_from_record, state_to_record
from multichannel.engine import Classifier
from multichannel.parse import parse_event
from multichannel.partners import ABSENT
from multichannel.rulebooks import SEED
from multichannel.rules import AccountContext
from multichannel.state import Account, Verdict
from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec

FAST = settings(max_examples=25, deadline=None)


def stream(seed: int, bad_rate: float = 0.0, partner_change_rate: float = 0.05) -> list[Any]:
    spec = WorkloadSpec(
        seed=seed,
        partners=12,
        customers=25,
        bad_rate=bad_rate,
        duplicate_rate=0.05,
        partner_change_rate=partner_change_rate,
    )
    return list(WorkloadGenerator(spec).events())


def lines_of(items: list[Any]) -> list[bytes]:
    out = []
    for item in items:
        if isinstance(item, BadRecord):
            out.append(item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event))
        else:
            out.append(orjson.dumps(item))
    return out


def classify(items: list[Any]) -> tuple[list[dict[str, Any]], Any]:
    sink = io.BytesIO()
    counts = classify_stream(lines_of(items), sink)
    return [orjson.loads(line) for line in sink.getvalue().splitlines()], counts


def final_state(records: list[dict[str, Any]]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    decisions: dict[Any, Any] = {}
    statuses: dict[Any, Any] = {}
    for r in records:
        if r["record_type"] == "subscription_decision":
            decisions[r["partner_id"], r["customer_id"], r["subscription_id"]] = (
                r["decision"],
                r["reason"],
                r["rule"],
                tuple(r["next_actions"]),
                r["blocked_until"],
                tuple(r["relationship_via_partner_ids"]),
            )
        elif r["record_type"] == "customer_status":
            statuses[r["partner_id"], r["customer_id"]] = (r["status"], tuple(sorted(r["decision_counts"].items())))
    return decisions, statuses


def group_key(item: dict[str, Any]) -> Any:
    if item["event_type"] == "partner_program_changed":
        return ("partner", item["partner_id"])
    return (item["partner_id"], item["customer_id"], item.get("subscription_id") or item["event_type"].split("_")[0])


@FAST
@given(seed=st.integers(0, 10_000), rnd=st.randoms(use_true_random=False))
def test_shuffling_each_subscriptions_events_keeps_final_decisions(seed: int, rnd: random.Random) -> None:
    """Shuffling the events of each subscription, account flag and partner keeps every final decision and status."""
    items = [i for i in stream(seed) if isinstance(i, dict)]
    positions: dict[Any, list[int]] = {}
    for index, item in enumerate(items):
        positions.setdefault(group_key(item), []).append(index)
    shuffled = list(items)
    for slots in positions.values():
        members = [items[i] for i in slots]
        rnd.shuffle(members)
        for slot, member in zip(slots, members, strict=True):
            shuffled[slot] = member
    # the clock ends at the same instant either way: the largest occurred_at
    assert final_state(classify(items)[0]) == final_state(classify(shuffled)[0])


@FAST
@given(seed=st.integers(0, 10_000), rnd=st.randoms(use_true_random=False))
def test_repeating_any_event_changes_no_output(seed: int, rnd: random.Random) -> None:
    """Repeating any event later in the stream changes no output and is counted as a duplicate."""
    items = [i for i in stream(seed) if isinstance(i, dict)]
    original, _ = classify(items)
    index = rnd.randrange(len(items))
    repeated = list(items)
    repeated.insert(rnd.randrange(index + 1, len(items) + 1), dict(items[index]))
    again, counts = classify(repeated)
    assert again == original
    assert counts.duplicates >= 1


@FAST
@given(seed=st.integers(0, 10_000))
def test_no_two_consecutive_decisions_of_a_subscription_are_equal(seed: int) -> None:
    """A subscription's decision is emitted only when it changes."""
    records, _ = classify(stream(seed))
    last: dict[Any, Any] = {}
    for r in records:
        if r["record_type"] != "subscription_decision":
            continue
        key = (r["partner_id"], r["customer_id"], r["subscription_id"])
        value = (
            r["decision"],
            r["reason"],
            r["blocked_until"],
            tuple(r["next_actions"]),
            tuple(r["relationship_via_partner_ids"]),
        )
        assert last.get(key) != value
        last[key] = value


@FAST
@given(seed=st.integers(0, 10_000))
def test_every_line_is_applied_duplicate_or_one_dead_letter(seed: int) -> None:
    """Every line is applied, a duplicate, or exactly one dead letter for each bad record."""
    items = stream(seed, bad_rate=0.1)
    records, counts = classify(items)
    dead = [r for r in records if r["record_type"] == "dead_letter"]
    assert counts.lines == len(items) == counts.applied + counts.duplicates + counts.dead_letters
    # a KEY_MISMATCH record has no key to contradict offline: it is a valid event there
    bad = sum(1 for i in items if isinstance(i, BadRecord) and i.reason != "KEY_MISMATCH")
    assert len(dead) == counts.dead_letters == bad
    assert len({d["line"] for d in dead}) == len(dead)


@FAST
@given(seed=st.integers(0, 10_000))
def test_changelog_codec_round_trips_every_state(seed: int) -> None:
    """Every account state a stream builds survives the changelog codec unchanged."""
    engine = Classifier()
    for item in stream(seed):
        if isinstance(item, dict):
            event = parse_event(item)
            engine.apply(event, event.occurred_at)
    for key in engine:
        state = engine.get(key)
        assert state is not None
        assert state_from_record(state_to_record(state)) == state


@FAST
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 60))
def test_rollback_then_reapply_equals_applying_once(seed: int, cut: int) -> None:
    """A batch rolled back and applied again gives the records and states of applying it once."""
    events = [parse_event(i) for i in stream(seed) if isinstance(i, dict)]
    head, batch = events[:-cut], events[-cut:]
    clock = max(e.occurred_at for e in events)

    def prepared() -> Classifier:
        engine = Classifier()
        for e in head:
            engine.apply(e, clock)
        engine.commit()
        return engine

    once = prepared()
    want = [r for e in batch for r in once.apply(e, clock) or ()]
    retried = prepared()
    for e in batch:
        retried.apply(e, clock)
    retried.rollback()
    got = [r for e in batch for r in retried.apply(e, clock) or ()]
    assert got == want
    assert {k: retried.get(k) for k in retried} == {k: once.get(k) for k in once}


SubscriptionKey = tuple[str, str, str]


def stored_verdicts(engine: Classifier) -> dict[SubscriptionKey, Verdict | None]:
    """Every purchased subscription's last verdict, as the engine holds it."""
    verdicts: dict[SubscriptionKey, Verdict | None] = {}
    for key in engine:
        state = engine.get(key)
        assert state is not None
        for sid, sub in state.subscriptions.items():
            if sub.purchase is not None:
                verdicts[(*key, sid)] = sub.verdict
    return verdicts


def verdicts_from_scratch(engine: Classifier, clock: datetime) -> dict[SubscriptionKey, Verdict | None]:
    """Every purchased subscription classified anew at `clock`, from a context built afresh."""
    entries = engine.partners.entries
    verdicts: dict[SubscriptionKey, Verdict | None] = {}
    for key in engine:
        state = engine.get(key)
        assert state is not None
        acct = Account.restore(state)
        partner = entries.get(acct.partner_id, ABSENT)
        rel, admin = acct.relationship, acct.delegated_admin
        ctx = AccountContext(
            partner_id=acct.partner_id,
            partner_program=partner.program,
            partner_in_csp=partner.in_csp,
            customer_in_csp=entries.get(acct.customer_id, ABSENT).in_csp,
            providers=partner.indirect_provider_ids,
            relationship=rel is not None and rel.active,
            delegated_admin=admin is not None and admin.active,
            clock=clock,
            partners=engine.partners,
        )
        for sid, sub in acct.subscriptions.items():
            if sub.purchase is not None:
                verdicts[(*key, sid)] = SEED.classify(ctx, sub)
    return verdicts


@FAST
@given(seed=st.integers(0, 10_000))
def test_after_every_event_each_stored_verdict_is_what_the_rules_say_from_scratch(seed: int) -> None:
    """The engine re-classifies only what an event can move (a subscription event, that subscription;
    a flag, its account; a partner change, the accounts indexed under the partner; a deadline, the
    accounts due) and keeps each account's rule context between events. Classifying everything from
    scratch after every event must agree."""
    engine = Classifier(transactional=False)
    clock: datetime | None = None
    for item in stream(seed, partner_change_rate=0.3):  # partners change under held accounts often
        if not isinstance(item, dict):
            continue
        event = parse_event(item)
        if clock is None or event.occurred_at > clock:
            clock = event.occurred_at
            engine.fire_due(clock)
        engine.apply(event, clock)
        assert stored_verdicts(engine) == verdicts_from_scratch(engine, clock)
