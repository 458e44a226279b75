"""Account state: what the engine remembers of one (partner, customer) account.

Two forms. `Account` and `Subscription` are the engine's working copies: mutable slotted objects,
changed in place on the hot path (one object per account and per subscription, nothing rebuilt per
event). `AccountState` and `SubscriptionState` are immutable snapshots of them: what the changelog
stores and what `Classifier.get` hands out; a transaction's undo log keeps the same in plain tuples
(`Account.undo_copy`), which cost less to make.

The merges make the state a function of the *set* of applied events, not of their order
(rule book, "Arrival order does not change the outcome").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

from multichannel.model import (
    BillingModel,
    Commerce,
    CustomerStatus,
    Decision,
    NextAction,
    Reason,
    Rule,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)

if TYPE_CHECKING:
    from multichannel.rules import AccountContext


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
    expires_at: datetime | None = None
    """A delegated-admin grant's GDAP end (contract 1.1): the `current` rule book ends the flag there."""

    def active_at(self, clock: datetime) -> bool:
        """Whether the flag holds at `clock` with its expiry read (`current`'s delegated admin)."""
        return self.active and (self.expires_at is None or clock < self.expires_at)


def merge_flag(
    flag: Flag | None, active: bool, occurred_at: datetime, event_id: str, expires_at: datetime | None = None
) -> Flag | None:
    """The later (by occurred_at, then event_id) of the flag and the event."""
    if flag is None or (occurred_at, event_id) > (flag.occurred_at, flag.event_id):
        return Flag(active, occurred_at, event_id, expires_at)
    return flag


@lru_cache(maxsize=1 << 14)
def term_deadline(end: date) -> datetime:
    """00:00 UTC of `end`. Memoised: a stream has few distinct term-end dates and asks for each many times."""
    return datetime.combine(end, time.min, tzinfo=UTC)


@lru_cache(maxsize=1 << 14)
def window_deadline(last_day: date) -> datetime:
    """00:00 UTC of the day after `last_day`: a cancellation window's last day is inclusive."""
    return term_deadline(last_day + timedelta(days=1))


# Bound once: `_derive` reads it at every change of a subscription, and a global is read faster than an enum
# class attribute.
_LICENSE = BillingModel.LICENSE
_NCE = Commerce.NCE


class SubscriptionState(NamedTuple):
    """Snapshot of a subscription: purchase (latest), cancellation (final; earliest kept), latest
    renewal, and the last emitted verdict (for emit-on-change)."""

    subscription_id: str
    purchase: SubscriptionPurchased | None = None
    cancellation: SubscriptionCancelled | None = None
    renewal: SubscriptionRenewed | None = None
    verdict: Verdict | None = None


class StatusSnapshot(NamedTuple):
    """The last emitted customer status of an account."""

    status: CustomerStatus
    decision_counts: tuple[tuple[str, int], ...]
    """(decision code, count), sorted by code; zero counts absent."""


class AccountState(NamedTuple):
    """Snapshot of one account (the changelog's content). Never mutated."""

    partner_id: str
    customer_id: str
    relationship: Flag | None = None
    delegated_admin: Flag | None = None
    subscriptions: dict[str, SubscriptionState] = {}  # a fresh dict per snapshot
    status: StatusSnapshot | None = None
    recent_event_ids: tuple[str, ...] = ()
    evaluated_at: datetime | None = None
    """The clock of the account's latest evaluation: every deadline of its subscriptions at or before it
    has been passed (a restored account fires only later ones). None in states written before it was
    kept."""
    seq: int | None = None
    """How many event ids were appended to the dedup window over the account's life (`Account.seq`); None
    while that is len(recent_event_ids), no id having left the window yet, which is also what a state
    written without it reads as (the changelog formats do not carry it). See `appended_ids`."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.partner_id, self.customer_id)

    @property
    def appended_ids(self) -> int:
        """`seq`, or len(recent_event_ids) when it is None."""
        return len(self.recent_event_ids) if self.seq is None else self.seq


class AccountFields(NamedTuple):
    """An account's own fields, its subscriptions and dedup window aside (`Account.build`, `Account.fields`)."""

    partner_id: str
    customer_id: str
    relationship: Flag | None = None
    delegated_admin: Flag | None = None
    status: StatusSnapshot | None = None
    """Its counts are not read back: a working copy counts its subscriptions' verdicts."""
    evaluated_at: datetime | None = None


class Subscription:
    """The engine's working copy of a subscription. `term_end` and `deadline` are derived, kept up to
    date by the merges, so that the rules and the timers read them as plain attributes."""

    __slots__ = (
        "cancellation",
        "deadline",
        "purchase",
        "renewal",
        "subscription_id",
        "term_end",
        "verdict",
        "window_end",
    )

    def __init__(
        self,
        subscription_id: str,
        purchase: SubscriptionPurchased | None = None,
        cancellation: SubscriptionCancelled | None = None,
        renewal: SubscriptionRenewed | None = None,
        verdict: Verdict | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        self.purchase = purchase
        self.cancellation = cancellation
        self.renewal = renewal
        self.verdict = verdict
        self.term_end: date | None = None
        self.deadline: datetime | None = None
        """When the term ends (00:00 UTC of term_end) for a license not cancelled; else None."""
        self.window_end: datetime | None = None
        """When the NCE cancellation window of the term in force closes (00:00 UTC of the day after
        `cancellation_allowed_until`) for an NCE license not cancelled; else None (read by `current` only)."""
        if purchase is not None:
            self._derive()

    def _derive(self) -> None:
        """The term end in force of a license: the latest renewal's new term end once there is one, else
        the purchase's (a renewal that arrives before its purchase is applied when the purchase arrives).
        None for usage, whose renewals change nothing."""
        p = self.purchase
        if p is None or p.billing_model is not _LICENSE:
            self.term_end = self.deadline = self.window_end = None
            return
        r = self.renewal
        end = self.term_end = p.term_end if r is None else r.term_end
        if self.cancellation is not None:
            self.deadline = self.window_end = None
            return
        self.deadline = None if end is None else term_deadline(end)
        if p.commerce is _NCE:  # the window of the term in force: the latest renewal's once there is one
            last = p.cancellation_allowed_until if r is None else r.cancellation_allowed_until
            self.window_end = None if last is None else window_deadline(last)
        else:
            self.window_end = None

    def merge_purchase(self, ev: SubscriptionPurchased) -> bool:
        """Keep the later purchase; True when it changed."""
        p = self.purchase
        if p is None or (ev.occurred_at, ev.event_id) > (p.occurred_at, p.event_id):
            self.purchase = ev
            self._derive()
            return True
        return False

    def merge_cancellation(self, ev: SubscriptionCancelled) -> bool:
        """A cancellation is final: keep the earliest; True when it changed."""
        c = self.cancellation
        if c is None or (ev.occurred_at, ev.event_id) < (c.occurred_at, c.event_id):
            self.cancellation = ev
            self.deadline = self.window_end = None
            return True
        return False

    def merge_renewal(self, ev: SubscriptionRenewed) -> bool:
        """Keep the latest renewal; True when it changed."""
        r = self.renewal
        if r is None or (ev.occurred_at, ev.event_id) > (r.occurred_at, r.event_id):
            self.renewal = ev
            self._derive()
            return True
        return False

    def snapshot(self) -> SubscriptionState:
        return SubscriptionState(self.subscription_id, self.purchase, self.cancellation, self.renewal, self.verdict)


subscription_parts: Callable[[Subscription], SubscriptionParts] = attrgetter(
    "subscription_id", "purchase", "cancellation", "renewal", "verdict"
)
"""A subscription's `SubscriptionParts`, read in one native call."""

MULTICHANNEL_RULES = frozenset({Rule.R8.value, Rule.R9.value, Rule.R10.value, Rule.E1.value, Rule.E2.value})
"""The rules of an active multichannel subscription, as plain strings (an enum member's own hash is a
Python-level call): `verdict.rule._value_ in MULTICHANNEL_RULES`. E1 and E2 (M1 subscriptions) exist in
the `current` rule book only."""


class Account:
    """The engine's working copy of an account. `counts` (decision code -> subscriptions with it) and
    `multichannel` (verdicts from R8-R10) follow the stored verdicts, so that a status needs no pass
    over the subscriptions; `status` is the last emitted one."""

    __slots__ = (
        "context",
        "counts",
        "customer_id",
        "delegated_admin",
        "evaluated_at",
        "multichannel",
        "partner_id",
        "recent",
        "relationship",
        "sellers",
        "seq",
        "status",
        "subscriptions",
    )

    def __init__(self, partner_id: str, customer_id: str) -> None:
        self.partner_id = partner_id
        self.customer_id = customer_id
        self.relationship: Flag | None = None
        self.delegated_admin: Flag | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.status: CustomerStatus | None = None
        self.recent: list[str] = []
        self.counts: dict[str, int] = {}
        self.multichannel = 0
        self.context: AccountContext | None = None
        """The rules' view of the account, kept by the engine between events (see Classifier._context)."""
        self.evaluated_at: datetime | None = None
        """See AccountState.evaluated_at."""
        self.seq = 0
        """Event ids appended to `recent` over the account's life (the engine adds one per applied event)."""
        self.sellers: dict[str, int] = {}
        """Seller partner id -> subscriptions whose purchase names it (`sold_by`): the partners the account's
        verdicts depend on besides its own, known without a pass over its subscriptions."""

    def sold_by(self, old: str | None, new: str | None) -> None:
        """A subscription's purchase moved from seller `old` to seller `new` (None: no seller)."""
        if old == new:
            return
        sellers = self.sellers
        if old is not None:
            left = sellers[old] - 1
            if left:
                sellers[old] = left
            else:
                del sellers[old]
        if new is not None:
            sellers[new] = sellers.get(new, 0) + 1

    def reclassified(self, old: Verdict | None, new: Verdict) -> bool:
        """Account for one subscription's verdict moving from `old` to `new`; True when its decision
        changed (and with it the decision counts)."""
        if new[2]._value_ in MULTICHANNEL_RULES:
            self.multichannel += 1
        code = new[0]._value_  # a plain str: cheap to hash
        counts = self.counts
        if old is not None:
            if old[2]._value_ in MULTICHANNEL_RULES:
                self.multichannel -= 1
            was = old[0]._value_
            if was == code:
                return False
            left = counts[was] - 1
            if left:
                counts[was] = left
            else:
                del counts[was]
        counts[code] = counts.get(code, 0) + 1
        return True

    def snapshot(self) -> AccountState:
        status = self.status
        return AccountState(
            self.partner_id,
            self.customer_id,
            self.relationship,
            self.delegated_admin,
            {sid: sub.snapshot() for sid, sub in self.subscriptions.items()},
            None if status is None else StatusSnapshot(status, tuple(sorted(self.counts.items()))),
            tuple(self.recent),
            self.evaluated_at,
            None if self.seq == len(self.recent) else self.seq,
        )

    def undo_copy(self) -> UndoCopy:
        """What `from_undo_copy` builds the account back from, as it is now: `snapshot` in plain tuples
        (no named tuple per subscription, no sorted counts), as the engine takes one before a batch's
        first change of each account it touches. Events, flags and verdicts are shared: never changed."""
        return (
            self.partner_id,
            self.customer_id,
            self.relationship,
            self.delegated_admin,
            list(map(subscription_parts, self.subscriptions.values())),
            self.status,
            tuple(self.recent),
            self.evaluated_at,
            self.seq,
        )

    @classmethod
    def from_undo_copy(cls, copy: UndoCopy) -> Account:
        pid, cid, relationship, admin, subs, status, recent, evaluated_at, seq = copy
        return cls._build(pid, cid, relationship, admin, subs, status, recent, evaluated_at, seq)

    @classmethod
    def restore(cls, state: AccountState) -> Account:
        """A working copy of a snapshot (the snapshot itself is left untouched)."""
        status = None if state.status is None else state.status.status
        return cls._build(
            state.partner_id,
            state.customer_id,
            state.relationship,
            state.delegated_admin,
            state.subscriptions.values(),
            status,
            state.recent_event_ids,
            state.evaluated_at,
            state.appended_ids,
        )

    @classmethod
    def build(
        cls,
        fields: AccountFields,
        subscriptions: Iterable[SubscriptionState],
        recent_event_ids: Iterable[str],
        seq: int | None = None,
    ) -> Account:
        """A working copy from its parts, for a host that keeps them apart (an account's fields, each
        subscription, the dedup window's ids, oldest first): what `restore` builds of the `AccountState`
        holding the same. `seq` None counts the window's ids (`AccountState.appended_ids`)."""
        recent = list(recent_event_ids)
        status = fields.status
        return cls._build(
            fields.partner_id,
            fields.customer_id,
            fields.relationship,
            fields.delegated_admin,
            subscriptions,
            None if status is None else status.status,
            recent,
            fields.evaluated_at,
            len(recent) if seq is None else seq,
        )

    def fields(self) -> AccountFields:
        """The account's own fields as `build` takes them (no pass over its subscriptions)."""
        status = self.status
        return AccountFields(
            self.partner_id,
            self.customer_id,
            self.relationship,
            self.delegated_admin,
            None if status is None else StatusSnapshot(status, tuple(sorted(self.counts.items()))),
            self.evaluated_at,
        )

    @classmethod
    def _build(
        cls,
        partner_id: str,
        customer_id: str,
        relationship: Flag | None,
        delegated_admin: Flag | None,
        subscriptions: Iterable[SubscriptionParts],
        status: CustomerStatus | None,
        recent: Iterable[str],
        evaluated_at: datetime | None,
        seq: int,
    ) -> Account:
        acct = cls(partner_id, customer_id)
        acct.relationship = relationship
        acct.delegated_admin = delegated_admin
        acct.recent = list(recent)
        acct.status = status
        acct.evaluated_at = evaluated_at
        acct.seq = seq
        subs = acct.subscriptions
        sellers = acct.sellers
        for sid, purchase, cancellation, renewal, verdict in subscriptions:
            subs[sid] = Subscription(sid, purchase, cancellation, renewal, verdict)
            if verdict is not None:
                acct.reclassified(None, verdict)
            if purchase is not None and (seller := purchase.seller_partner_id) is not None:
                sellers[seller] = sellers.get(seller, 0) + 1
        return acct


SubscriptionParts = tuple[
    str, SubscriptionPurchased | None, SubscriptionCancelled | None, SubscriptionRenewed | None, Verdict | None
]
"""(subscription_id, purchase, cancellation, renewal, verdict): a `SubscriptionState` is one too."""
UndoCopy = tuple[
    str,
    str,
    Flag | None,
    Flag | None,
    list[SubscriptionParts],
    CustomerStatus | None,
    tuple[str, ...],
    datetime | None,
    int,
]
"""See `Account.undo_copy`."""
