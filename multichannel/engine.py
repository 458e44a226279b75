"""The single entry point of the core: apply an event (or fire due timers) to the accounts and
return the records to emit.

`Classifier` holds the accounts, the partner table, the term-end timers and the reverse indexes
that route a partner change to exactly the accounts it can affect. It is pure: the clock is a
parameter of every call. The Kafka service adds an undo log on top (`commit`/`rollback`), so a
batch whose transaction aborts leaves no trace; `classify` never rolls back.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from multichannel.model import (
    RULEBOOK_VERSION,
    AccountEvent,
    AccountKey,
    DelegatedAdminGranted,
    Event,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    RelationshipEnded,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.partners import PartnerTable
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision
from multichannel.rules import AccountContext, classify_subscription, customer_status
from multichannel.state import (
    AccountState,
    StatusSnapshot,
    SubscriptionState,
    Verdict,
    merge_cancellation,
    merge_flag,
    merge_purchase,
    merge_renewal,
)

Timer = tuple[datetime, str, str, str]
"""(deadline, partner_id, customer_id, subscription_id): the rule book's firing order."""


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"


@dataclass(slots=True)
class Step:
    """What one event did: applied or duplicate, and the records to emit (in emission order)."""

    outcome: Outcome
    records: list[OutputRecord] = field(default_factory=list)


class Classifier:
    """Accounts, partner table, timers and indexes; see the module docstring."""

    def __init__(
        self,
        *,
        dedup_window: int = 256,
        rulebook_version: str = RULEBOOK_VERSION,
        transactional: bool = True,
        partners: PartnerTable | None = None,
    ) -> None:
        """`transactional=False` (offline `classify`) keeps no undo log: nothing is ever rolled back.
        `partners` shares a table between classifiers (a host that keeps accounts elsewhere and builds
        a classifier per account)."""
        self.partners = PartnerTable(dedup_window) if partners is None else partners
        self._transactional = transactional
        self.rulebook_version = rulebook_version
        self._window = dedup_window
        self._accounts: dict[AccountKey, AccountState] = {}
        self._by_partner: dict[str, set[AccountKey]] = {}
        self._by_seller: dict[str, set[AccountKey]] = {}
        self._by_customer: dict[str, set[AccountKey]] = {}
        self._timers: list[Timer] = []
        self._undo: dict[AccountKey, AccountState | None] = {}
        self._popped: list[Timer] = []

    # ------------------------------------------------------------------ events
    def apply(self, event: Event, clock: datetime) -> Step:
        """Apply one valid event at `clock` (the caller fires due timers first)."""
        if isinstance(event, PartnerProgramChanged):
            return self._apply_partner(event, clock)
        return self._apply_account(event, clock)

    def _apply_account(self, event: AccountEvent, clock: datetime) -> Step:
        key = (event.partner_id, event.customer_id)
        state = self._accounts.get(key)
        if state is None:
            rel = admin = status = None
            subs: dict[str, SubscriptionState] = {}
            recent: tuple[str, ...] = ()
            self._index_account(key)
        else:
            if event.event_id in state.recent_event_ids:
                return Step(Outcome.DUPLICATE)
            _pid, _cid, rel, admin, subs, status, recent = state
        recent = recent + (event.event_id,)
        if len(recent) > self._window:
            recent = recent[-self._window :]
        only: str | None = None
        changed = True
        kind = type(event)
        merge = _SUBSCRIPTION_MERGES.get(kind)
        if merge is not None:
            sub_event = cast(SubscriptionEvent, event)
            sid = sub_event.subscription_id
            old = subs.get(sid)
            new = merge(old or SubscriptionState(sid), sub_event)
            changed = new is not old
            if changed:
                subs = dict(subs)
                subs[sid] = new
                if kind is SubscriptionPurchased:
                    seller = cast(SubscriptionPurchased, event).seller_partner_id
                    if seller is not None:
                        self._by_seller.setdefault(seller, set()).add(key)
                if kind is not SubscriptionCancelled:
                    self._schedule(new, key, clock)
                only = sid
        elif kind is RelationshipAccepted or kind is RelationshipEnded:
            flag = merge_flag(rel, kind is RelationshipAccepted, event.occurred_at, event.event_id)
            changed, rel = flag is not rel, flag
        else:
            flag = merge_flag(admin, kind is DelegatedAdminGranted, event.occurred_at, event.event_id)
            changed, admin = flag is not admin, flag
        state = AccountState(key[0], key[1], rel, admin, subs, status, recent)
        records: list[OutputRecord] = []
        if changed:  # else an older purchase, renewal or flag, or a later cancellation: only the window moved
            state = self._evaluate(state, clock, event.event_id, records, only)
        self._put(key, state)
        return Step(Outcome.APPLIED, records)

    def _apply_partner(self, event: PartnerProgramChanged, clock: datetime) -> Step:
        duplicate, changed = self.partners.apply(event)
        if duplicate:
            return Step(Outcome.DUPLICATE)
        records: list[OutputRecord] = []
        if changed:
            for key in sorted(self.affected_by_partner(event.partner_id)):
                state = self._accounts.get(key)
                if state is not None:
                    self._put(key, self._evaluate(state, clock, event.event_id, records))
        return Step(Outcome.APPLIED, records)

    def affected_by_partner(self, partner_id: str) -> set[AccountKey]:
        """Accounts held where the partner is the account partner, a seller, or the customer."""
        return (
            self._by_partner.get(partner_id, set())
            | self._by_seller.get(partner_id, set())
            | self._by_customer.get(partner_id, set())
        )

    # ------------------------------------------------------------------ timers
    def _schedule(self, sub: SubscriptionState, key: AccountKey, clock: datetime) -> None:
        deadline = sub.deadline
        if deadline is not None and deadline > clock:
            heapq.heappush(self._timers, (deadline, key[0], key[1], sub.subscription_id))

    def next_deadline(self) -> datetime | None:
        """The earliest pending deadline (possibly of a timer that turns out stale when due)."""
        return self._timers[0][0] if self._timers else None

    def fire_due(self, clock: datetime) -> list[OutputRecord]:
        """Fire every timer due at or before `clock`: one step per deadline instant, accounts in
        (partner_id, customer_id) order, each evaluated at the deadline (decided_at = deadline)."""
        records: list[OutputRecord] = []
        timers = self._timers
        while timers and timers[0][0] <= clock:
            deadline = timers[0][0]
            due: set[AccountKey] = set()
            while timers and timers[0][0] == deadline:
                timer = heapq.heappop(timers)
                if self._transactional:
                    self._popped.append(timer)
                _, pid, cid, sid = timer
                state = self._accounts.get((pid, cid))
                sub = state.subscriptions.get(sid) if state is not None else None
                if sub is not None and sub.deadline == deadline:
                    due.add((pid, cid))
            for key in sorted(due):
                self._put(key, self._evaluate(self._accounts[key], deadline, None, records))
        return records

    # ------------------------------------------------------------------ evaluation
    def _context(self, state: AccountState, clock: datetime) -> AccountContext:
        partners = self.partners
        entry = partners.entry(state.partner_id)
        customer = partners.entry(state.customer_id)
        rel, admin = state.relationship, state.delegated_admin
        providers: tuple[str, ...]
        if entry is None:
            program, partner_in_csp, providers = Program.NONE, False, ()
        else:
            program, partner_in_csp, providers = entry.program, entry.in_csp, entry.indirect_provider_ids
        return AccountContext(  # positional: keyword arguments cost measurably here
            state.partner_id,
            program,
            partner_in_csp,
            customer is not None and customer.in_csp,
            providers,
            rel is not None and rel.active,
            admin is not None and admin.active,
            clock,
            partners,
        )

    def _evaluate(
        self,
        state: AccountState,
        clock: datetime,
        cause: str | None,
        records: list[OutputRecord],
        only: str | None = None,
    ) -> AccountState:
        """Classify every purchased subscription (or `only` that one: a subscription event changes
        nothing the others depend on, and their stored verdicts are current because due timers fire
        before events); append what changed (decisions in subscription_id order, then the status) to
        `records`; return the state with the new last-emitted values."""
        pid, cid, rel, admin, subs, status, recent = state
        if not subs:
            return state
        ctx = self._context(state, clock)
        verdicts: list[Verdict] = []
        counts: dict[str, int] = {}
        new_subs: dict[str, SubscriptionState] | None = None
        version = self.rulebook_version
        for sid in sorted(subs) if len(subs) > 1 else subs:
            sub = subs[sid]
            if sub.purchase is None:
                continue
            if only is None or sid == only or sub.verdict is None:
                verdict = classify_subscription(ctx, sub)
            else:
                verdict = sub.verdict
            verdicts.append(verdict)
            decision = verdict[0]._value_  # a plain str: cheap to hash
            counts[decision] = counts.get(decision, 0) + 1
            if verdict != sub.verdict:
                if new_subs is None:
                    new_subs = dict(subs)
                new_subs[sid] = SubscriptionState(sid, sub.purchase, sub.cancellation, sub.renewal, verdict)
                records.append(
                    SubscriptionDecision(
                        pid,
                        cid,
                        sid,
                        verdict[0],
                        verdict[1],
                        verdict[2],
                        verdict[3],
                        verdict[4],
                        verdict[5],
                        clock,
                        cause,
                        version,
                    )
                )
        if not verdicts:
            return state
        snapshot = StatusSnapshot(customer_status(ctx, verdicts), tuple(sorted(counts.items())))
        if snapshot != status:
            records.append(
                CustomerStatusRecord(pid, cid, snapshot.status, dict(snapshot.decision_counts), clock, cause, version)
            )
        elif new_subs is None:
            return state
        return AccountState(pid, cid, rel, admin, subs if new_subs is None else new_subs, snapshot, recent)

    def reconcile(self, clock: datetime, keys: Iterable[AccountKey] | None = None) -> list[OutputRecord]:
        """Re-evaluate accounts against the current partner table and emit what differs from their
        last emitted records (after a restart, the table may have moved on since the state was saved).
        The cause is the latest partner event among the partners the account depends on."""
        records: list[OutputRecord] = []
        for key in sorted(self._accounts if keys is None else keys):
            state = self._accounts.get(key)
            if state is None:
                continue
            mark = len(records)
            new = self._evaluate(state, clock, None, records)
            if len(records) > mark:
                cause = self._partner_cause(state)
                if cause is not None:
                    records[mark:] = [_with_cause(r, cause) for r in records[mark:]]
                self._put(key, new)
        return records

    def _partner_cause(self, state: AccountState) -> str | None:
        ids = {state.partner_id, state.customer_id}
        for sub in state.subscriptions.values():
            if sub.purchase is not None and sub.purchase.seller_partner_id is not None:
                ids.add(sub.purchase.seller_partner_id)
        entries = [e for e in (self.partners.entry(i) for i in ids) if e is not None]
        return max(entries, key=lambda e: e.order).event_id if entries else None

    # ------------------------------------------------------------------ storage and transactions
    def _put(self, key: AccountKey, state: AccountState) -> None:
        if self._transactional:
            undo = self._undo
            if key not in undo:
                undo[key] = self._accounts.get(key)
        self._accounts[key] = state

    def _index_account(self, key: AccountKey) -> None:
        self._by_partner.setdefault(key[0], set()).add(key)
        self._by_customer.setdefault(key[1], set()).add(key)

    def get(self, key: AccountKey) -> AccountState | None:
        return self._accounts.get(key)

    def keys(self) -> list[AccountKey]:
        return list(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)

    def __iter__(self) -> Iterator[AccountKey]:
        return iter(list(self._accounts))

    def load(self, states: Iterable[AccountState]) -> None:
        """Hold restored accounts (no records): indexes and timers are rebuilt; due ones fire on the next
        `fire_due`."""
        for state in states:
            key = (state.partner_id, state.customer_id)
            self._accounts[key] = state
            self._index_account(key)
            for sub in state.subscriptions.values():
                p = sub.purchase
                if p is not None and p.seller_partner_id is not None:
                    self._by_seller.setdefault(p.seller_partner_id, set()).add(key)
                deadline = sub.deadline
                if deadline is not None:
                    heapq.heappush(self._timers, (deadline, key[0], key[1], sub.subscription_id))

    def drop(self, keys: Iterable[AccountKey]) -> None:
        """Forget accounts (their partition was revoked); indexes and timers are checked on use."""
        for key in keys:
            self._accounts.pop(key, None)
            self._undo.pop(key, None)
            for index, name in ((self._by_partner, key[0]), (self._by_customer, key[1])):
                members = index.get(name)
                if members is not None:
                    members.discard(key)
                    if not members:
                        del index[name]

    def pending_changes(self) -> dict[AccountKey, AccountState]:
        """Accounts changed since the last commit or rollback, with their current state."""
        accounts = self._accounts
        return {key: accounts[key] for key, old in self._undo.items() if key in accounts and accounts[key] is not old}

    def commit(self) -> dict[AccountKey, AccountState]:
        """Make the changes since the last commit permanent; returns them."""
        changes = self.pending_changes()
        self._undo.clear()
        self._popped.clear()
        self.partners.commit()
        return changes

    def rollback(self) -> None:
        """Undo every change since the last commit: accounts, partner table, fired timers."""
        for key, old in self._undo.items():
            if old is None:
                self._accounts.pop(key, None)
            else:
                self._accounts[key] = old
        self._undo.clear()
        for timer in self._popped:
            heapq.heappush(self._timers, timer)
        self._popped.clear()
        self.partners.rollback()


def _with_cause(record: OutputRecord, cause: str) -> OutputRecord:
    if isinstance(record, SubscriptionDecision):
        return SubscriptionDecision(
            record.partner_id,
            record.customer_id,
            record.subscription_id,
            record.decision,
            record.reason,
            record.rule,
            record.next_actions,
            record.blocked_until,
            record.relationship_via_partner_ids,
            record.decided_at,
            cause,
            record.rulebook_version,
        )
    return CustomerStatusRecord(
        record.partner_id,
        record.customer_id,
        record.status,
        record.decision_counts,
        record.decided_at,
        cause,
        record.rulebook_version,
    )


SubscriptionEvent = SubscriptionPurchased | SubscriptionCancelled | SubscriptionRenewed

_SUBSCRIPTION_MERGES: dict[type[AccountEvent], Callable[[SubscriptionState, Any], SubscriptionState]] = {
    SubscriptionPurchased: merge_purchase,
    SubscriptionCancelled: merge_cancellation,
    SubscriptionRenewed: merge_renewal,
}
"""Order-independent folds of one subscription event into its state (see multichannel.state),
keyed by the event's exact type: one dict lookup instead of an isinstance chain."""
