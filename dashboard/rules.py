"""What the dashboard says about codes: a short text per rule (from the rule books: R1-R10 of both, T1-T3,
E1 and E2 of `current`), readable labels of decisions and next actions, and which actions make a
subscription something to act on."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Final

from multichannel.model import Decision, NextAction, Rule

RULE_TEXT: Final[dict[str, str]] = {
    Rule.R1: "The customer is itself a CSP partner: CSP partners cannot resell online services to each other.",
    Rule.R2: "The account partner is not in CSP: multichannel rules do not apply.",
    Rule.R3: "Bought through CSP from the account partner itself: already managed.",
    Rule.R4: "Bought through a syndication partner: multichannel rules do not apply.",
    Rule.R5: "The subscription has ended (cancelled, or its license term is over): a CSP purchase can replace it.",
    Rule.R6: "Azure bought from another CSP partner: the customer can switch it to the account partner now.",
    Rule.R7: "A license held by another CSP partner: it cannot move before its term end, unless cancelled.",
    Rule.R8: "Usage-based and multichannel: no CSP migration path, create a CSP Azure subscription and port by hand.",
    Rule.R9: "License-based and multichannel, no relationship yet: ask the customer for a relationship.",
    Rule.R10: "License-based and multichannel with a relationship: support it now, switch at term end.",
    Rule.T1: "A new-commerce license held by another CSP partner, relationship accepted: request a partner transfer.",
    Rule.T2: "A new-commerce license held by another CSP partner: ask for a relationship, then request the transfer.",
    Rule.T3: "Azure held by another CSP partner: ask for a relationship, then request the Azure partner switch.",
    Rule.E1: "Azure of a direct EA, the partner an Azure Expert MSP with a relationship: request the billing transfer.",
    Rule.E2: "Azure of a direct EA, the partner an Azure Expert MSP: ask for a relationship, then for the transfer.",
}

RULE_TITLE: Final[dict[str, str]] = {
    Rule.R1: "Customer is a CSP partner",
    Rule.R2: "Partner not in CSP",
    Rule.R3: "Sold by the account partner",
    Rule.R4: "Syndication channel",
    Rule.R5: "Subscription ended",
    Rule.R6: "Azure from another CSP partner",
    Rule.R7: "License held by another CSP partner",
    Rule.R8: "Usage-based, no migration path",
    Rule.R9: "Relationship request",
    Rule.R10: "Under relationship until term end",
    Rule.T1: "New-commerce transfer available",
    Rule.T2: "New-commerce transfer, relationship first",
    Rule.T3: "Azure switch, relationship first",
    Rule.E1: "EA billing transfer available",
    Rule.E2: "EA billing transfer, relationship first",
}

DECISION_LABEL: Final[dict[str, str]] = {
    Decision.ELIGIBLE_FOR_RELATIONSHIP_REQUEST: "Eligible for relationship request",
    Decision.BLOCKED_UNTIL_TERM_END: "Blocked until term end",
    Decision.MIGRATION_REQUIRED: "Migration required",
    Decision.CSP_SWITCH_PERMITTED: "CSP switch permitted",
    Decision.ALREADY_MANAGED: "Already managed",
    Decision.RESALE_NOT_PERMITTED: "Resale not permitted",
    Decision.NOT_APPLICABLE: "Not applicable",
}

ACTION_LABEL: Final[dict[str, str]] = {
    NextAction.OFFER_CSP_SUBSCRIPTION: "Offer a CSP subscription",
    NextAction.REQUEST_AZURE_PARTNER_SWITCH: "Request Azure partner switch",
    NextAction.WAIT_FOR_TERM_END_OR_CANCELLATION: "Wait for term end or cancellation",
    NextAction.CREATE_CSP_AZURE_SUBSCRIPTION: "Plan migration: create a CSP Azure subscription",
    NextAction.PORT_DATA_AND_SETTINGS: "Port data and settings",
    NextAction.CUSTOMER_CANCELS_OLD_SUBSCRIPTION: "Customer cancels the old subscription",
    NextAction.CHECK_SERVICE_AVAILABILITY_IN_CSP: "Check service availability in CSP",
    NextAction.SEND_RELATIONSHIP_REQUEST: "Send relationship request",
    NextAction.OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER: "Invitation via indirect provider",
    NextAction.SEND_PROVIDER_INVITATION_TO_CUSTOMER: "Send the provider's invitation to the customer",
    NextAction.REQUEST_DELEGATED_ADMIN_FOR_RESELLER: "Request delegated admin",
    NextAction.SUPPORT_UNDER_RELATIONSHIP: "Support under the relationship",
    NextAction.LINK_INDIRECT_PROVIDER: "Link an indirect provider",
    NextAction.REQUEST_PARTNER_TRANSFER: "Request a partner transfer",
    NextAction.REQUEST_EA_BILLING_TRANSFER: "Request the EA billing transfer",
    NextAction.SEND_RESELLER_INVITATION_TO_CUSTOMER: "Send the reseller's invitation to the customer",
    NextAction.WAIT_FOR_TERM_END: "Wait for term end",
}

PASSIVE_ACTIONS: Final = frozenset(
    {NextAction.WAIT_FOR_TERM_END_OR_CANCELLATION, NextAction.WAIT_FOR_TERM_END, NextAction.SUPPORT_UNDER_RELATIONSHIP}
)
"""Actions that ask nothing of the partner today: a subscription with only these is on the calendar, not in a queue."""

QUEUE_DECISIONS: Final[tuple[str, ...]] = (
    Decision.ELIGIBLE_FOR_RELATIONSHIP_REQUEST,
    Decision.CSP_SWITCH_PERMITTED,
    Decision.MIGRATION_REQUIRED,
    Decision.BLOCKED_UNTIL_TERM_END,
)
"""The decisions a work queue groups by, in the order shown (every decision with a next action to take)."""

STATUSES: Final[tuple[str, ...]] = ("MULTICHANNEL", "SINGLE_CHANNEL", "NOT_ELIGIBLE")

RULES_DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def is_actionable(next_actions: tuple[str, ...]) -> bool:
    """Whether a decision asks the partner to do something now."""
    return any(a not in PASSIVE_ACTIONS for a in next_actions)


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def _doc_anchors() -> dict[str, str]:
    """Rule id → anchor of its `## R7 ...` (or `### T1 ...`) section in docs/rules.md (empty while the file does
    not exist)."""
    try:
        text = RULES_DOC.read_text(encoding="utf-8")
    except OSError:
        return {}
    anchors: dict[str, str] = {}
    for line in text.splitlines():
        found = re.match(r"^#{2,3}\s+([RTE]\d+)\b(.*)$", line)
        if found and found.group(1) not in anchors:
            anchors[found.group(1)] = slug(found.group(1) + found.group(2))
    return anchors


def rule_anchor(rule: str) -> str:
    """The anchor of a rule in docs/rules.md: its heading's, or the rule id in lower case."""
    return _doc_anchors().get(rule) or slug(rule)


def rule_link(rule: str) -> str:
    """Where a rule id links to: its section of docs/rules.md, served by the dashboard."""
    return f"/docs/rules.md#{rule_anchor(rule)}"
