"""Account state: what the engine remembers of one (partner, customer) account.

Everything here is immutable (named tuples: cheap to build and compare), so a batch can keep
the previous state of every account it touched and roll back by putting it back. The merge
functions make the state a function of the *set* of applied events, not of their order
(rule book, "Arrival order does not change the outcome").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import NamedTuple

from multichannel.model import (
    BillingModel,
    CustomerStatus,
    Decision,
    NextAction,
    OrderKey,
    Reason,
    Rule,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)


class Verdict(NamedTuple):
    """A subscription's classification: what a decision record carries besides ids and times."""

    decision: Decision
    reason: Reason
    rule: Rule
    next_actions: tuple[NextAction, ...]
    blocked_until: date | None
    relationship_via_partner_ids: tuple[str, ...]


class Flag(NamedTuple):
    """A relationship or delegated-admin flag with the event that set it last."""

    active: bool
    occurred_at: datetime
    event_id: str

    @property
    def order(self) -> OrderKey:
        return (self.occurred_at, self.event_id)


class SubscriptionState(NamedTuple):
    """Purchase (latest), cancellation (final; earliest kept) and latest renewal, merged; plus the
    last emitted verdict for emit-on-change."""

    subscription_id: str
    purchase: SubscriptionPurchased | None = None
    cancellation: SubscriptionCancelled | None = None
    renewal: SubscriptionRenewed | None = None
    verdict: Verdict | None = None

    @property
    def term_end(self) -> date | None:
        """The term end in force: the later (by occurred_at, event_id) of the purchase and the latest renewal."""
        p, r = self.purchase, self.renewal
        if p is None or p.billing_model is not BillingModel.LICENSE:
            return None
        if r is not None and (r.occurred_at, r.event_id) > (p.occurred_at, p.event_id):
            return r.term_end
        return p.term_end

    @property
    def deadline(self) -> datetime | None:
        """When the term ends (00:00 UTC of term_end) for a license not cancelled; else None."""
        if self.cancellation is not None:
            return None
        end = self.term_end
        return None if end is None else term_deadline(end)


def term_deadline(end: date) -> datetime:
    return datetime.combine(end, time.min, tzinfo=UTC)


class StatusSnapshot(NamedTuple):
    """The last emitted customer status of an account."""

    status: CustomerStatus
    decision_counts: tuple[tuple[str, int], ...]
    """(decision code, count), sorted by code; zero counts absent."""


class AccountState(NamedTuple):
    """One account. `subscriptions` is never mutated in place: a change makes a new dict."""

    partner_id: str
    customer_id: str
    relationship: Flag | None = None
    delegated_admin: Flag | None = None
    subscriptions: dict[str, SubscriptionState] = {}  # replaced on change, never mutated
    status: StatusSnapshot | None = None
    recent_event_ids: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.partner_id, self.customer_id)


def later(a: OrderKey, b: OrderKey) -> bool:
    return a > b


def merge_purchase(sub: SubscriptionState, ev: SubscriptionPurchased) -> SubscriptionState:
    p = sub.purchase
    if p is None or (ev.occurred_at, ev.event_id) > (p.occurred_at, p.event_id):
        return SubscriptionState(sub.subscription_id, ev, sub.cancellation, sub.renewal, sub.verdict)
    return sub


def merge_cancellation(sub: SubscriptionState, ev: SubscriptionCancelled) -> SubscriptionState:
    c = sub.cancellation
    if c is None or (ev.occurred_at, ev.event_id) < (c.occurred_at, c.event_id):
        return SubscriptionState(sub.subscription_id, sub.purchase, ev, sub.renewal, sub.verdict)
    return sub


def merge_renewal(sub: SubscriptionState, ev: SubscriptionRenewed) -> SubscriptionState:
    r = sub.renewal
    if r is None or (ev.occurred_at, ev.event_id) > (r.occurred_at, r.event_id):
        return SubscriptionState(sub.subscription_id, sub.purchase, sub.cancellation, ev, sub.verdict)
    return sub


def merge_flag(flag: Flag | None, active: bool, occurred_at: datetime, event_id: str) -> Flag | None:
    if flag is None or (occurred_at, event_id) > (flag.occurred_at, flag.event_id):
        return Flag(active, occurred_at, event_id)
    return flag
