"""Output records: a subscription decision and a customer status, as the contract names them.

Plain slotted dataclasses (not frozen: a frozen init costs a setattr call per field, and these
are built once per change and never modified)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from multichannel.model import CustomerStatus, Decision, NextAction, Reason, Rule


@dataclass(slots=True)
class SubscriptionDecision:
    partner_id: str
    customer_id: str
    subscription_id: str
    decision: Decision
    reason: Reason
    rule: Rule
    next_actions: tuple[NextAction, ...]
    blocked_until: date | None
    relationship_via_partner_ids: tuple[str, ...]
    decided_at: datetime
    caused_by_event_id: str | None
    rulebook_version: str

    def to_dict(self) -> dict[str, Any]:
        """Contract field names; python date/datetime values; enums as str."""
        return {
            "partner_id": self.partner_id,
            "customer_id": self.customer_id,
            "subscription_id": self.subscription_id,
            "decision": self.decision.value,
            "reason": self.reason.value,
            "rule": self.rule.value,
            "next_actions": [a.value for a in self.next_actions],
            "blocked_until": self.blocked_until,
            "relationship_via_partner_ids": list(self.relationship_via_partner_ids),
            "decided_at": self.decided_at,
            "caused_by_event_id": self.caused_by_event_id,
            "rulebook_version": self.rulebook_version,
        }


@dataclass(slots=True)
class CustomerStatusRecord:
    partner_id: str
    customer_id: str
    status: CustomerStatus
    decision_counts: dict[str, int]
    decided_at: datetime
    caused_by_event_id: str | None
    rulebook_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "customer_id": self.customer_id,
            "status": self.status.value,
            "decision_counts": dict(self.decision_counts),
            "decided_at": self.decided_at,
            "caused_by_event_id": self.caused_by_event_id,
            "rulebook_version": self.rulebook_version,
        }


OutputRecord = SubscriptionDecision | CustomerStatusRecord
