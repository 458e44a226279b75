"""What each page shows, as plain JSON-ready dicts: the HTML pages render them, `/api/...` returns them.

Every function takes the view's lock for the time it reads and copies; `today` and `now_ms` come from
the caller, so that the view never reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Final, Literal

from dashboard.rules import (
    ACTION_LABEL,
    DECISION_LABEL,
    QUEUE_DECISIONS,
    RULE_TEXT,
    STATUSES,
    is_actionable,
    rule_link,
)
from dashboard.view import Account, Entry, View

CALENDAR_WINDOWS: Final = (7, 30, 90)
SORT_KEYS: Final = ("customer", "subscription", "decision", "blocked_until", "decided_at")
Order = Literal["asc", "desc"]


@lru_cache(maxsize=4096)
def iso_day(ordinal: int | None) -> str | None:
    return None if ordinal is None else date.fromordinal(ordinal).isoformat()


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_dict(entry: Entry) -> dict[str, Any]:
    """One decision as the API shows it (the account and subscription are the caller's)."""
    offset, (decision, reason, rule, actions, via), blocked, decided_at, caused_by = entry
    return {
        "decision": decision,
        "decision_label": DECISION_LABEL.get(decision, decision),
        "reason": reason,
        "rule": rule,
        "rule_text": RULE_TEXT.get(rule, ""),
        "rule_link": rule_link(rule),
        "next_actions": [{"code": a, "label": ACTION_LABEL.get(a, a)} for a in actions],
        "blocked_until": iso_day(blocked),
        "relationship_via_partner_ids": list(via),
        "decided_at": iso_time(decided_at),
        "caused_by_event_id": caused_by,
        "offset": offset,
    }


def overview(view: View, now_ms: int, minutes: int = 60) -> dict[str, Any]:
    """Counts by decision and status, decisions per minute over the last hour, dead letters, latest decisions."""
    current_minute = now_ms // 60_000
    with view.lock:
        per_minute = [
            {"minute": iso_time(m * 60_000), "count": view.per_minute.get(m, 0)}
            for m in range(current_minute - minutes + 1, current_minute + 1)
        ]
        recent = [
            {"partner_id": key[0], "customer_id": key[1], "subscription_id": sub, **decision_dict(entry)}
            for key, sub, entry in reversed(view.recent)
        ]
        decisions = {d: view.decision_counts.get(d, 0) for d in DECISION_LABEL}
        decisions.update({d: n for d, n in view.decision_counts.items() if d not in decisions and n})
        statuses = {s: view.status_counts.get(s, 0) for s in STATUSES}
        statuses.update({s: n for s, n in view.status_counts.items() if s not in statuses and n})
        return {
            "accounts": view.account_count,
            "partners": len(view.partners),
            "subscriptions": sum(decisions.values()),
            "decisions_seen": view.decisions_seen,
            "decisions": [{"decision": d, "label": DECISION_LABEL.get(d, d), "count": n} for d, n in decisions.items()],
            "statuses": [{"status": s, "count": n} for s, n in statuses.items()],
            "per_minute": per_minute,
            "dead_letters": [{"reason": r, "count": n} for r, n in sorted(view.dead_letters.items())],
            "malformed": dict(view.malformed),
            "recent": recent,
            "version": view.version,
        }


def partners(view: View) -> dict[str, Any]:
    """Every partner with its accounts and the subscriptions it has to act on."""
    with view.lock:
        counts = [(p, len(accounts), view.actionable_by_partner.get(p, 0)) for p, accounts in view.partners.items()]
    counts.sort(key=lambda r: (-r[2], r[0]))
    return {"partners": [{"partner_id": p, "accounts": a, "to_act_on": n} for p, a, n in counts]}


QueueItem = tuple[str, str, Entry]
"""(customer id, subscription id, current decision)."""


def _queue(view: View, partner: str) -> list[QueueItem]:
    with view.lock:
        return [
            (account.key[1], sub, entry)
            for account, sub, entry in view.subscriptions(partner)
            if is_actionable(entry[1][3])
        ]


def _filtered(
    items: list[QueueItem], decision: str | None, action: str | None, sort: str, order: Order
) -> list[QueueItem]:
    chosen = [
        item
        for item in items
        if (decision is None or item[2][1][0] == decision) and (action is None or action in item[2][1][3])
    ]
    chosen.sort(key=_sort_key(sort), reverse=order == "desc")
    return chosen


def work_queue(
    view: View,
    partner: str,
    *,
    decision: str | None = None,
    action: str | None = None,
    sort: str = "decided_at",
    order: Order = "desc",
    page: int = 1,
    size: int = 50,
) -> dict[str, Any]:
    """A partner's subscriptions to act on (with a next action other than waiting), grouped by decision."""
    items = _queue(view, partner)
    groups = dict.fromkeys(QUEUE_DECISIONS, 0)
    actions: dict[str, int] = {}
    for _, _, entry in items:
        groups[entry[1][0]] = groups.get(entry[1][0], 0) + 1
        for a in entry[1][3]:
            actions[a] = actions.get(a, 0) + 1
    chosen = _filtered(items, decision, action, sort, order)
    size = max(1, min(size, 1000))
    pages = max(1, -(-len(chosen) // size))
    page = max(1, min(page, pages))
    shown = chosen[(page - 1) * size : page * size]
    return {
        "partner_id": partner,
        "total": len(items),
        "matching": len(chosen),
        "groups": [{"decision": d, "label": DECISION_LABEL.get(d, d), "count": n} for d, n in groups.items()],
        "actions": [{"code": a, "label": ACTION_LABEL.get(a, a), "count": n} for a, n in sorted(actions.items())],
        "filter": {"decision": decision, "action": action, "sort": sort, "order": order},
        "page": page,
        "pages": pages,
        "size": size,
        "rows": [{"customer_id": c, "subscription_id": s, **decision_dict(e)} for c, s, e in shown],
    }


CSV_COLUMNS: Final = (
    "customer_id",
    "subscription_id",
    "decision",
    "reason",
    "rule",
    "blocked_until",
    "decided_at",
    "next_actions",
    "relationship_via_partner_ids",
)


def queue_rows(
    view: View, partner: str, decision: str | None, action: str | None, sort: str = "customer", order: Order = "asc"
) -> list[tuple[str | None, ...]]:
    """Every row of a filtered work queue as `CSV_COLUMNS` (lists joined by spaces): the CSV export."""
    chosen = _filtered(_queue(view, partner), decision, action, sort, order)
    return [
        (c, s, d, reason, rule, iso_day(blocked), iso_time(at), " ".join(actions), " ".join(via))
        for c, s, (_, (d, reason, rule, actions, via), blocked, at, _) in chosen
    ]


def _sort_key(sort: str) -> Any:
    if sort == "customer":
        return lambda item: (item[0], item[1])
    if sort == "subscription":
        return lambda item: item[1]
    if sort == "decision":
        return lambda item: (item[2][1][0], item[0], item[1])
    if sort == "blocked_until":
        return lambda item: (item[2][2] or 0, item[0], item[1])
    return lambda item: (item[2][3], item[0], item[1])


def calendar(
    view: View, today: date, *, days: int = 30, partner: str | None = None, page: int = 1, size: int = 100
) -> dict[str, Any]:
    """Blocked subscriptions that become switchable within `days` (or are overdue), by `blocked_until`."""
    first, last = today.toordinal(), today.toordinal() + days
    with view.lock:
        windows = dict.fromkeys(CALENDAR_WINDOWS, 0)
        by_day: dict[int, int] = {}
        chosen: list[tuple[int, str, str, str, Entry]] = []
        horizon = first + max(days, *CALENDAR_WINDOWS)
        for day, refs in view.blocked_by_day.items():
            if day > horizon:
                continue
            selected = refs if partner is None else [r for r in refs if r[0][0] == partner]
            if not selected:
                continue
            for n in CALENDAR_WINDOWS:
                if day <= first + n:
                    windows[n] += len(selected)
            if day <= last:
                by_day[day] = len(selected)
                chosen.extend((day, key[0], key[1], sub, view.current((key, sub))) for key, sub in selected)
    chosen.sort(key=lambda r: r[:4])
    size = max(1, min(size, 1000))
    pages = max(1, -(-len(chosen) // size))
    page = max(1, min(page, pages))
    return {
        "today": today.isoformat(),
        "days": days,
        "partner_id": partner,
        "windows": [{"days": n, "count": windows[n]} for n in CALENDAR_WINDOWS],
        "overdue": sum(n for d, n in by_day.items() if d < first),
        "by_day": [{"day": iso_day(d), "count": n} for d, n in sorted(by_day.items())],
        "total": len(chosen),
        "page": page,
        "pages": pages,
        "rows": [
            {"partner_id": p, "customer_id": c, "subscription_id": s, **decision_dict(e)}
            for _, p, c, s, e in chosen[(page - 1) * size : page * size]
        ],
    }


def customer(view: View, partner: str, customer_id: str) -> dict[str, Any] | None:
    """One account: status, every subscription's current decision and its history (offset order)."""
    with view.lock:
        account = view.account(partner, customer_id)
        if account is None:
            return None
        return _account_dict(account)


def _account_dict(account: Account) -> dict[str, Any]:
    status = account.status
    subscriptions = []
    providers: list[str] = []
    for sub in sorted(account.subs):
        history = account.subs[sub]
        current = decision_dict(history[-1])
        for p in current["relationship_via_partner_ids"]:
            if p not in providers:
                providers.append(p)
        subscriptions.append(
            {"subscription_id": sub, **current, "history": [decision_dict(e) for e in reversed(history)]}
        )
    return {
        "partner_id": account.key[0],
        "customer_id": account.key[1],
        "status": None
        if status is None
        else {
            "status": status[1],
            "decision_counts": dict(status[2]),
            "decided_at": iso_time(status[3]),
            "caused_by_event_id": status[4],
        },
        "providers": providers,
        "next_actions": _union(a["code"] for s in subscriptions for a in s["next_actions"]),
        "subscriptions": subscriptions,
    }


def _union(codes: Iterable[str]) -> list[dict[str, str]]:
    seen = dict.fromkeys(codes)
    return [{"code": a, "label": ACTION_LABEL.get(a, a)} for a in seen]


def search(view: View, query: str, limit: int = 50) -> dict[str, Any]:
    """Partners, accounts and subscriptions whose id contains `query` (subscriptions: the exact id)."""
    q = query.strip()
    folded = q.casefold()
    partners_found: list[str] = []
    accounts: list[dict[str, str]] = []
    subscriptions: list[dict[str, str]] = []
    if q:
        with view.lock:
            for partner, by_customer in view.partners.items():
                if folded in partner.casefold() and len(partners_found) < limit:
                    partners_found.append(partner)
                exact = by_customer.get(q)
                if exact is not None and len(accounts) < limit:
                    accounts.append({"partner_id": partner, "customer_id": q})
            for partner, by_customer in view.partners.items():
                for customer_id in by_customer:
                    if len(accounts) >= limit:
                        break
                    if customer_id != q and folded in customer_id.casefold():
                        accounts.append({"partner_id": partner, "customer_id": customer_id})
            subscriptions = [
                {"partner_id": a.key[0], "customer_id": a.key[1], "subscription_id": q}
                for a in view.by_subscription.get(q, ())
            ][:limit]
    return {"query": q, "partners": sorted(partners_found), "accounts": accounts, "subscriptions": subscriptions}
