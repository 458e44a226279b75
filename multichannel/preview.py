"""What would change if a deployment switched rule books: both books over the same accounts, at one clock.

A subscription's verdict is a function of its account's state, the partner table and the clock (timers only
decide *when* a verdict is emitted, never what it is), so the comparison needs no replay: each account is
classified once under each book at the preview's clock, and every subscription whose verdicts differ is a
`Change`. That is also what a restart with the other book commits (`Classifier.reconcile` after a restore
emits the subscriptions whose verdict under the new book differs from the one stored), provided the stored
verdicts are current under the old book at that clock; `AccountComparison.stale` counts those that are not
(a timer due and not yet fired, an account saved by another book).

Pure: no I/O, no clock reads. The readers of a deployment's changelog or of an export of its events live in
`consumers.preview_source`; `PreviewSummary` holds the figures the command prints and the dashboard shows,
and `change_record`/`change_from_record` the one form of a change that both write and read.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

from multichannel.engine import account_context
from multichannel.model import AccountKey, CustomerStatus, Decision, NextAction, Reason, Rule
from multichannel.partners import PartnerTable
from multichannel.rulebooks import RuleBook
from multichannel.rules import customer_status
from multichannel.state import MULTICHANNEL_RULES, Account, Verdict

VERDICT_FIELDS = ("decision", "reason", "rule", "next_actions", "blocked_until", "relationship_via_partner_ids")
"""A verdict's fields as a decision record names them: what a change compares and writes, per side."""
SAMPLE_LIMIT = 20
"""Subscriptions whose next actions appear or disappear that a summary keeps by name (the first by id)."""


class Change(NamedTuple):
    """One subscription whose verdict differs between the two books."""

    partner_id: str
    customer_id: str
    subscription_id: str
    before: Verdict
    """Under the book the deployment runs (`--from`)."""
    after: Verdict
    """Under the book it would switch to (`--to`)."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.partner_id, self.customer_id, self.subscription_id)

    @property
    def actions_gained(self) -> tuple[NextAction, ...]:
        """Next actions of `after` that `before` does not list, in `after`'s order."""
        was = self.before.next_actions
        return tuple(a for a in self.after.next_actions if a not in was)

    @property
    def actions_lost(self) -> tuple[NextAction, ...]:
        """Next actions of `before` that `after` no longer lists, in `before`'s order."""
        now = self.after.next_actions
        return tuple(a for a in self.before.next_actions if a not in now)


class AccountComparison(NamedTuple):
    """One account under both books at the clock."""

    key: AccountKey
    changes: list[Change]
    """Its subscriptions whose verdicts differ, in subscription id order."""
    subscriptions: int
    """Its purchased subscriptions (those the books classify)."""
    status_before: CustomerStatus
    status_after: CustomerStatus
    stale: int
    """Subscriptions whose stored verdict is not what the `before` book says at the clock."""


def _change_key(change: Change) -> tuple[str, str, str]:
    return change.key


def _multichannel(verdicts: Iterable[Verdict]) -> bool:
    return any(v[2]._value_ in MULTICHANNEL_RULES for v in verdicts)


def compare_account(
    acct: Account, partners: PartnerTable, before: RuleBook, after: RuleBook, clock: datetime
) -> AccountComparison | None:
    """Classify every purchased subscription of `acct` under both books at `clock` (the account is only read);
    None for an account with no purchased subscription, which neither book decides on."""
    ctx_before = account_context(acct, partners, clock, before.admin_expiry)
    ctx_after = account_context(acct, partners, clock, after.admin_expiry)
    classify_before, classify_after = before.classify, after.classify
    subs = acct.subscriptions
    pid, cid = acct.partner_id, acct.customer_id
    changes: list[Change] = []
    verdicts_before: list[Verdict] = []
    verdicts_after: list[Verdict] = []
    stale = 0
    for sid in sorted(subs) if len(subs) > 1 else subs:
        sub = subs[sid]
        if sub.purchase is None:
            continue
        was, now = classify_before(ctx_before, sub), classify_after(ctx_after, sub)
        verdicts_before.append(was)
        verdicts_after.append(now)
        if was != now:
            changes.append(Change(pid, cid, sid, was, now))
        if sub.verdict != was:
            stale += 1
    if not verdicts_before:
        return None
    return AccountComparison(
        (pid, cid),
        changes,
        len(verdicts_before),
        customer_status(ctx_before, _multichannel(verdicts_before)),
        customer_status(ctx_after, _multichannel(verdicts_after)),
        stale,
    )


def _outcome(v: Verdict) -> str:
    """`DECISION/REASON`: one side of a row of the from → to table."""
    return f"{v[0]._value_}/{v[1]._value_}"


@dataclass
class PreviewSummary:
    """The figures of a preview, added up account by account (or change by change, from a written list), and
    mergeable (`merge`), so that parts of the accounts can be compared apart."""

    before: str
    """The `--from` book's name and version: `seed 2026-11.1`."""
    after: str
    clock: datetime
    accounts: int = 0
    """Accounts with at least one purchased subscription."""
    subscriptions: int = 0
    changed: int = 0
    accounts_changed: int = 0
    stale: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(`DECISION/REASON` before, after) -> changed subscriptions."""
    partners: Counter[str] = field(default_factory=Counter)
    """Account partner -> its changed subscriptions."""
    actions_gained: Counter[str] = field(default_factory=Counter)
    """Next action -> changed subscriptions on which it appears."""
    actions_lost: Counter[str] = field(default_factory=Counter)
    actions_moved: int = 0
    """Changed subscriptions on which a next action appears or disappears."""
    samples: list[Change] = field(default_factory=list)
    """The first `SAMPLE_LIMIT` of those, by (partner, customer, subscription)."""
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(status before, after) -> accounts whose customer status changes."""
    saved_by: Counter[str] = field(default_factory=Counter)
    """Accounts per rule book version their state was saved with ("" for none): the book a live deployment
    runs, which should be the `before` book (empty for a preview of an export)."""

    @classmethod
    def from_figures(cls, figures: Mapping[str, Any]) -> PreviewSummary:
        """A written summary (`figures`, its `as_of` as ISO 8601 text or a datetime) read back, with the tallies
        of the changes left at zero: the reader adds each written change (`add_change`), and `changed` then says
        whether it read them all (`figures["changed"]`)."""
        as_of = figures["as_of"]
        clock = as_of if isinstance(as_of, datetime) else datetime.fromisoformat(as_of)
        summary = cls(str(figures["from"]), str(figures["to"]), clock)
        summary.accounts = int(figures["accounts"])
        summary.subscriptions = int(figures["subscriptions"])
        summary.accounts_changed = int(figures["accounts_changed"])
        summary.stale = int(figures["stale"])
        summary.statuses.update({(str(b), str(a)): int(n) for b, a, n in figures["statuses"]})
        summary.saved_by.update({str(v): int(n) for v, n in figures["saved_by"].items()})
        return summary

    def add(self, comparison: AccountComparison) -> None:
        """One account's comparison."""
        self.accounts += 1
        self.subscriptions += comparison.subscriptions
        self.stale += comparison.stale
        if comparison.status_before is not comparison.status_after:
            self.statuses[comparison.status_before._value_, comparison.status_after._value_] += 1
        if comparison.changes:
            self.accounts_changed += 1
            for change in comparison.changes:
                self.add_change(change)

    def add_change(self, change: Change) -> None:
        """One changed subscription (what `add` does per change; a reader of a written list calls it alone)."""
        self.changed += 1
        self.transitions[_outcome(change.before), _outcome(change.after)] += 1
        self.partners[change.partner_id] += 1
        gained, lost = change.actions_gained, change.actions_lost
        if gained or lost:
            self.actions_moved += 1
            self.actions_gained.update(a._value_ for a in gained)
            self.actions_lost.update(a._value_ for a in lost)
            self._sample(change)

    def _sample(self, change: Change) -> None:
        """Keep `change` if it is among the first `SAMPLE_LIMIT` by key seen so far (kept in key order)."""
        samples = self.samples
        if len(samples) >= SAMPLE_LIMIT and change.key >= samples[-1].key:
            return
        bisect.insort(samples, change, key=_change_key)
        del samples[SAMPLE_LIMIT:]

    def merge(self, other: PreviewSummary) -> None:
        """Add another part's figures (the same books and clock)."""
        if (other.before, other.after, other.clock) != (self.before, self.after, self.clock):
            raise ValueError("only previews of the same books at the same clock add up")
        self.accounts += other.accounts
        self.subscriptions += other.subscriptions
        self.changed += other.changed
        self.accounts_changed += other.accounts_changed
        self.stale += other.stale
        self.actions_moved += other.actions_moved
        self.transitions.update(other.transitions)
        self.partners.update(other.partners)
        self.actions_gained.update(other.actions_gained)
        self.actions_lost.update(other.actions_lost)
        self.statuses.update(other.statuses)
        self.saved_by.update(other.saved_by)
        for change in other.samples:
            self._sample(change)

    def top_partners(self, n: int = 10) -> list[tuple[str, int]]:
        """The partners with the most changed subscriptions (ties by id)."""
        return sorted(self.partners.items(), key=lambda item: (-item[1], item[0]))[:n]

    def rows(self) -> list[tuple[str, str, int]]:
        """The from → to table: (before, after, changed subscriptions), most first (ties by name)."""
        return sorted(((b, a, n) for (b, a), n in self.transitions.items()), key=lambda r: (-r[2], r[0], r[1]))

    def figures(self) -> dict[str, Any]:
        """The summary as plain data (the JSON-lines output's last line; what the dashboard reads back)."""
        return {
            "record_type": "preview_summary",
            "from": self.before,
            "to": self.after,
            "as_of": self.clock,
            "accounts": self.accounts,
            "subscriptions": self.subscriptions,
            "changed": self.changed,
            "accounts_changed": self.accounts_changed,
            "stale": self.stale,
            "statuses": [[b, a, n] for (b, a), n in sorted(self.statuses.items())],
            "saved_by": dict(sorted(self.saved_by.items())),
        }


def book_label(book: RuleBook) -> str:
    """How a preview names a book: `seed 2026-11.1`."""
    return f"{book.name} {book.version}"


def _verdict_record(v: Verdict) -> dict[str, Any]:
    decision, reason, rule, actions, until, via = v
    return {
        "decision": decision._value_,
        "reason": reason._value_,
        "rule": rule._value_,
        "next_actions": [a._value_ for a in actions],
        "blocked_until": None if until is None else until.isoformat(),
        "relationship_via_partner_ids": list(via),
    }


def change_record(change: Change) -> dict[str, Any]:
    """A change as the preview writes it (a JSON-lines row; the CSV flattens `from` and `to`)."""
    return {
        "record_type": "preview_change",
        "partner_id": change.partner_id,
        "customer_id": change.customer_id,
        "subscription_id": change.subscription_id,
        "from": _verdict_record(change.before),
        "to": _verdict_record(change.after),
    }


def _verdict_from(record: Mapping[str, Any]) -> Verdict:
    until = record["blocked_until"]
    return Verdict(
        Decision(record["decision"]),
        Reason(record["reason"]),
        Rule(record["rule"]),
        tuple(NextAction(a) for a in record["next_actions"]),
        None if until is None else date.fromisoformat(until),
        tuple(record["relationship_via_partner_ids"]),
    )


def change_from_record(record: Mapping[str, Any]) -> Change:
    """`change_record` read back (ValueError or KeyError for a row that is not one)."""
    return Change(
        record["partner_id"],
        record["customer_id"],
        record["subscription_id"],
        _verdict_from(record["from"]),
        _verdict_from(record["to"]),
    )
