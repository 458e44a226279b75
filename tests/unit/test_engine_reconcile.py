"""The cause a re-evaluation after a restore names: the partner event that moved since the account was
saved, read from the partner view it was saved with (not merely the latest of its partners' events)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from consumers.state_format import decode_state, encode_account, read_header
from multichannel.engine import VIEW_VERSION, Classifier, SavedView
from multichannel.model import (
    RULEBOOK_VERSION,
    BillingModel,
    Channel,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    SubscriptionPurchased,
)
from multichannel.partners import PartnerTable
from multichannel.records import OutputRecord, SubscriptionDecision

CLOCK = datetime(2026, 11, 25, tzinfo=UTC)
KEY = ("P38", "C1")


def at(month: int) -> datetime:
    return datetime(2026, month, 1, tzinfo=UTC)


def bought_from_p51() -> SubscriptionPurchased:
    return SubscriptionPurchased(
        "e1",
        at(1),
        "P38",
        "C1",
        "S1",
        "O365-E3",
        BillingModel.LICENSE,
        Channel.THIRD_PARTY,
        "P51",
        10,
        date(2026, 1, 1),
        date(2027, 3, 25),
    )


def table(*events: PartnerProgramChanged) -> PartnerTable:
    partners = PartnerTable()
    for event in events:
        partners.apply(event)
    partners.commit()
    return partners


P38_BEFORE = PartnerProgramChanged("p38-a", at(1), "P38", Program.CSP_DIRECT, ())
P38_MOVED = PartnerProgramChanged("p38-b", at(2), "P38", Program.NONE, ())  # earlier than P51's event
P51 = PartnerProgramChanged("p51", at(3), "P51", Program.ADVISOR, ())  # unchanged since the save


def saved_account(view: SavedView | None = None, version: str = RULEBOOK_VERSION) -> bytes:
    """The account (M3: bought from P51, not in CSP) as the changelog saved it before P38's event moved."""
    live = Classifier(partners=table(P38_BEFORE, P51), rulebook_version=version)
    live.apply(bought_from_p51(), CLOCK)
    [(_key, acct)] = live.changed_accounts()
    return encode_account(acct, live.account_view(acct) if view is None else view)


def restored(saved: bytes, *events: PartnerProgramChanged) -> tuple[Classifier, bool]:
    engine = Classifier(partners=table(*events))
    head = read_header(saved)
    return engine, engine.hold(KEY, head.sellers, head.deadlines, head.partner_view, saved, decode_state)


def causes(records: list[OutputRecord]) -> list[tuple[str, str | None]]:
    return [(r.rule.value if isinstance(r, SubscriptionDecision) else "status", r.caused_by_event_id) for r in records]


def test_the_partner_whose_event_moved_is_the_cause_not_a_later_unchanged_one() -> None:
    """Regression: the account partner P38's event moved (out of CSP: R2); the seller P51's event is
    unchanged but later by occurred_at. The re-evaluation used to name P51's event."""
    engine, stale = restored(saved_account(), P38_BEFORE, P38_MOVED, P51)
    assert stale
    assert causes(engine.reconcile(CLOCK, [KEY])) == [("R2", "p38-b"), ("status", "p38-b")]


def test_a_view_saved_by_the_earlier_release_names_the_latest_of_all_its_partners() -> None:
    """A `version|eid,...` view names no partners: every entry counts as moved (the earlier behaviour)."""
    old_view = RULEBOOK_VERSION + "|,p38-a,p51"  # C1 (absent), P38, P51
    _same, stale = restored(saved_account(old_view), P38_BEFORE, P51)
    assert not stale  # still current: the form alone does not make it stale
    engine, stale = restored(saved_account(old_view), P38_BEFORE, P38_MOVED, P51)
    assert stale
    assert causes(engine.reconcile(CLOCK, [KEY])) == [("R2", "p51"), ("status", "p51")]


def test_only_the_rule_book_version_moved_names_no_cause() -> None:
    """Saved under an earlier rule book version with the same partner events: stale, and what the
    re-evaluation emits (here a term end passed meanwhile) has no partner event as its cause."""
    engine, stale = restored(saved_account(version="2026-01.0"), P38_BEFORE, P51)
    assert stale
    assert causes(engine.reconcile(datetime(2027, 4, 1, tzinfo=UTC), [KEY])) == [("R5", None), ("status", None)]


def test_a_rolled_back_reconcile_keeps_the_saved_view_for_the_retry() -> None:
    """A rolled-back reconcile puts the saved view back, so its retry names the same cause."""
    engine, _stale = restored(saved_account(), P38_BEFORE, P38_MOVED, P51)
    first = causes(engine.reconcile(CLOCK, [KEY]))
    engine.rollback()
    assert causes(engine.reconcile(CLOCK, [KEY])) == first == [("R2", "p38-b"), ("status", "p38-b")]


ids = st.text(min_size=1, max_size=4, alphabet=st.sampled_from('ab%=,;|"\\\u00e9'))


@settings(max_examples=60, deadline=None)
@given(partner=ids, customer=ids, sellers=st.lists(ids, max_size=3), version=ids, moved=st.integers(0, 8))
@example(partner="P1", customer="P1", sellers=[], version=RULEBOOK_VERSION, moved=8)  # customer is the partner
def test_a_view_read_back_from_the_changelog_is_current_until_one_of_its_partners_moves(
    partner: str, customer: str, sellers: list[str], version: str, moved: int
) -> None:
    """Whatever the ids hold (JSON's own specials included, the customer the partner itself), an account
    held with the view its header saved is not stale against the same table, and is once one of the
    partners it names has a later event in force, which its re-evaluation then may name as the cause."""
    names = sorted({partner, customer, *sellers})
    before = [PartnerProgramChanged(f"{pid}-1", at(1), pid, Program.CSP_DIRECT, ()) for pid in names[::2]]
    live = Classifier(partners=table(*before), rulebook_version=version)
    for n, seller in enumerate(sellers):
        live.apply(
            SubscriptionPurchased(
                f"e{n}",
                at(1),
                partner,
                customer,
                f"S{n}",
                "O",
                BillingModel.USAGE,
                Channel.THIRD_PARTY,
                seller,
                None,
                None,
                None,
            ),
            CLOCK,
        )
    if not sellers:
        live.apply(RelationshipAccepted("r1", at(1), partner, customer), CLOCK)
    [(key, acct)] = live.changed_accounts()
    view = live.account_view(acct)
    assert view == {VIEW_VERSION: version, **{pid: f"{pid}-1" if pid in names[::2] else "" for pid in names}}
    saved = encode_account(acct, view)
    head = read_header(saved)

    same = Classifier(partners=table(*before), rulebook_version=version)
    assert not same.hold(key, head.sellers, head.deadlines, head.partner_view, saved, decode_state)
    mover = names[moved % len(names)]
    later = Classifier(
        partners=table(*before, PartnerProgramChanged("late", at(2), mover, Program.NONE, ())), rulebook_version=version
    )
    assert later.hold(key, head.sellers, head.deadlines, head.partner_view, saved, decode_state)
    assert {r.caused_by_event_id for r in later.reconcile(CLOCK, [key])} <= {"late"}
