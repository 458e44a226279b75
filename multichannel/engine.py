"""The single entry point of the core: apply an event (or fire due timers) to the accounts and
return the records to emit.

`Classifier` holds the accounts, the partner table, the term-end timers and the reverse indexes
that route a partner change to exactly the accounts it can affect. It is pure: the clock is a
parameter of every call. Accounts are changed in place (`multichannel.state.Account`); with
`transactional=True` (the Kafka service) the first change of an account in a batch puts a copy
of it in the batch's undo log, so that `rollback` can put it back and `commit` can hand the changed
accounts to the changelog. `classify` never rolls back and keeps no undo log.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from multichannel.model import (
    AccountEvent,
    AccountKey,
    DelegatedAdminGranted,
    Event,
    PartnerProgramChanged,
    RelationshipAccepted,
    RelationshipEnded,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.partners import ABSENT, PartnerTable
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision
from multichannel.rulebooks import SEED, RuleBook
from multichannel.rules import AccountContext, customer_status
from multichannel.state import (
    Account,
    AccountState,
    Flag,
    Subscription,
    SubscriptionParts,
    UndoCopy,
    merge_flag,
    subscription_parts,
)

Bucket = list[AccountKey]
"""The accounts that had a subscription ending at one deadline when it was scheduled (a renewal or
a cancellation may have moved it since: checked when the deadline fires)."""
VIEW_VERSION = ""
"""The key of the rule book's version in a `PartnerView` (no partner id is empty)."""
PartnerView = dict[str, str]
"""What an account's verdicts depend on outside itself (`Classifier.partner_view`): under `VIEW_VERSION`
the rule book's version, and for its partner, its customer and each of its sellers, partner id -> the id
of the partner event in force ("" when the partner is absent from the table). A plain mapping of strings:
the changelog encodes it as it is (a JSON object), a restore compares it entry by entry, and the entries
that differ name the cause of a re-evaluation."""
SavedView = PartnerView | str
"""A partner view as a restored account was saved with: a `PartnerView`, or (values written by an earlier
release) the string `version|eid,eid,...`, its event ids in partner id order without their partners."""
Held = tuple[str, str, Sequence[str], Sequence[datetime], SavedView | None, object]
"""A restored account for `Classifier.hold_all`: partner, customer, sellers, pending deadlines, the
partner view it was saved with (None when none was: it is re-evaluated), and what the host saved it as
(opaque to the engine: its changelog value, say), handed to `Thaw` on the account's first use."""


class AccountChange(NamedTuple):
    """What a transaction changed in one account (`Classifier.changes`)."""

    key: AccountKey
    account: Account
    """The engine's working copy: read it before `commit`, never change it."""
    subscription_ids: tuple[str, ...]
    """The subscriptions (sorted) whose purchase, cancellation, renewal or stored verdict is not what it was
    at the last commit, new ones included."""
    appended: int
    """Event ids appended to the account's dedup window since the last commit."""
    fields_moved: bool = True
    """Its relationship, delegated admin or status is not what it was at the last commit (or it is new)."""


Marks = dict[str, SubscriptionParts | None]
"""A touched account's subscriptions that an event or an evaluation may have changed since the last
commit, each with what it was before (None: it did not exist)."""


Thaw = Callable[[Any], AccountState | Account]
"""Turns a held account's saved payload into its state (the host's changelog decoder), or into a working
copy itself (`Account.build`, for a host that keeps an account's parts apart)."""

_NOT_HELD = object()


Step = list[OutputRecord] | None
"""What one event did: the records to emit (in emission order, possibly none) when it was applied,
None when it was a duplicate."""


class _Firing:
    """A deadline being fired in bounded steps (`Classifier.fire_due` with a limit): its bucket's distinct
    accounts sorted once, and how many of them have been fired. `keys` is never changed in place (a
    transaction's undo log shares it)."""

    __slots__ = ("keys", "pos")

    def __init__(self, keys: list[AccountKey], pos: int = 0) -> None:
        self.keys = keys
        self.pos = pos


def _view_ids(partner_id: str, customer_id: str, sellers: Sequence[str]) -> Collection[str]:
    """The partners a view names: the account's partner, its customer and its sellers, each once."""
    if sellers:
        return {partner_id, customer_id, *sellers}
    return (partner_id,) if partner_id == customer_id else (partner_id, customer_id)


def _add_to(index: dict[str, list[AccountKey]], name: str, key: AccountKey) -> None:
    """Append `key` under `name` in a reverse index (no empty list made when the name is known)."""
    members = index.get(name)
    if members is None:
        index[name] = [key]
    else:
        members.append(key)


def admin_in_force(flag: Flag | None, clock: datetime, admin_expiry: bool) -> bool:
    """The delegated admin in force at `clock`: the latest grant or revocation, which ends at the grant's GDAP
    expiry in a rule book that reads it (`RuleBook.admin_expiry`)."""
    if flag is None:
        return False
    return flag.active_at(clock) if admin_expiry else flag.active


def account_context(acct: Account, partners: PartnerTable, clock: datetime, admin_expiry: bool) -> AccountContext:
    """The account as the rules of a book (`admin_expiry`: whether it reads GDAP expiries) see it at `clock`,
    with the partner table as it is: what `Classifier` keeps on the account between events, and what a
    comparison of two books (`multichannel.preview`) builds once per book."""
    entries = partners.entries
    entry = entries.get(acct.partner_id, ABSENT)
    rel = acct.relationship
    return AccountContext(  # positional: keyword arguments cost measurably here
        acct.partner_id,
        entry.program,
        entry.in_csp,
        entries.get(acct.customer_id, ABSENT).in_csp,
        entry.indirect_provider_ids,
        rel is not None and rel.active,
        admin_in_force(acct.delegated_admin, clock, admin_expiry),
        clock,
        partners,
        entry.azure_expert_msp,
    )


class Classifier:
    """Accounts, partner table, timers and indexes; see the module docstring."""

    def __init__(
        self,
        *,
        dedup_window: int = 256,
        rulebook: RuleBook = SEED,
        rulebook_version: str | None = None,
        transactional: bool = True,
        partners: PartnerTable | None = None,
    ) -> None:
        """`rulebook` decides (`multichannel.rulebooks`); every record carries its version, or
        `rulebook_version` when given (tests of a version change). `transactional=False` (offline `classify`)
        keeps no undo log: nothing is ever rolled back. `partners` shares a table between classifiers (a
        host that keeps accounts elsewhere and builds a classifier per account)."""
        self.partners = PartnerTable(dedup_window) if partners is None else partners
        self._transactional = transactional
        self.rulebook = rulebook
        self.rulebook_version = rulebook.version if rulebook_version is None else rulebook_version
        self._classify = rulebook.classify
        self._windows = rulebook.cancellation_windows
        self._admin_expiry = rulebook.admin_expiry
        self._window = dedup_window
        self._accounts: dict[AccountKey, Account] = {}
        # Restored accounts not touched yet, as their saved payloads: a restore costs no decoding, and an
        # account is built on first use (`_thawed`). Indexed and scheduled like the others.
        self._held: dict[AccountKey, object] = {}
        self._thaw: Thaw | None = None
        # Reverse indexes, append-only lists (appending is cheaper than hashing into a large set). An
        # account is indexed by partner and customer once, when it is opened or restored; by seller
        # once per purchase that names one (an account may stand there more than once).
        self._by_partner: dict[str, list[AccountKey]] = {}
        self._by_customer: dict[str, list[AccountKey]] = {}
        self._by_seller: dict[str, list[AccountKey]] = {}
        self.deadlines: list[datetime] = []
        """A heap of the distinct pending deadlines ([0] is the earliest), a partly fired one included until
        its last account has fired: read it, never change it, outside."""
        self._due_at: dict[datetime, Bucket] = {}  # deadline -> accounts; few distinct days, many accounts
        # Deadlines whose bucket was taken and sorted but not fired to the end (a bounded fire_due stopped in
        # them). Every deadline in the heap has a bucket, a firing, or both (accounts restored meanwhile).
        self._firing: dict[datetime, _Firing] = {}
        self._firing_undo: dict[datetime, tuple[list[AccountKey], int] | None] = {}
        self._undo: dict[AccountKey, UndoCopy | None] = {}  # the account before the batch's first change
        self._dirty: set[AccountKey] = set()  # accounts the batch really changed (for the changelog)
        self._marks: dict[AccountKey, Marks] = {}  # per touched account: subscriptions maybe changed (`changes`)
        self._popped: list[tuple[datetime, Bucket]] = []
        # Held accounts whose partner view moved since they were saved: the view they were saved with, until
        # `reconcile` re-evaluates them (it names as cause the partner event that moved), and those that
        # reconcile took in the open transaction (put back by a rollback).
        self._stale_views: dict[AccountKey, SavedView | None] = {}
        self._reconciled: list[tuple[AccountKey, SavedView | None]] = []
        # Accounts in use are `_accounts`, least recently used first when there is a cap (`keep_in_use`):
        # past it, `evict` holds the oldest as what `_freeze` makes of them, for `_thaw` to build again.
        self._in_use_limit: int | None = None
        self._freeze: Callable[[Account], object] | None = None

    # ------------------------------------------------------------------ events
    def apply(self, event: Event, clock: datetime) -> Step:
        """Apply one valid event at `clock` (the caller fires due timers first, and clocks never go
        backwards): its records, or None for a duplicate."""
        if type(event) is PartnerProgramChanged:
            return self._apply_partner(event, clock)
        return self._apply_account(event, clock)  # type: ignore[arg-type]

    def _apply_account(self, event: AccountEvent, clock: datetime) -> Step:
        """The hot path (most events): find or open the account, drop a duplicate, merge the event;
        a subscription event that changed its subscription classifies that subscription alone, a
        flag that changed re-classifies the account."""
        key = (event.partner_id, event.customer_id)
        acct = self._accounts.get(key)
        eid = event.event_id
        marks: Marks | None = None
        if acct is None and (not self._held or (acct := self._thawed(key)) is None):
            acct = self._accounts[key] = Account(key[0], key[1])
            self._index_account(key)
            if self._transactional:
                self._undo.setdefault(key, None)
                marks = self._marks.setdefault(key, {})
                self._dirty.add(key)
        elif eid in acct.recent:
            return None
        else:
            if self._in_use_limit is not None:  # most recently used last (a dict keeps insertion order)
                del self._accounts[key]
                self._accounts[key] = acct
            if self._transactional:
                marks = self._touch(key, acct)
                self._dirty.add(key)
        recent = acct.recent
        recent.append(eid)
        acct.seq += 1
        if len(recent) > self._window:
            del recent[0]
        acct.evaluated_at = clock  # every verdict is current at `clock`: due timers fired first
        records: list[OutputRecord] = []
        kind = type(event)
        if kind is SubscriptionPurchased or kind is SubscriptionCancelled or kind is SubscriptionRenewed:
            sid = event.subscription_id  # type: ignore[union-attr]
            subs = acct.subscriptions
            sub = subs.get(sid)
            if marks is not None and sid not in marks:
                marks[sid] = None if sub is None else subscription_parts(sub)
            if kind is SubscriptionPurchased:
                if sub is None:
                    sub = subs[sid] = Subscription(sid, event)  # type: ignore[arg-type]
                    changed, was = True, None
                else:
                    p = sub.purchase
                    was = None if p is None else p.seller_partner_id
                    changed = sub.merge_purchase(event)  # type: ignore[arg-type]
                if changed:
                    seller = event.seller_partner_id  # type: ignore[union-attr]
                    if seller != was:
                        acct.sold_by(was, seller)
                    if seller is not None:
                        _add_to(self._by_seller, seller, key)
            else:
                if sub is None:
                    sub = subs[sid] = Subscription(sid)
                merge = sub.merge_cancellation if kind is SubscriptionCancelled else sub.merge_renewal
                changed = merge(event)  # type: ignore[arg-type]
            # else an older purchase or renewal, or a later cancellation: only the dedup window moved
            if changed and sub.purchase is not None:
                deadline = sub.deadline
                if deadline is not None and deadline > clock:
                    self._schedule(deadline, key)
                if self._windows and (window_end := sub.window_end) is not None and window_end > clock:
                    self._schedule(window_end, key)
                self._evaluate_one(acct, sub, clock, eid, records)
            return records
        ctx = acct.context
        if kind is RelationshipAccepted or kind is RelationshipEnded:
            old = acct.relationship
            flag = acct.relationship = merge_flag(old, kind is RelationshipAccepted, event.occurred_at, eid)
            if flag is not old and ctx is not None:
                ctx.relationship = flag is not None and flag.active
        else:
            granted = kind is DelegatedAdminGranted
            expires = event.expires_at if granted else None  # type: ignore[union-attr]
            old = acct.delegated_admin
            flag = acct.delegated_admin = merge_flag(old, granted, event.occurred_at, eid, expires)
            if flag is not old:
                if ctx is not None:
                    ctx.delegated_admin = admin_in_force(flag, clock, self._admin_expiry)
                if self._admin_expiry and flag is not None and flag.active:
                    end = flag.expires_at
                    if end is not None and end > clock:
                        self._schedule(end, key)
        if flag is not old:  # else an older flag event: only the dedup window moved
            self._evaluate(acct, clock, eid, records)
        return records

    def _apply_partner(self, event: PartnerProgramChanged, clock: datetime) -> Step:
        duplicate, changed = self.partners.apply(event)
        if duplicate:
            return None
        records: list[OutputRecord] = []
        if changed:
            for key in sorted(self.affected_by_partner(event.partner_id)):
                acct = self._account(key)
                if acct is not None:
                    if self._transactional:
                        self._touch(key, acct)
                    acct.context = None
                    mark = len(records)
                    self._evaluate(acct, clock, event.event_id, records)
                    if len(records) > mark:
                        acct.evaluated_at = clock
                        self._dirty.add(key)
        return records

    def affected_by_partner(self, partner_id: str) -> set[AccountKey]:
        """Accounts held where the partner is the account partner, a seller, or the customer."""
        affected = set(self._by_partner.get(partner_id, ()))
        affected.update(self._by_seller.get(partner_id, ()))
        affected.update(self._by_customer.get(partner_id, ()))
        return affected

    # ------------------------------------------------------------------ timers
    def _schedule(self, deadline: datetime, key: AccountKey) -> None:
        bucket = self._due_at.get(deadline)
        if bucket is None:
            self._due_at[deadline] = [key]
            if deadline not in self._firing:  # else already in the heap
                heapq.heappush(self.deadlines, deadline)
        else:
            bucket.append(key)

    def next_deadline(self) -> datetime | None:
        """The earliest pending deadline (possibly one whose subscriptions have moved on when it is due)."""
        return self.deadlines[0] if self.deadlines else None

    def timers_due(self, clock: datetime) -> bool:
        """True while a deadline at or before `clock` has accounts left to fire, a partly fired one included
        (some of them may have moved on: `fire_due` then emits nothing for them)."""
        deadlines = self.deadlines
        return bool(deadlines) and deadlines[0] <= clock

    def fire_due(self, clock: datetime, limit: int | None = None) -> list[OutputRecord]:
        """Fire every deadline due at or before `clock`, earliest first: one step per deadline instant,
        accounts in (partner_id, customer_id) order, each evaluated at the deadline (decided_at = deadline).
        An account already evaluated at or past the deadline is not due: it has passed it.

        With a `limit` (at least 1), stop after the account at which the records emitted by this call
        reached it (an account's records are never split); the deadline's remaining accounts fire first on
        the next call, in the same order, so that bounded calls emit exactly what one unbounded call would.
        `timers_due` says whether any are left. A deadline's accounts are sorted once, when it starts to
        fire, not on every call."""
        if limit is not None and limit < 1:
            raise ValueError(f"fire_due limit must be at least 1, not {limit}")
        records: list[OutputRecord] = []
        deadlines, firing, account = self.deadlines, self._firing, self._account
        transactional = self._transactional
        while deadlines and deadlines[0] <= clock:
            deadline = deadlines[0]
            f = firing.get(deadline)
            if transactional and deadline not in self._firing_undo:
                self._firing_undo[deadline] = None if f is None else (f.keys, f.pos)
            bucket = self._due_at.pop(deadline, None)
            if bucket is not None:
                if transactional:
                    self._popped.append((deadline, bucket))
                if f is None:
                    f = firing[deadline] = _Firing(sorted(set(bucket)))
                else:  # accounts restored at a deadline partly fired: they join its remainder, in order
                    f = firing[deadline] = _Firing(sorted({*f.keys[f.pos :], *bucket}))
            if f is None:  # neither a bucket nor a firing: nothing left at this deadline
                heapq.heappop(deadlines)
                continue
            keys, pos, end = f.keys, f.pos, len(f.keys)
            full = False
            while pos < end:
                key = keys[pos]
                pos += 1
                acct = account(key)
                if (
                    acct is None
                    or (acct.evaluated_at is not None and acct.evaluated_at >= deadline)
                    or not self._due(acct, deadline)
                ):
                    continue
                if transactional:
                    self._touch(key, acct)
                    self._dirty.add(key)
                acct.evaluated_at = deadline  # kept even when nothing changed: a restore must not fire it again
                self._evaluate(acct, deadline, None, records)
                if limit is not None and len(records) >= limit:
                    full = True
                    break
            f.pos = pos
            if pos == end:
                del firing[deadline]
                heapq.heappop(deadlines)
            if full:
                break
        return records

    def _due(self, acct: Account, deadline: datetime) -> bool:
        """Whether one of the account's timers that the rule book reads falls at `deadline`: a term end, and in
        `current` a cancellation window's end or the delegated admin's expiry (a renewal, a cancellation or a
        newer grant may have moved the one that was scheduled)."""
        subs = acct.subscriptions.values()
        if any(sub.deadline == deadline for sub in subs):
            return True
        if self._admin_expiry:
            admin = acct.delegated_admin
            if admin is not None and admin.active and admin.expires_at == deadline:
                return True
        return self._windows and any(sub.window_end == deadline for sub in subs)

    def timers_of(self, acct: Account) -> list[datetime]:
        """The account's timer instants that the rule book reads, each once, pending or not: what a host saves
        with it so that a restore schedules them again (those at or before `evaluated_at` have passed)."""
        subs = acct.subscriptions.values()
        at = {d for sub in subs if (d := sub.deadline) is not None}
        if self._windows:
            at.update(w for sub in subs if (w := sub.window_end) is not None)
        admin = acct.delegated_admin
        if self._admin_expiry and admin is not None and admin.active and admin.expires_at is not None:
            at.add(admin.expires_at)
        return sorted(at)

    # ------------------------------------------------------------------ evaluation
    def _context(self, acct: Account, clock: datetime) -> AccountContext:
        """The account as the rules see it at `clock`. Kept on the account between events: a flag event
        sets its flag in it, a partner change of the account's partner or customer clears it (built
        again here), and a restored account starts without one."""
        ctx = acct.context
        if ctx is None:
            ctx = acct.context = account_context(acct, self.partners, clock, self._admin_expiry)
        else:
            ctx.clock = clock
            if self._admin_expiry:  # a GDAP expiry moves with the clock
                ctx.delegated_admin = admin_in_force(acct.delegated_admin, clock, True)
        return ctx

    def _evaluate_one(
        self, acct: Account, sub: Subscription, clock: datetime, cause: str, records: list[OutputRecord]
    ) -> None:
        """Classify the one subscription an event changed. Nothing the others depend on moved, and their
        stored verdicts are current because due timers fire before events: the counts and the
        multichannel tally of the account say the rest of the status."""
        ctx = self._context(acct, clock)
        verdict = self._classify(ctx, sub)
        old = sub.verdict
        if verdict == old:
            return
        sub.verdict = verdict
        moved = acct.reclassified(old, verdict)
        version = self.rulebook_version
        pid = acct.partner_id
        cid = acct.customer_id
        decision, reason, rule, actions, until, via = verdict  # explicit arguments: a *-call takes a slower path
        records.append(
            SubscriptionDecision(
                pid, cid, sub.subscription_id, decision, reason, rule, actions, until, via, clock, cause, version
            )
        )
        status = customer_status(ctx, acct.multichannel > 0)
        if moved or status is not acct.status:
            acct.status = status
            records.append(CustomerStatusRecord(pid, cid, status, acct.counts.copy(), clock, cause, version))

    def _evaluate(self, acct: Account, clock: datetime, cause: str | None, records: list[OutputRecord]) -> None:
        """Classify every purchased subscription; append what changed (decisions in subscription_id
        order, then the status) to `records`."""
        subs = acct.subscriptions
        if not subs:
            return
        ctx = self._context(acct, clock)
        version = self.rulebook_version
        pid, cid = acct.partner_id, acct.customer_id
        marks = self._marks.get((pid, cid)) if self._transactional else None
        left: list[str] = []  # decision codes that changed, before and after: the counts moved unless
        came: list[str] = []  # the two are the same multiset
        classified = False
        for sid in sorted(subs) if len(subs) > 1 else subs:
            sub = subs[sid]
            if sub.purchase is None:
                continue
            classified = True
            verdict = self._classify(ctx, sub)
            old = sub.verdict
            if verdict != old:
                if marks is not None and sid not in marks:
                    marks[sid] = (sid, sub.purchase, sub.cancellation, sub.renewal, old)
                sub.verdict = verdict
                if acct.reclassified(old, verdict):
                    left.append("" if old is None else old[0]._value_)
                    came.append(verdict[0]._value_)
                decision, reason, rule, actions, until, via = verdict
                records.append(
                    SubscriptionDecision(
                        pid, cid, sid, decision, reason, rule, actions, until, via, clock, cause, version
                    )
                )
        if not classified:
            return
        status = customer_status(ctx, acct.multichannel > 0)
        if status is not acct.status or (left and sorted(left) != sorted(came)):
            acct.status = status
            records.append(CustomerStatusRecord(pid, cid, status, acct.counts.copy(), clock, cause, version))

    def reconcile(self, clock: datetime, keys: Iterable[AccountKey] | None = None) -> list[OutputRecord]:
        """Re-evaluate accounts against the current partner table and emit what differs from their
        last emitted records (after a restart, the table may have moved on since the state was saved).
        The cause is the latest partner event (by occurred_at, then event_id) among those in force for
        the partners the account depends on that are not the ones it was saved with (`hold_all` keeps
        the saved view of each account it found stale): None when only the rule book's version moved. An
        account `hold_all` found stale counts as changed even when it emits nothing (`changed_accounts`), so
        that its host saves it with its current view.
        An account with no saved view kept, or saved by an earlier release, counts every partner entry
        as moved."""
        records: list[OutputRecord] = []
        stale_views = self._stale_views
        for key in sorted(self if keys is None else keys):
            acct = self._account(key)
            if acct is None:
                continue
            stale = key in stale_views
            saved = stale_views.pop(key, None) if stale else None
            if self._transactional:
                self._touch(key, acct)
                if stale:
                    self._reconciled.append((key, saved))
            mark = len(records)
            self._evaluate(acct, clock, None, records)
            if len(records) > mark or (stale and self._transactional):
                # a stale account is saved even when nothing changed: with the view it is current against, so
                # that the next restore does not re-evaluate it again (after a switch of rule book, every one)
                acct.evaluated_at = clock
                self._dirty.add(key)
                cause = self._partner_cause(acct, saved)
                if cause is not None:
                    for r in records[mark:]:
                        r.caused_by_event_id = cause
        return records

    def _partner_cause(self, acct: Account, saved: SavedView | None) -> str | None:
        """The latest partner event in force among the account's partners whose event is not the one in
        `saved` (its saved partner view; every one counts when there is none, or it is an earlier release's
        string, which names no partners)."""
        ids = {acct.partner_id, acct.customer_id, *acct.sellers}
        before = saved if type(saved) is dict else None
        entries = self.partners.entries
        latest = None
        for pid in ids:
            entry = entries.get(pid)
            if entry is None or (before is not None and before.get(pid) == entry.event_id):
                continue
            if latest is None or entry.order > latest.order:
                latest = entry
        return None if latest is None else latest.event_id

    # ------------------------------------------------------------------ storage and transactions
    def _touch(self, key: AccountKey, acct: Account) -> Marks:
        """Put the account in the undo log before the batch's first change of it; its marks (`changes`)."""
        if key not in self._undo:
            self._undo[key] = acct.undo_copy()
            marks = self._marks[key] = {}
            return marks
        return self._marks[key]

    def _index_account(self, key: AccountKey) -> None:
        """Index a key not held before (a new or a restored account)."""
        _add_to(self._by_partner, key[0], key)
        _add_to(self._by_customer, key[1], key)

    def _unindex_accounts(self, keys: set[AccountKey]) -> None:
        """Take accounts that are no longer held out of the partner and customer indexes: one pass per
        index list, not one list search per key. (The seller index is checked on use.)"""
        for index, position in ((self._by_partner, 0), (self._by_customer, 1)):
            for name in {key[position] for key in keys}:
                members = index.get(name)
                if members is not None:
                    kept = [key for key in members if key not in keys]
                    if kept:
                        index[name] = kept
                    else:
                        del index[name]

    def get(self, key: AccountKey) -> AccountState | None:
        """A snapshot of the account, or None."""
        acct = self._account(key)
        return None if acct is None else acct.snapshot()

    @property
    def dedup_window(self) -> int:
        """How many of an account's latest event ids it keeps to recognise a repeat."""
        return self._window

    def __len__(self) -> int:
        return len(self._accounts) + len(self._held)

    def __iter__(self) -> Iterator[AccountKey]:
        return iter([*self._accounts, *self._held])

    @property
    def held(self) -> int:
        """Restored accounts still kept as their saved payloads."""
        return len(self._held)

    def _account(self, key: AccountKey) -> Account | None:
        acct = self._accounts.get(key)
        return acct if acct is not None or not self._held else self._thawed(key)

    def keep_in_use(self, limit: int, freeze: Callable[[Account], object], thaw: Thaw) -> None:
        """Keep at most `limit` accounts in use as working copies: `evict` holds the least recently used
        of the others as `freeze` makes them (compact bytes, say), and `thaw` builds one again on its next
        use, as it does a restored account. An account in use costs its Python objects (a few KB); one
        held, its frozen form."""
        if self._held and self._thaw is not None and thaw != self._thaw:
            raise ValueError("accounts are held for another thaw: one thaw decodes every held account")
        self._in_use_limit, self._freeze, self._thaw = limit, freeze, thaw

    def evict(self) -> int:
        """Hold the least recently used accounts past the `keep_in_use` limit as their frozen form; between
        transactions only (after `commit`), so no undo log refers to them. Returns how many it froze."""
        limit, freeze = self._in_use_limit, self._freeze
        accounts = self._accounts
        if limit is None or freeze is None or len(accounts) <= limit:
            return 0
        if self._undo or self._dirty:
            raise RuntimeError("evict runs between transactions: commit or roll back first")
        held = self._held
        n = len(accounts) - limit
        for key in list(itertools.islice(accounts, n)):
            acct = accounts.pop(key)
            acct.context = None
            held[key] = freeze(acct)
        return n

    def _thawed(self, key: AccountKey) -> Account | None:
        """Build a held account from its saved payload, on its first use (None when it is not held)."""
        saved = self._held.pop(key, _NOT_HELD)
        if saved is _NOT_HELD:
            return None
        assert self._thaw is not None
        thawed = self._thaw(saved)
        acct = self._accounts[key] = thawed if isinstance(thawed, Account) else Account.restore(thawed)
        return acct

    def partner_view(self, partner_id: str, customer_id: str, sellers: Iterable[str]) -> PartnerView:
        """What an account's verdicts depend on outside itself (see `PartnerView`). Saved with the account;
        when it is the same at a restore, the account's verdicts are current and it needs no re-evaluation."""
        entries = self.partners.entries
        view = {VIEW_VERSION: self.rulebook_version}
        for i in sorted({partner_id, customer_id, *sellers}):  # sorted: the same JSON for the same view
            entry = entries.get(i)
            view[i] = "" if entry is None else entry.event_id
        return view

    def account_view(self, acct: Account) -> PartnerView:
        """`partner_view` of a held-in-memory account (its sellers as the account counts them: no pass over
        its subscriptions)."""
        return self.partner_view(acct.partner_id, acct.customer_id, acct.sellers)

    def hold(
        self,
        key: AccountKey,
        sellers: Iterable[str],
        deadlines: Iterable[datetime],
        view: SavedView | None,
        saved: object,
        thaw: Thaw,
    ) -> bool:
        """Hold a restored account as its saved payload, built by `thaw` on first use: indexed under its
        partner, customer and `sellers`, with timers for `deadlines` (those it has not passed). True
        when the partner view it was saved with (`partner_view`) is no longer current: the caller
        re-evaluates it with `reconcile`."""
        return bool(self.hold_all([(key[0], key[1], list(sellers), list(deadlines), view, saved)], thaw))

    def hold_all(self, restored: Iterable[Held], thaw: Thaw) -> list[AccountKey]:
        """`hold` for a whole restored partition in one pass (a restore holds tens of thousands of
        accounts: no call per index entry, one heapify for the new deadlines). Returns the keys whose
        partner view moved since they were saved, and keeps their saved views for `reconcile`. A view
        saved by an earlier release (`version|eid,...`) is compared in its own form: an account whose
        partners have not moved since is not re-evaluated because the form changed. Every held account is
        thawed by the same `thaw`: another one while accounts are still held is refused (ValueError)."""
        if self._held and self._thaw is not None and thaw != self._thaw:
            raise ValueError("accounts are held for another thaw: one thaw decodes every held account")
        self._thaw = thaw
        accounts, held, due_at = self._accounts, self._held, self._due_at
        by_partner, by_customer, by_seller = self._by_partner, self._by_customer, self._by_seller
        stale_views = self._stale_views
        entries = self.partners.entries
        version = self.rulebook_version
        legacy_head = version + "|"
        new_deadlines = False
        stale: list[AccountKey] = []
        for partner_id, customer_id, sellers, deadlines, view, saved in restored:
            key = (partner_id, customer_id)
            if accounts.pop(key, None) is None and key not in held:
                _add_to(by_partner, partner_id, key)
                _add_to(by_customer, customer_id, key)
            held[key] = saved
            for seller in sellers:
                members = by_seller.get(seller)
                if members is None:
                    by_seller[seller] = [key]
                else:
                    members.append(key)
            for deadline in deadlines:
                bucket = due_at.get(deadline)
                if bucket is None:
                    due_at[deadline] = [key]
                    new_deadlines = True
                else:
                    bucket.append(key)
            ids = _view_ids(partner_id, customer_id, sellers)
            if type(view) is dict:  # current when it names exactly these partners, each at its event in force
                current = view.get(VIEW_VERSION) == version and len(view) == len(ids) + 1
                if current:
                    for i in ids:
                        entry = entries.get(i)
                        if view.get(i) != ("" if entry is None else entry.event_id):
                            current = False
                            break
            elif type(view) is str and view.startswith(legacy_head):  # an earlier release's view
                ordered = sorted(ids)
                current = view == legacy_head + ",".join([getattr(entries.get(i), "event_id", "") for i in ordered])
            else:  # none this release reads
                current = False
            if not current:
                stale.append(key)
                stale_views[key] = view
            elif stale_views:
                stale_views.pop(key, None)
        if new_deadlines:
            self.deadlines[:] = {*due_at, *self._firing}
            heapq.heapify(self.deadlines)
        return stale

    def load(self, states: Iterable[AccountState], clock: datetime | None = None) -> None:
        """Hold restored accounts (no records) exactly as they were saved: indexes are rebuilt, and timers
        for the deadlines each account has not been evaluated past (`AccountState.evaluated_at`); due ones
        fire on the next `fire_due`. A state saved without `evaluated_at` counts as evaluated at `clock`
        (the restore time; the caller re-evaluates it with `reconcile`), or, without a clock, at none."""
        for state in states:
            key = (state.partner_id, state.customer_id)
            if key not in self._accounts and key not in self._held:
                self._index_account(key)
            self._held.pop(key, None)
            acct = self._accounts[key] = Account.restore(state)
            passed = state.evaluated_at or clock
            for sub in acct.subscriptions.values():
                p = sub.purchase
                if p is not None and p.seller_partner_id is not None:
                    _add_to(self._by_seller, p.seller_partner_id, key)
            for deadline in self.timers_of(acct):
                if passed is None or deadline > passed:
                    self._schedule(deadline, key)

    def drop(self, keys: Iterable[AccountKey]) -> None:
        """Forget accounts (their partition was revoked); the seller index and timers are checked on use."""
        held = self._held
        dropped = {key for key in keys if self._accounts.pop(key, None) is not None or held.pop(key, None) is not None}
        for key in dropped:
            self._undo.pop(key, None)
            self._marks.pop(key, None)
            self._stale_views.pop(key, None)
        self._dirty -= dropped
        self._unindex_accounts(dropped)

    def changed_accounts(self) -> list[tuple[AccountKey, Account]]:
        """Accounts changed since the last commit or rollback (an event applied, a deadline passed, or a
        re-evaluation that emitted records), as the engine's working copies: read them before `commit`,
        never change them. What the service writes to its changelog."""
        accounts = self._accounts
        return [(key, acct) for key in self._dirty if (acct := accounts.get(key)) is not None]

    def changes(self) -> list[AccountChange]:
        """`changed_accounts` in (partner_id, customer_id) order, each with the subscriptions whose state moved
        since the last commit and how many event ids its dedup window took meanwhile (kept per event as it
        is applied: no pass over an account's subscriptions here, only over those marked). Empty without
        `transactional`."""
        accounts, undo, all_marks = self._accounts, self._undo, self._marks
        out: list[AccountChange] = []
        for key in sorted(self._dirty):
            acct = accounts.get(key)
            if acct is None:
                continue
            subs = acct.subscriptions
            moved = [
                sid
                for sid, before in all_marks.get(key, {}).items()
                if (sub := subs.get(sid)) is not None and (before is None or subscription_parts(sub) != before)
            ]
            moved.sort()
            old = undo.get(key)
            if old is None:
                out.append(AccountChange(key, acct, tuple(moved), acct.seq, True))
            else:
                fields_moved = (
                    old[2] is not acct.relationship or old[3] is not acct.delegated_admin or old[5] is not acct.status
                )
                out.append(AccountChange(key, acct, tuple(moved), acct.seq - old[8], fields_moved))
        return out

    def pending_changes(self) -> dict[AccountKey, AccountState]:
        """`changed_accounts` as snapshots."""
        return {key: acct.snapshot() for key, acct in self.changed_accounts()}

    def commit(self) -> None:
        """Make the changes since the last commit permanent (read them first with `changed_accounts`)."""
        self._undo.clear()
        self._marks.clear()
        self._dirty.clear()
        self._popped.clear()
        self._firing_undo.clear()
        self._reconciled.clear()
        self.partners.commit()

    def revert(self, keys: Iterable[AccountKey]) -> None:
        """Undo the changes since the last commit of these accounts only, as `rollback` would (a host that
        cannot save an account's new state keeps its old one); the other accounts keep theirs. A deadline
        that fired for one of them is not put back: the account fires it again when it is restored."""
        wanted = set(keys)
        opened: set[AccountKey] = set()
        for key in wanted:
            if key not in self._undo:
                continue
            old = self._undo.pop(key)
            if old is None:
                if self._accounts.pop(key, None) is not None:
                    opened.add(key)
            else:
                self._accounts[key] = Account.from_undo_copy(old)
            self._marks.pop(key, None)
            self._dirty.discard(key)
        self._unindex_accounts(opened)
        kept = []
        for key, view in self._reconciled:
            if key in wanted:
                self._stale_views[key] = view
            else:
                kept.append((key, view))
        self._reconciled[:] = kept

    def rollback(self) -> None:
        """Undo every change since the last commit: accounts, partner table, fired timers (a deadline
        partly fired at the commit is partly fired again, at the same account)."""
        opened: set[AccountKey] = set()
        for key, old in self._undo.items():
            if old is None:
                if self._accounts.pop(key, None) is not None:
                    opened.add(key)
            else:
                self._accounts[key] = Account.from_undo_copy(old)
        self._unindex_accounts(opened)
        self._undo.clear()
        self._marks.clear()
        self._dirty.clear()
        for key, view in self._reconciled:
            self._stale_views[key] = view
        self._reconciled.clear()
        if self._popped or self._firing_undo:
            firing = self._firing
            for deadline, saved in self._firing_undo.items():
                if saved is None:
                    firing.pop(deadline, None)
                else:
                    firing[deadline] = _Firing(*saved)
            for deadline, bucket in self._popped:
                pending = self._due_at.get(deadline)
                if pending is None:
                    self._due_at[deadline] = bucket
                else:
                    pending.extend(bucket)
            self.deadlines[:] = {*self._due_at, *firing}
            heapq.heapify(self.deadlines)
            self._popped.clear()
            self._firing_undo.clear()
        self.partners.rollback()
