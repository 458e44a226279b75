"""Decoded output records, as the dashboard's feed hands them to the view."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from multichannel.model import RULEBOOK_VERSION

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
TODAY = date(2026, 3, 1)

VERDICTS: dict[str, tuple[str, str, str, list[str]]] = {
    "eligible": (
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
        "R9",
        ["SEND_RELATIONSHIP_REQUEST"],
    ),
    "reseller": (
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
        "R9",
        [
            "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER",
            "SEND_PROVIDER_INVITATION_TO_CUSTOMER",
            "REQUEST_DELEGATED_ADMIN_FOR_RESELLER",
        ],
    ),
    "switch": ("CSP_SWITCH_PERMITTED", "AZURE_FROM_OTHER_CSP_PARTNER", "R6", ["REQUEST_AZURE_PARTNER_SWITCH"]),
    "migration": (
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        "R8",
        [
            "CREATE_CSP_AZURE_SUBSCRIPTION",
            "PORT_DATA_AND_SETTINGS",
            "CUSTOMER_CANCELS_OLD_SUBSCRIPTION",
            "CHECK_SERVICE_AVAILABILITY_IN_CSP",
        ],
    ),
    "blocked": (
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        "R7",
        ["WAIT_FOR_TERM_END_OR_CANCELLATION"],
    ),
    "ended": ("CSP_SWITCH_PERMITTED", "TERM_ENDED", "R5", ["OFFER_CSP_SUBSCRIPTION"]),
    "managed": ("ALREADY_MANAGED", "SOLD_BY_ACCOUNT_PARTNER", "R3", []),
}


def decision(
    partner: str,
    customer: str,
    sub: str,
    kind: str = "eligible",
    *,
    blocked_until: date | None = None,
    via: list[str] | None = None,
    at: datetime = AT,
    event: str | None = "e1",
) -> dict[str, Any]:
    name, reason, rule, actions = VERDICTS[kind]
    return {
        "partner_id": partner,
        "customer_id": customer,
        "subscription_id": sub,
        "decision": name,
        "reason": reason,
        "rule": rule,
        "next_actions": list(actions),
        "blocked_until": blocked_until,
        "relationship_via_partner_ids": via or [],
        "decided_at": at,
        "caused_by_event_id": event,
        "rulebook_version": RULEBOOK_VERSION,
    }


def status(partner: str, customer: str, name: str = "MULTICHANNEL", **counts: int) -> dict[str, Any]:
    return {
        "partner_id": partner,
        "customer_id": customer,
        "status": name,
        "decision_counts": counts or {"ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 1},
        "decided_at": AT,
        "caused_by_event_id": "e1",
        "rulebook_version": RULEBOOK_VERSION,
    }
