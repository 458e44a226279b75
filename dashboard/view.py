"""The dashboard's materialized view of the output topics: records in, current state out.

No Kafka and no clock here: `feed` hands decoded records in, `queries` reads. The view is built for
100,000 accounts and 1,000,000 decisions in well under 1 GB, so a record is stored as a small tuple
of shared objects, never as a dict:

- a *verdict* `(decision, reason, rule, next_actions, via)` is interned: the few thousand distinct
  ones are shared by every decision that has them;
- a decision is an `Entry` `(offset, verdict, blocked_until, decided_at_ms, caused_by)`, with the day
  as a `date.toordinal()` int; a subscription's history is a list of entries in offset order, and
  its current decision is the last one;
- ids are interned strings, so each is stored once whatever the number of records naming it.

Counts (by decision, by status, per minute, per partner) and the calendar of blocked subscriptions
are kept up to date as records arrive, so that no page has to scan every subscription.
"""

from __future__ import annotations

import bisect
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from dashboard.rules import is_actionable

Verdict = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]
"""(decision, reason, rule, next_actions, relationship_via_partner_ids)."""

Entry = tuple[int, Verdict, int | None, int, str | None]
"""(offset, verdict, blocked_until as date ordinal or None, decided_at in epoch ms, caused_by_event_id)."""

StatusEntry = tuple[int, str, tuple[tuple[str, int], ...], int, str | None]
"""(offset, status, decision counts, decided_at in epoch ms, caused_by_event_id)."""

AccountKey = tuple[str, str]
SubRef = tuple[AccountKey, str]
"""(account key, subscription id): one subscription."""

_intern = sys.intern
_BLOCKED: Final = "BLOCKED_UNTIL_TERM_END"


class Account:
    """One partner's view of one customer: its status and every subscription's decision history."""

    __slots__ = ("key", "status", "subs")

    def __init__(self, key: AccountKey) -> None:
        self.key = key
        self.status: StatusEntry | None = None
        self.subs: dict[str, list[Entry]] = {}


class View:
    """Current decision per subscription, status per account, and the aggregates the pages show.

    Every method that changes the view, and every reader, holds `lock`: the feed thread writes while
    request threads read.
    """

    def __init__(self, recent: int = 15) -> None:
        self.lock = threading.Lock()
        self.partners: dict[str, dict[str, Account]] = {}
        self.by_subscription: dict[str, list[Account]] = {}
        self.decision_counts: Counter[str] = Counter()
        self.status_counts: Counter[str] = Counter()
        self.actionable_by_partner: Counter[str] = Counter()
        self.blocked_by_day: dict[int, set[SubRef]] = {}
        self.per_minute: Counter[int] = Counter()
        self.dead_letters: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.recent: deque[tuple[AccountKey, str, Entry]] = deque(maxlen=recent)
        self.decisions_seen = 0
        self.version = 0
        self._verdicts: dict[Verdict, Verdict] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {(): ()}

    # --- writing ------------------------------------------------------------------------------------

    def apply_decision(self, offset: int, record: Mapping[str, Any]) -> bool:
        """Add one decoded `subscription_decision`; False (and nothing changes) for a repeated offset.

        Raises KeyError, TypeError or ValueError for a record that lacks a field or has one of the
        wrong type, before anything changes.
        """
        partner, customer = _intern(_str(record["partner_id"])), _intern(_str(record["customer_id"]))
        sub = _str(record["subscription_id"])
        verdict = self._verdict(record)
        entry: Entry = (
            offset,
            verdict,
            _ordinal(record["blocked_until"]),
            _millis(record["decided_at"]),
            _optional_str(record["caused_by_event_id"]),
        )
        account = self._account(partner, customer)
        history = account.subs.get(sub)
        if history is None:
            sub = _intern(sub)
            history = account.subs[sub] = []
            self.by_subscription.setdefault(sub, []).append(account)
        before = history[-1] if history else None
        if before is None or offset > before[0]:
            history.append(entry)
        else:
            at = bisect.bisect_left(history, offset, key=_offset)
            if at < len(history) and history[at][0] == offset:
                return False
            history.insert(at, entry)
        after = history[-1]
        if after is not before:
            self._current_changed(account.key, sub, before, after)
        self.per_minute[entry[3] // 60_000] += 1
        self.decisions_seen += 1
        self.recent.append((account.key, sub, entry))
        self.version += 1
        return True

    def apply_status(self, offset: int, key: str | None, record: Mapping[str, Any] | None) -> bool:
        """Set an account's status; `record` None is a tombstone (key `partner:customer`), which deletes it.

        An older record than the one held (by offset) changes nothing and gives False.
        """
        if record is None:
            account = self._find_status_key(key)
            if account is None or account.status is None or account.status[0] > offset:
                return False
            self._set_status(account, None)
            self._forget_if_empty(account)
            self.version += 1
            return True
        partner, customer = _intern(_str(record["partner_id"])), _intern(_str(record["customer_id"]))
        counts = record["decision_counts"]
        if not isinstance(counts, Mapping):
            raise TypeError("decision_counts must be a map")
        status: StatusEntry = (
            offset,
            _intern(str(record["status"])),
            tuple(sorted((_intern(str(k)), int(v)) for k, v in counts.items())),
            _millis(record["decided_at"]),
            _optional_str(record["caused_by_event_id"]),
        )
        account = self._account(partner, customer)
        if account.status is not None and account.status[0] >= offset:
            return False
        self._set_status(account, status)
        self.version += 1
        return True

    def add_dead_letter(self, reason: str) -> None:
        self.dead_letters[_intern(reason)] += 1
        self.version += 1

    def count_malformed(self, topic: str) -> None:
        """A record of an output topic that could not be read: counted, and otherwise skipped."""
        self.malformed[topic] += 1
        self.version += 1

    def _verdict(self, record: Mapping[str, Any]) -> Verdict:
        verdict: Verdict = (
            _intern(_str(record["decision"])),
            _intern(_str(record["reason"])),
            _intern(_str(record["rule"])),
            self._strings(record["next_actions"]),
            self._strings(record["relationship_via_partner_ids"]),
        )
        return self._verdicts.setdefault(verdict, verdict)

    def _strings(self, values: Sequence[Any]) -> tuple[str, ...]:
        if not isinstance(values, list | tuple):
            raise TypeError("expected a list of strings")
        key = tuple(_intern(_str(v)) for v in values)
        return self._tuples.setdefault(key, key)

    def _account(self, partner: str, customer: str) -> Account:
        accounts = self.partners.get(partner)
        if accounts is None:
            accounts = self.partners[partner] = {}
        account = accounts.get(customer)
        if account is None:
            account = accounts[customer] = Account((partner, customer))
        return account

    def _find_status_key(self, key: str | None) -> Account | None:
        """The account a status key `partner_id:customer_id` names (ids may hold a colon: every split is tried)."""
        if not key:
            return None
        at = key.find(":")
        while at >= 0:
            account = self.partners.get(key[:at], {}).get(key[at + 1 :])
            if account is not None:
                return account
            at = key.find(":", at + 1)
        return None

    def _set_status(self, account: Account, status: StatusEntry | None) -> None:
        if account.status is not None:
            self.status_counts[account.status[1]] -= 1
        account.status = status
        if status is not None:
            self.status_counts[status[1]] += 1

    def _forget_if_empty(self, account: Account) -> None:
        partner, customer = account.key
        if account.status is None and not account.subs:
            accounts = self.partners[partner]
            del accounts[customer]
            if not accounts:
                del self.partners[partner]

    def _current_changed(self, key: AccountKey, sub: str, before: Entry | None, after: Entry) -> None:
        if before is not None:
            self._count_current(key, sub, before, -1)
        self._count_current(key, sub, after, 1)

    def _count_current(self, key: AccountKey, sub: str, entry: Entry, sign: int) -> None:
        verdict = entry[1]
        self.decision_counts[verdict[0]] += sign
        if is_actionable(verdict[3]):
            self.actionable_by_partner[key[0]] += sign
        day = entry[2]
        if verdict[0] == _BLOCKED and day is not None:
            if sign > 0:
                self.blocked_by_day.setdefault(day, set()).add((key, sub))
            else:
                refs = self.blocked_by_day[day]
                refs.discard((key, sub))
                if not refs:
                    del self.blocked_by_day[day]

    # --- reading (callers hold the lock) ------------------------------------------------------------

    def account(self, partner: str, customer: str) -> Account | None:
        return self.partners.get(partner, {}).get(customer)

    def current(self, ref: SubRef) -> Entry:
        (partner, customer), sub = ref
        return self.partners[partner][customer].subs[sub][-1]

    def subscriptions(self, partner: str) -> Iterator[tuple[Account, str, Entry]]:
        """Every subscription of a partner's accounts with its current decision."""
        for account in self.partners.get(partner, {}).values():
            for sub, history in account.subs.items():
                yield account, sub, history[-1]

    @property
    def subscription_count(self) -> int:
        return sum(self.decision_counts.values())

    @property
    def account_count(self) -> int:
        return sum(len(accounts) for accounts in self.partners.values())


def _offset(entry: Entry) -> int:
    return entry[0]


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _ordinal(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.toordinal()
    raise TypeError(f"expected a date, got {type(value).__name__}")


def _millis(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    raise TypeError(f"expected a timestamp, got {type(value).__name__}")
