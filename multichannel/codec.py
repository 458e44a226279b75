"""The changelog representation of an account: plain dicts (contract-style field names, python
date/datetime values) that `schemas/account_state.avsc` describes. Exact round trip."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multichannel.model import (
    BillingModel,
    Channel,
    CustomerStatus,
    Decision,
    NextAction,
    Reason,
    Rule,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.state import AccountState, Flag, StatusSnapshot, SubscriptionState, Verdict


def _flag_out(flag: Flag | None) -> dict[str, Any] | None:
    return None if flag is None else {"active": flag.active, "occurred_at": flag.occurred_at, "event_id": flag.event_id}


def _flag_in(d: Mapping[str, Any] | None) -> Flag | None:
    return None if d is None else Flag(bool(d["active"]), d["occurred_at"], d["event_id"])


def _verdict_out(v: Verdict | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "decision": v.decision.value,
        "reason": v.reason.value,
        "rule": v.rule.value,
        "next_actions": [a.value for a in v.next_actions],
        "blocked_until": v.blocked_until,
        "relationship_via_partner_ids": list(v.relationship_via_partner_ids),
    }


def _verdict_in(d: Mapping[str, Any] | None) -> Verdict | None:
    if d is None:
        return None
    return Verdict(
        Decision(d["decision"]),
        Reason(d["reason"]),
        Rule(d["rule"]),
        tuple(NextAction(a) for a in d["next_actions"]),
        d["blocked_until"],
        tuple(d["relationship_via_partner_ids"]),
    )


def state_to_record(state: AccountState) -> dict[str, Any]:
    subs: list[dict[str, Any]] = []
    for sid in sorted(state.subscriptions):
        sub = state.subscriptions[sid]
        p, c, r = sub.purchase, sub.cancellation, sub.renewal
        subs.append(
            {
                "subscription_id": sid,
                "purchase": None
                if p is None
                else {
                    "event_id": p.event_id,
                    "occurred_at": p.occurred_at,
                    "offer_id": p.offer_id,
                    "billing_model": p.billing_model.value,
                    "channel": p.channel.value,
                    "seller_partner_id": p.seller_partner_id,
                    "quantity": p.quantity,
                    "term_start": p.term_start,
                    "term_end": p.term_end,
                },
                "cancellation": None if c is None else {"event_id": c.event_id, "occurred_at": c.occurred_at},
                "renewal": None
                if r is None
                else {"event_id": r.event_id, "occurred_at": r.occurred_at, "term_end": r.term_end},
                "decision": _verdict_out(sub.verdict),
            }
        )
    st = state.status
    return {
        "partner_id": state.partner_id,
        "customer_id": state.customer_id,
        "relationship": _flag_out(state.relationship),
        "delegated_admin": _flag_out(state.delegated_admin),
        "subscriptions": subs,
        "status": None if st is None else {"status": st.status.value, "decision_counts": dict(st.decision_counts)},
        "recent_event_ids": list(state.recent_event_ids),
        "evaluated_at": state.evaluated_at,
    }


def state_from_record(d: Mapping[str, Any]) -> AccountState:
    pid, cid = d["partner_id"], d["customer_id"]
    subs: dict[str, SubscriptionState] = {}
    for s in d["subscriptions"]:
        sid = s["subscription_id"]
        p, c, r = s["purchase"], s["cancellation"], s["renewal"]
        subs[sid] = SubscriptionState(
            sid,
            None
            if p is None
            else SubscriptionPurchased(
                p["event_id"],
                p["occurred_at"],
                pid,
                cid,
                sid,
                p["offer_id"],
                BillingModel(p["billing_model"]),
                Channel(p["channel"]),
                p["seller_partner_id"],
                p["quantity"],
                p["term_start"],
                p["term_end"],
            ),
            None if c is None else SubscriptionCancelled(c["event_id"], c["occurred_at"], pid, cid, sid),
            None if r is None else SubscriptionRenewed(r["event_id"], r["occurred_at"], pid, cid, sid, r["term_end"]),
            _verdict_in(s["decision"]),
        )
    st = d["status"]
    status = (
        None
        if st is None
        else StatusSnapshot(
            CustomerStatus(st["status"]),
            tuple(sorted((str(Decision(k)), int(v)) for k, v in st["decision_counts"].items())),
        )
    )
    return AccountState(
        pid,
        cid,
        _flag_in(d["relationship"]),
        _flag_in(d["delegated_admin"]),
        subs,
        status,
        tuple(d["recent_event_ids"]),
        d.get("evaluated_at"),
    )
