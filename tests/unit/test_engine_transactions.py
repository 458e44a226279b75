"""The engine's transaction support, as the Kafka service uses it: snapshots of the accounts a batch
changed (for the changelog), and a rollback that leaves no trace, the rules' cached view included."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from multichannel.engine import Classifier
from multichannel.model import (
    BillingModel,
    Channel,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    SubscriptionPurchased,
)
from multichannel.records import OutputRecord, SubscriptionDecision

T = datetime(2026, 3, 1, tzinfo=UTC)


def purchase(eid: str, sid: str, cid: str = "C1") -> SubscriptionPurchased:
    return SubscriptionPurchased(
        eid, T, "P1", cid, sid, "O", BillingModel.LICENSE, Channel.OPEN, None, 1, date(2026, 1, 1), date(2027, 1, 1)
    )


def program(eid: str, prog: Program, at: datetime = T) -> PartnerProgramChanged:
    return PartnerProgramChanged(eid, at, "P1", prog, ())


def decisions(records: Sequence[OutputRecord] | None) -> list[tuple[str, str]]:
    return [(r.subscription_id, r.rule.value) for r in records or [] if isinstance(r, SubscriptionDecision)]


def committed_engine() -> Classifier:
    engine = Classifier()
    engine.apply(program("p1", Program.CSP_DIRECT), T)
    assert decisions(engine.apply(purchase("e1", "S1"), T)) == [("S1", "R9")]
    engine.commit()
    return engine


def test_rolled_back_partner_change_leaves_the_rules_view_of_the_account_as_it_was() -> None:
    """A rolled-back partner change leaves the partner table and account as before, and can be applied again."""
    engine = committed_engine()
    assert decisions(engine.apply(program("p2", Program.NONE, T.replace(hour=1)), T)) == [("S1", "R2")]
    engine.rollback()
    # P1 is in CSP again: a new subscription is classified against the restored table and account
    assert decisions(engine.apply(purchase("e2", "S2"), T)) == [("S2", "R9")]
    # and the rolled-back partner event is not a duplicate when it comes again
    assert decisions(engine.apply(program("p2", Program.NONE, T.replace(hour=1)), T)) == [("S1", "R2"), ("S2", "R2")]


def test_rolled_back_relationship_is_gone_and_its_event_id_free_again() -> None:
    """A rolled-back relationship event leaves no flag and no remembered id, so it applies again."""
    engine = committed_engine()
    accepted = RelationshipAccepted("r1", T, "P1", "C1")
    assert decisions(engine.apply(accepted, T)) == [("S1", "R10")]
    engine.rollback()
    state = engine.get(("P1", "C1"))
    assert state is not None and state.relationship is None and "r1" not in state.recent_event_ids
    assert decisions(engine.apply(accepted, T)) == [("S1", "R10")]


def test_rolled_back_new_account_is_forgotten_with_its_indexes() -> None:
    """A rolled-back new account is gone from the accounts and from the partner indexes."""
    engine = committed_engine()
    engine.apply(purchase("e9", "S9", cid="C9"), T)
    engine.rollback()
    assert engine.get(("P1", "C9")) is None
    assert engine.affected_by_partner("P1") == {("P1", "C1")}
    assert engine.affected_by_partner("C9") == set()


def test_pending_changes_hold_only_accounts_that_changed() -> None:
    """Pending changes hold only accounts whose state changed, and are empty after a commit."""
    engine = committed_engine()
    engine.apply(purchase("e1", "S1"), T)  # a duplicate: nothing changes
    engine.apply(program("p2", Program.CSP_DIRECT, T.replace(hour=1)), T)  # same program: nothing to re-classify
    assert engine.pending_changes() == {}
    engine.apply(purchase("e2", "S2"), T)
    changes = engine.pending_changes()
    assert set(changes) == {("P1", "C1")}
    assert set(changes["P1", "C1"].subscriptions) == {"S1", "S2"}
    engine.commit()
    assert engine.pending_changes() == {}
