"""The cause a re-evaluation after a restore names: the partner event that moved since the account was
saved, read from the partner view it was saved with (not merely the latest of its partners' events)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import given
from hypothesis import strategies as st

from consumers.state_format import decode_state, encode_account, read_header
from multichannel.engine import Classifier, view_entries
from multichannel.model import (
    RULEBOOK_VERSION,
    BillingModel,
    Channel,
    PartnerProgramChanged,
    Program,
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


def saved_account(view: str | None = None, version: str = RULEBOOK_VERSION) -> bytes:
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
    assert view_entries(old_view) is None
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
    engine, _stale = restored(saved_account(), P38_BEFORE, P38_MOVED, P51)
    first = causes(engine.reconcile(CLOCK, [KEY]))
    engine.rollback()
    assert causes(engine.reconcile(CLOCK, [KEY])) == first == [("R2", "p38-b"), ("status", "p38-b")]


ids = st.text(min_size=1, max_size=6, alphabet=st.sampled_from("ab%=,;|2C3D5"))


@given(partner=ids, customer=ids, sellers=st.lists(ids, max_size=3), version=ids, eids=st.lists(ids, min_size=6))
def test_a_partner_view_reads_back_as_the_entries_it_was_made_of(
    partner: str, customer: str, sellers: list[str], version: str, eids: list[str]
) -> None:
    """Whatever the ids hold (the view's own separators and escapes included)."""
    names = sorted({partner, customer, *sellers})
    partners = table(
        *[
            PartnerProgramChanged(eid, at(1), pid, Program.CSP_DIRECT, ())
            for pid, eid in zip(names[::2], eids, strict=False)
        ]
    )
    engine = Classifier(partners=partners, rulebook_version=version)
    view = engine.partner_view(partner, customer, sellers)
    assert view_entries(view) == {pid: getattr(partners.entry(pid), "event_id", "") for pid in names}
