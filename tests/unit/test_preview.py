"""The rule-book preview's core (`multichannel.preview`): one account under two books at one clock, and the
figures added up from the comparisons; no Kafka, no files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from multichannel.engine import Classifier
from multichannel.model import NextAction, Reason, Rule
from multichannel.parse import parse_event
from multichannel.partners import PartnerTable
from multichannel.preview import (
    SAMPLE_LIMIT,
    Change,
    PreviewSummary,
    book_label,
    change_from_record,
    change_record,
    compare_account,
)
from multichannel.rulebooks import CURRENT, SEED, RuleBook
from multichannel.rules import AccountContext, rule_r7_license_held_by_other_csp
from multichannel.state import Account, Subscription, Verdict

CLOCK = datetime(2026, 12, 2, 12, tzinfo=UTC)
A = NextAction


def _seed_r7_renamed(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    """Seed's R7 with another reason code: a book that changes a reason and nothing else."""
    verdict = rule_r7_license_held_by_other_csp(ctx, sub)
    return None if verdict is None else verdict._replace(reason=Reason.TRANSFER_NEEDS_RELATIONSHIP)


RENAMED = RuleBook(
    "renamed",
    "test-1",
    tuple(_seed_r7_renamed if rule is rule_r7_license_held_by_other_csp else rule for rule in SEED.rules),
    cancellation_windows=False,
    admin_expiry=False,
)


def partner(pid: str, program: str, providers: tuple[str, ...] = (), expert: bool = False) -> dict[str, Any]:
    return {
        "event_type": "partner_program_changed",
        "event_id": f"prog-{pid}",
        "occurred_at": "2026-01-01T00:00:00Z",
        "partner_id": pid,
        "program": program,
        "indirect_provider_ids": list(providers),
        "azure_expert_msp": expert,
    }


PARTNERS = [
    partner("PD", "csp_direct", expert=True),
    partner("PR", "csp_indirect_reseller", ("PP",)),
    partner("PP", "csp_indirect_provider"),
    partner("PX", "csp_direct"),
]


def buy(pid: str, sid: str = "S1", **fields: Any) -> dict[str, Any]:
    terms = {"quantity": 1, "term_start": "2026-06-01", "term_end": "2027-06-01"}
    return {
        "event_type": "subscription_purchased",
        "event_id": f"buy-{sid}",
        "occurred_at": "2026-11-01T00:00:00Z",
        "partner_id": pid,
        "customer_id": "C1",
        "subscription_id": sid,
        "offer_id": "O365-E3",
        "billing_model": "license",
        **(terms if fields.get("billing_model", "license") == "license" else {}),
        **fields,
    }


def flag(pid: str, kind: str, **fields: Any) -> dict[str, Any]:
    base = {"occurred_at": "2026-11-02T00:00:00Z", "partner_id": pid, "customer_id": "C1"}
    return {**base, "event_type": kind, "event_id": f"{kind}-{pid}", **fields}


def account(events: list[dict[str, Any]], at: datetime = CLOCK) -> tuple[Account, PartnerTable]:
    """The account the events make, applied under `seed` at `at` (as a deployment evaluated it last)."""
    engine = Classifier(transactional=False)
    for event in PARTNERS + events:
        engine.apply(parse_event(event), at)
    [key] = [k for k in engine if k[1] == "C1"]
    state = engine.get(key)
    assert state is not None
    return Account.restore(state), engine.partners


CASES: list[tuple[str, RuleBook, list[dict[str, Any]], tuple[str, str, tuple[NextAction, ...]] | None]] = [
    # (id, the book to switch to, the account's events, (rule, reason, next actions) after, or None: no change)
    (
        "decision",
        CURRENT,
        [buy("PD", channel="csp", seller_partner_id="PX", commerce="nce"), flag("PD", "relationship_accepted")],
        ("T1", "NCE_TRANSFER_AVAILABLE", (A.REQUEST_PARTNER_TRANSFER,)),
    ),
    (
        "reason-only",
        RENAMED,
        [buy("PD", channel="csp", seller_partner_id="PX")],
        ("R7", "TRANSFER_NEEDS_RELATIONSHIP", (A.WAIT_FOR_TERM_END_OR_CANCELLATION,)),
    ),
    (
        "next-actions-only",
        CURRENT,
        [buy("PR", channel="microsoft_direct")],
        (
            "R9",
            "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
            (A.SEND_RESELLER_INVITATION_TO_CUSTOMER, A.REQUEST_DELEGATED_ADMIN_FOR_RESELLER),
        ),
    ),
    (
        "next-actions-only-by-the-clock",  # the GDAP grant ended before the clock: only `current` reads it
        CURRENT,
        [
            buy("PR", channel="open"),
            flag("PR", "relationship_accepted"),
            flag("PR", "delegated_admin_granted", expires_at="2026-11-30T00:00:00Z"),
        ],
        (
            "R10",
            "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
            (A.SUPPORT_UNDER_RELATIONSHIP, A.WAIT_FOR_TERM_END_OR_CANCELLATION, A.REQUEST_DELEGATED_ADMIN_FOR_RESELLER),
        ),
    ),
    ("no-change", CURRENT, [buy("PD", channel="microsoft_direct")], None),
    ("no-change-legacy-held-elsewhere", CURRENT, [buy("PD", channel="csp", seller_partner_id="PX")], None),
]


@pytest.mark.parametrize(("after", "events", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_account_under_two_books(
    after: RuleBook, events: list[dict[str, Any]], expected: tuple[str, str, tuple[NextAction, ...]] | None
) -> None:
    """The subscription is a change exactly when the books' verdicts differ, with both verdicts kept; the
    stored verdict is seed's at the clock (not stale)."""
    acct, partners = account(events)
    comparison = compare_account(acct, partners, SEED, after, CLOCK)
    assert comparison is not None and comparison.subscriptions == 1 and comparison.stale == 0
    if expected is None:
        assert comparison.changes == []
        return
    [change] = comparison.changes
    assert change.key == ("PD" if events[0]["partner_id"] == "PD" else "PR", "C1", "S1")
    assert change.before == acct.subscriptions["S1"].verdict
    rule, reason, actions = expected
    assert (change.after.rule.value, change.after.reason.value, change.after.next_actions) == (rule, reason, actions)


def test_an_account_without_a_purchase_is_not_compared() -> None:
    """An account that holds only a relationship (or a cancellation waiting for its purchase) is decided by
    neither book."""
    engine = Classifier(transactional=False)
    engine.apply(parse_event(flag("PD", "relationship_accepted")), CLOCK)
    state = engine.get(("PD", "C1"))
    assert state is not None
    assert compare_account(Account.restore(state), engine.partners, SEED, CURRENT, CLOCK) is None


def test_a_stored_verdict_behind_the_clock_is_counted_stale() -> None:
    """A term that ended before the clock while no timer fired: the stored verdict is not seed's at the clock,
    and the comparison says so (a restart would emit it whatever the book)."""
    evaluated = datetime(2026, 11, 15, tzinfo=UTC)
    acct, partners = account([buy("PD", channel="microsoft_direct", term_end="2026-12-01")], evaluated)
    comparison = compare_account(acct, partners, SEED, SEED, CLOCK)
    assert comparison is not None
    assert comparison.stale == 1 and comparison.changes == []


def _change(pid: str, cid: str, sid: str, before: Verdict, after: Verdict) -> Change:
    return Change(pid, cid, sid, before, after)


def _verdicts() -> tuple[Verdict, Verdict]:
    acct, partners = account([buy("PR", channel="microsoft_direct")])
    comparison = compare_account(acct, partners, SEED, CURRENT, CLOCK)
    assert comparison is not None
    [change] = comparison.changes
    return change.before, change.after


def test_the_figures_add_up_and_merge_as_one_pass() -> None:
    """from → to counts, partners, next actions gained and lost, the first subscriptions by id; two halves
    merged give the figures of one pass."""
    before, after = _verdicts()
    changes = [_change(f"P{i % 3}", f"C{i:03d}", "S1", before, after) for i in range(SAMPLE_LIMIT + 15)]
    whole = PreviewSummary(book_label(SEED), book_label(CURRENT), CLOCK)
    halves = [PreviewSummary(book_label(SEED), book_label(CURRENT), CLOCK) for _ in range(2)]
    for n, change in enumerate(reversed(changes)):
        whole.add_change(change)
        halves[n % 2].add_change(change)
    halves[0].merge(halves[1])
    assert halves[0] == whole
    assert whole.rows() == [
        (
            "ELIGIBLE_FOR_RELATIONSHIP_REQUEST/PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
            "ELIGIBLE_FOR_RELATIONSHIP_REQUEST/PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
            len(changes),
        )
    ]
    assert whole.top_partners(2) == [("P0", 12), ("P1", 12)]
    assert whole.actions_gained == {"SEND_RESELLER_INVITATION_TO_CUSTOMER": len(changes)}
    assert whole.actions_lost == {
        "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER": len(changes),
        "SEND_PROVIDER_INVITATION_TO_CUSTOMER": len(changes),
    }
    assert whole.samples == sorted(changes, key=lambda c: c.key)[:SAMPLE_LIMIT]
    with pytest.raises(ValueError, match="same books"):
        whole.merge(PreviewSummary(book_label(SEED), book_label(SEED), CLOCK))


def test_a_written_change_and_summary_read_back_the_same() -> None:
    """`change_record` → `change_from_record` is the identity; a summary's figures and its changes rebuild the
    summary."""
    before, after = _verdicts()
    change = _change("PR", "C1", "S1", before, after)
    assert change_from_record(change_record(change)) == change
    summary = PreviewSummary(book_label(SEED), book_label(CURRENT), CLOCK, accounts=3, subscriptions=5, stale=1)
    summary.add_change(change)
    summary.accounts_changed = 1
    summary.saved_by["2026-11.1"] = 3
    figures = summary.figures()
    figures["as_of"] = "2026-12-02T12:00:00Z"  # as a JSON line carries it
    again = PreviewSummary.from_figures(figures)
    again.add_change(change_from_record(change_record(change)))
    assert again == summary
    assert (figures["record_type"], figures["changed"]) == ("preview_summary", 1)
    assert Rule(change_record(change)["to"]["rule"]) is Rule.R9
