"""The `current` rule book (docs: shared/domain/multichannel-rules-current.md, version 2026-12.1), row by row,
against the core, as `test_rulebook.py` does for `seed`: every row is named after the rule it ends in and
asserts the final decision of subscription S1 (rule, decision, reason, next actions in order, blocked_until,
relationship_via_partner_ids, rulebook_version).

Beside the rows: the order of precedence of `current` pair by pair, its **[choice]** marks, the new next
actions, the cancellation window and its timer, the GDAP expiry and its timer, the Azure Expert MSP mark of a
partner, customer status, and the two books side by side (`current` without the new fields differs from `seed`
only where T3 and the reseller's own invitation apply; `seed` ignores the new fields; both refuse an invalid
one alike)."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from consumers.classify_runner import classify_stream
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent
from multichannel.model import NextAction, Rule
from multichannel.parse import parse_event
from multichannel.records import OutputRecord
from multichannel.rulebooks import CURRENT, SEED
from tests.unit.core_driver import classify, day, decisions, final, final_status, statuses
from tests.unit.test_rulebook import (
    CASES as SEED_CASES,
)
from tests.unit.test_rulebook import (
    DA,
    M1,
    NONE,
    R8_ACTIONS,
    Case,
    Precedence,
    account,
    buy,
    direct,
    partner,
    reseller,
)
from tests.unit.test_rulebook import (
    PRECEDENCE as SEED_PRECEDENCE,
)

VERSION = "2026-12.1"
SEND = ["SEND_RELATIONSHIP_REQUEST"]
INVITE = ["SEND_RESELLER_INVITATION_TO_CUSTOMER"]
TRANSFER = ["REQUEST_PARTNER_TRANSFER"]
AZURE_SWITCH = ["REQUEST_AZURE_PARTNER_SWITCH"]
EA_TRANSFER = ["REQUEST_EA_BILLING_TRANSFER"]
WAIT_OR_CANCEL = ["WAIT_FOR_TERM_END_OR_CANCELLATION"]
WAIT_END = ["WAIT_FOR_TERM_END"]
SUPPORT = ["SUPPORT_UNDER_RELATIONSHIP"]
LINK = ["LINK_INDIRECT_PROVIDER"]
OFFER = ["OFFER_CSP_SUBSCRIPTION"]
NEEDS = "TRANSFER_NEEDS_RELATIONSHIP"
NO_PROVIDER = "RESELLER_WITHOUT_INDIRECT_PROVIDER"
ELIGIBLE, BLOCKED, SWITCH = "ELIGIBLE_FOR_RELATIONSHIP_REQUEST", "BLOCKED_UNTIL_TERM_END", "CSP_SWITCH_PERMITTED"
HELD = "LICENSE_HELD_BY_OTHER_CSP_PARTNER"
NOT_SWITCHABLE = "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END"
NEW_FIELDS = ("commerce", "cancellation_allowed_until", "azure_expert_msp", "expires_at")


# ------------------------------------------------------------------------------------------- events of 1.1


def nce(event: dict[str, Any], until: str | None = None) -> dict[str, Any]:
    """A purchase on the new-commerce platform, with its cancellation window's last day when given."""
    out = dict(event, commerce="nce")
    if until is not None:
        out["cancellation_allowed_until"] = until
    return out


def renew(term_end: str, at: str = "2026-03-05T00:00:00Z", until: str | None = None, **more: Any) -> dict[str, Any]:
    """A renewal of S1 (by default) with the new term's cancellation window when given."""
    more.setdefault("subscription_id", "S1")
    event = account("subscription_renewed", at=at, term_end=term_end, **more)
    if until is not None:
        event["cancellation_allowed_until"] = until
    return event


def rel(at: str = "2026-03-02T00:00:00Z", **more: Any) -> dict[str, Any]:
    return account("relationship_accepted", at=at, **more)


def grant(at: str = "2026-03-02T00:00:00Z", expires: str | None = None, **more: Any) -> dict[str, Any]:
    """A delegated-admin grant, with its GDAP end when given."""
    event = account("delegated_admin_granted", at=at, **more)
    if expires is not None:
        event["expires_at"] = expires
    return event


def cancel(at: str = "2026-03-03T00:00:00Z", sid: str = "S1") -> dict[str, Any]:
    return account("subscription_cancelled", at=at, subscription_id=sid)


def expert(pid: str = "P1", program: str = "csp_direct", at: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    """A partner event of a direct-bill partner certified as Azure Expert MSP."""
    return dict(partner(pid, program, at=at), azure_expert_msp=True)


def provider(*events: Any) -> list[Any]:
    return [partner("P1", "csp_indirect_provider"), *events]


def msp(*events: Any) -> list[Any]:
    return [expert(), *events]


def other_csp(billing: str = "license", **more: Any) -> dict[str, Any]:
    """Bought from another CSP partner (P2, channel `csp`): "held by another CSP partner"."""
    return buy("csp", billing, seller="P2", **more)


def run(events: list[Any], as_of: str | None = None) -> list[OutputRecord]:
    return classify(events, as_of, rulebook=CURRENT)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def r7(label: str, events: list[Any], until: str = "2027-01-01", choice: str | None = None) -> Case:
    """An R7 row of S1: BLOCKED_UNTIL_TERM_END, LICENSE_HELD_BY_OTHER_CSP_PARTNER, wait or cancel (legacy)."""
    return Case(label, events, "R7", BLOCKED, HELD, WAIT_OR_CANCEL, until, [], None, choice)


def r9_reseller(label: str, *events: Any, actions: list[str], as_of: str | None = None) -> Case:
    """An R9 row of reseller P1 (provider D1) with one open license S1 (M1, term end 2027-01-01), then `events`."""
    return Case(
        label, reseller(("D1",), buy("open"), *events), "R9", ELIGIBLE, M1, actions, "2027-01-01", ["D1"], as_of
    )


def r10(
    label: str,
    events: list[Any],
    actions: list[str],
    until: str = "2027-01-01",
    via: list[str] | None = None,
    as_of: str | None = None,
    choice: str | None = None,
) -> Case:
    """An R10 row of S1: BLOCKED_UNTIL_TERM_END, LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END, blocked until `until`."""
    return Case(label, events, "R10", BLOCKED, NOT_SWITCHABLE, actions, until, via or [], as_of, choice)


UNDER_A_WINDOW_TO_JUNE_30 = direct(nce(buy("open"), "2026-06-30"), rel())
"""R10 of an NCE license whose cancellation window's last day is 2026-06-30: it closes at 2026-07-01 00:00 UTC."""
RENEWED_WITH_A_WINDOW_TO_JAN_14 = direct(
    nce(buy("open"), "2026-03-10"), rel(), renew("2028-01-01", at="2026-12-01T00:00:00Z", until="2027-01-14")
)
"""R10 of an NCE license renewed (to 2028) after its first window closed, with a new window to 2027-01-14."""
EXTENDED_GDAP = [
    grant(expires="2026-05-01T00:00:00Z"),
    grant(at="2026-04-01T00:00:00Z", expires="2026-08-01T00:00:00Z"),
]
"""A GDAP grant ending 2026-05-01, extended by a newer one ending 2026-08-01."""

CHOICES = {
    "absent-partner-is-none": "As in seed: a partner absent from the partner table has program `none`.",
    "third-party-csp-seller-is-csp": "As in seed: a `third_party` seller in CSP is held by another CSP partner.",
    "arrival-order": "As in seed: the latest event by occurred_at (then event_id) wins, whatever the arrival.",
    "via-on-provider-rules-only": "relationship_via_partner_ids on R9, R10, T1-T3; empty elsewhere, R6 included.",
    "reseller-without-provider": "A reseller with no provider, on R9, T2 and T3 alike: LINK_INDIRECT_PROVIDER.",
}
"""The **[choice]** marks `current` keeps from `seed` and those it adds, each carried by at least one row."""


CASES = [
    # ------------------------------------------------------------------ R1-R5: as in seed
    Case(
        "customer-is-csp-partner-over-an-nce-transfer",
        [partner("C1", "csp_direct"), *direct(nce(other_csp()), rel())],
        "R1",
        "RESALE_NOT_PERMITTED",
        "CUSTOMER_IS_CSP_PARTNER",
        NONE,
    ),
    Case(
        "partner-not-in-csp",
        [partner("P1", "advisor"), buy("open")],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
    ),
    Case(
        "partner-absent-from-table-is-none",
        [nce(other_csp())],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
        choice="absent-partner-is-none",
    ),
    Case(
        "expert-msp-partner-out-of-csp",
        [expert("P1", "advisor"), buy("enterprise_agreement", "usage"), rel()],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
    ),
    Case(
        "nce-csp-sold-by-account-partner",
        direct(nce(buy("csp", seller="P1"), "2026-03-15"), rel()),
        "R3",
        "ALREADY_MANAGED",
        "SOLD_BY_ACCOUNT_PARTNER",
        NONE,
    ),
    Case("syndication-channel", direct(nce(buy("syndication"))), "R4", "NOT_APPLICABLE", "SYNDICATION_CHANNEL", NONE),
    Case(
        "third-party-syndication-seller-nce",
        [partner("SY", "syndication"), *direct(nce(buy("third_party", seller="SY")), rel())],
        "R4",
        "NOT_APPLICABLE",
        "SYNDICATION_CHANNEL",
        NONE,
    ),
    Case(
        "nce-transfer-cancelled",
        direct(nce(other_csp()), rel(), cancel()),
        "R5",
        SWITCH,
        "SUBSCRIPTION_CANCELLED",
        OFFER,
    ),
    Case(
        "nce-term-ended-by-timer",
        direct(nce(other_csp(term_end="2026-06-01"), "2026-03-10")),
        "R5",
        SWITCH,
        "TERM_ENDED",
        OFFER,
        as_of="2026-06-01T00:00:00Z",
    ),
    Case(
        "ea-billing-transfer-cancelled",
        msp(buy("enterprise_agreement", "usage"), rel(), cancel()),
        "R5",
        SWITCH,
        "SUBSCRIPTION_CANCELLED",
        OFFER,
    ),
    Case(
        "nce-term-already-ended-at-purchase",
        direct(nce(buy("open", term_start="2025-01-01", term_end="2026-02-01"), "2025-01-10"), rel()),
        "R5",
        SWITCH,
        "TERM_ENDED",
        OFFER,
    ),
    # ------------------------------------------------------------------ T1: NCE transfer with a relationship
    Case(
        "nce-held-by-other-csp-with-relationship",
        direct(nce(other_csp()), rel()),
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
    ),
    Case(
        "nce-third-party-csp-seller",
        [partner("P2", "csp_indirect_reseller"), *direct(nce(buy("third_party", seller="P2")), rel())],
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
        choice="third-party-csp-seller-is-csp",
    ),
    Case(
        "window-open-changes-nothing",
        direct(nce(other_csp(), "2026-12-15"), rel()),
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
    ),
    Case(
        "reseller-lists-its-providers",
        reseller(("D1", "D2"), nce(other_csp()), rel()),
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
        via=["D1", "D2"],
        choice="via-on-provider-rules-only",
    ),
    Case(
        "reseller-without-provider-keeps-the-transfer",
        reseller((), nce(other_csp()), rel()),
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
    ),
    Case(
        "later-nce-purchase-makes-it-nce",
        direct(other_csp(), rel(), nce(other_csp(at="2026-04-01T00:00:00Z"))),
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
    ),
    Case(
        "partner-change-seller-joins-csp",
        [partner("X9", "none"), *direct(nce(buy("third_party", seller="X9")), rel())]
        + [partner("X9", "csp_indirect_provider", at="2026-04-01T00:00:00Z")],
        "T1",
        SWITCH,
        "NCE_TRANSFER_AVAILABLE",
        TRANSFER,
    ),
    # ------------------------------------------------------------------ T2: NCE transfer, no relationship yet
    Case(
        "nce-held-by-other-csp-direct-partner",
        direct(nce(other_csp())),
        "T2",
        ELIGIBLE,
        NEEDS,
        SEND + TRANSFER,
    ),
    Case(
        "indirect-provider-sends-the-request",
        provider(nce(other_csp())),
        "T2",
        ELIGIBLE,
        NEEDS,
        SEND + TRANSFER,
    ),
    Case(
        "relationship-ended",
        direct(nce(other_csp()), rel(), account("relationship_ended", at="2026-03-05T00:00:00Z")),
        "T2",
        ELIGIBLE,
        NEEDS,
        SEND + TRANSFER,
    ),
    Case(
        "reseller-without-delegated-admin",
        reseller(("D1", "D2"), nce(other_csp(), "2026-03-20")),
        "T2",
        ELIGIBLE,
        NEEDS,
        INVITE + DA + TRANSFER,
        via=["D1", "D2"],
    ),
    Case(
        "reseller-with-delegated-admin",
        reseller(("D1",), nce(other_csp()), grant()),
        "T2",
        ELIGIBLE,
        NEEDS,
        INVITE + TRANSFER,
        via=["D1"],
    ),
    Case(
        "reseller-without-provider",
        reseller((), nce(other_csp()), grant()),
        "T2",
        ELIGIBLE,
        NO_PROVIDER,
        LINK,
        choice="reseller-without-provider",
    ),
    Case(
        "partner-change-links-the-resellers-first-provider",
        reseller((), nce(other_csp())) + [partner("P1", "csp_indirect_reseller", ("D1",), at="2026-04-01T00:00:00Z")],
        "T2",
        ELIGIBLE,
        NEEDS,
        INVITE + DA + TRANSFER,
        via=["D1"],
    ),
    # ------------------------------------------------------------------ T3: Azure transfer, no relationship yet
    Case("azure-held-by-other-csp", direct(other_csp("usage")), "T3", ELIGIBLE, NEEDS, SEND + AZURE_SWITCH),
    Case(
        "azure-third-party-csp-seller",
        [partner("P2", "csp_direct"), *direct(buy("third_party", "usage", seller="P2"))],
        "T3",
        ELIGIBLE,
        NEEDS,
        SEND + AZURE_SWITCH,
    ),
    Case(
        "commerce-ignored-for-usage",
        direct(nce(other_csp("usage"), "2026-03-01")),
        "T3",
        ELIGIBLE,
        NEEDS,
        SEND + AZURE_SWITCH,
    ),
    Case(
        "reseller-without-delegated-admin",
        reseller(("D2", "D1"), other_csp("usage")),
        "T3",
        ELIGIBLE,
        NEEDS,
        INVITE + DA + AZURE_SWITCH,
        via=["D2", "D1"],
    ),
    Case(
        "reseller-with-delegated-admin",
        reseller(("D1",), other_csp("usage"), grant(expires="2027-01-01T00:00:00Z")),
        "T3",
        ELIGIBLE,
        NEEDS,
        INVITE + AZURE_SWITCH,
        via=["D1"],
    ),
    Case(
        "reseller-without-provider",
        reseller((), other_csp("usage")),
        "T3",
        ELIGIBLE,
        NO_PROVIDER,
        LINK,
    ),
    # ------------------------------------------------------------------ R6: Azure switch under a relationship
    Case(
        "azure-held-by-other-csp-with-relationship",
        direct(other_csp("usage"), rel()),
        "R6",
        SWITCH,
        "AZURE_FROM_OTHER_CSP_PARTNER",
        AZURE_SWITCH,
    ),
    Case(
        "reseller-lists-no-providers",
        reseller(("D1",), other_csp("usage"), rel()),
        "R6",
        SWITCH,
        "AZURE_FROM_OTHER_CSP_PARTNER",
        AZURE_SWITCH,
        choice="via-on-provider-rules-only",
    ),
    # ------------------------------------------------------------------ R7: legacy license held by another partner
    r7("legacy-held-by-other-csp", direct(other_csp())),
    r7("legacy-with-relationship", direct(dict(other_csp(), commerce="legacy"), rel())),
    r7(
        "legacy-ignores-a-closed-window",
        direct(dict(other_csp(), commerce="legacy", cancellation_allowed_until="2026-01-15")),
    ),
    r7("commerce-null-is-legacy", direct(dict(other_csp(), commerce=None), rel())),
    r7(
        "later-legacy-purchase-makes-it-legacy",
        direct(nce(other_csp()), rel(), other_csp(at="2026-04-01T00:00:00Z", term_end="2028-01-01")),
        until="2028-01-01",
    ),
    r7("reseller-lists-no-providers", reseller(("D1",), other_csp())),
    # ------------------------------------------------------------------ E1, E2: EA billing transfer
    Case(
        "ea-azure-expert-msp-with-relationship",
        msp(buy("enterprise_agreement", "usage"), rel()),
        "E1",
        SWITCH,
        "EA_BILLING_TRANSFER_AVAILABLE",
        EA_TRANSFER,
    ),
    Case(
        "partner-change-makes-the-partner-an-expert",
        direct(buy("enterprise_agreement", "usage"), rel(), expert(at="2026-04-01T00:00:00Z")),
        "E1",
        SWITCH,
        "EA_BILLING_TRANSFER_AVAILABLE",
        EA_TRANSFER,
    ),
    Case(
        "ea-azure-expert-msp-no-relationship",
        msp(buy("enterprise_agreement", "usage")),
        "E2",
        ELIGIBLE,
        NEEDS,
        SEND + EA_TRANSFER,
    ),
    Case(
        "older-partner-event-without-the-mark-changes-nothing",
        msp(buy("enterprise_agreement", "usage"), partner("P1", "csp_direct", at="2025-06-01T00:00:00Z")),
        "E2",
        ELIGIBLE,
        NEEDS,
        SEND + EA_TRANSFER,
        choice="arrival-order",
    ),
    # ------------------------------------------------------------------ R8: what E1 and E2 do not take
    Case(
        "ea-azure-partner-not-expert",
        direct(buy("enterprise_agreement", "usage"), rel()),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "ea-azure-expert-indirect-provider",
        [expert("P1", "csp_indirect_provider"), buy("enterprise_agreement", "usage"), rel()],
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "ea-azure-expert-reseller",
        [
            expert("P1", "csp_indirect_reseller") | {"indirect_provider_ids": ["D1"]},
            buy("enterprise_agreement", "usage"),
        ],
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "microsoft-direct-azure-of-an-expert",
        msp(buy("microsoft_direct", "usage"), rel()),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "later-partner-event-without-the-mark-makes-it-false",
        msp(buy("enterprise_agreement", "usage"), rel(), partner("P1", "csp_direct", at="2026-04-01T00:00:00Z")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "expert-mark-null-is-false",
        [dict(partner("P1", "csp_direct"), azure_expert_msp=None), buy("enterprise_agreement", "usage"), rel()],
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "expert-mark-of-a-seller-changes-nothing",
        [expert("X9"), *direct(buy("enterprise_agreement", "usage", seller="X9"))],
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    # ------------------------------------------------------------------ R9: relationship actions of today
    Case("M1-direct-partner", direct(nce(buy("open"), "2026-12-01")), "R9", ELIGIBLE, M1, SEND, "2027-01-01"),
    Case(
        "M1-ea-license-of-an-expert",
        msp(buy("enterprise_agreement")),
        "R9",
        ELIGIBLE,
        M1,
        SEND,
        "2027-01-01",
    ),
    Case(
        "M2-purchased-from-partner-as-advisor",
        direct(buy("advisor", seller="P1")),
        "R9",
        ELIGIBLE,
        "PURCHASED_FROM_PARTNER_AS_ADVISOR",
        SEND,
        "2027-01-01",
    ),
    Case(
        "M3-non-csp-third-party",
        provider(nce(buy("third_party", seller="X9"))),
        "R9",
        ELIGIBLE,
        "PURCHASED_FROM_NON_CSP_THIRD_PARTY",
        SEND,
        "2027-01-01",
    ),
    Case(
        "reseller-sends-its-own-invitation",
        reseller(("D2", "D1", "D2"), buy("open")),
        "R9",
        ELIGIBLE,
        M1,
        INVITE + DA,
        "2027-01-01",
        ["D2", "D1"],
    ),
    r9_reseller("reseller-with-delegated-admin", grant(), actions=INVITE),
    r9_reseller(
        "reseller-gdap-not-expired-yet",
        grant(expires="2026-05-01T12:00:00Z"),
        actions=INVITE,
        as_of="2026-05-01T11:59:59Z",
    ),
    r9_reseller(
        "reseller-gdap-expired-by-timer",
        grant(expires="2026-05-01T12:00:00Z"),
        actions=INVITE + DA,
        as_of="2026-05-01T12:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-already-expired-when-granted",
        grant(at="2026-03-05T00:00:00Z", expires="2026-03-04T00:00:00Z"),
        actions=INVITE + DA,
    ),
    r9_reseller(
        "reseller-gdap-extended-by-a-newer-grant",
        *EXTENDED_GDAP,
        actions=INVITE,
        as_of="2026-07-31T00:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-extension-expires-too",
        *EXTENDED_GDAP,
        actions=INVITE + DA,
        as_of="2026-08-01T00:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-newer-grant-without-end",
        grant(expires="2026-05-01T00:00:00Z"),
        grant(at="2026-04-01T00:00:00Z"),
        actions=INVITE,
        as_of="2026-12-01T00:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-older-grant-changes-nothing",
        grant(at="2026-03-03T00:00:00Z", expires="2026-05-01T00:00:00Z"),
        grant(at="2026-03-02T00:00:00Z"),
        actions=INVITE + DA,
        as_of="2026-06-01T00:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-newer-grant-with-an-earlier-end",
        grant(expires="2026-09-01T00:00:00Z"),
        grant(at="2026-03-04T00:00:00Z", expires="2026-05-01T00:00:00Z"),
        actions=INVITE + DA,
        as_of="2026-06-01T00:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-expires-at-null-never-ends",
        grant() | {"expires_at": None},
        actions=INVITE,
        as_of="2026-12-31T00:00:00Z",
    ),
    r9_reseller(
        "reseller-gdap-revoked",
        grant(expires="2026-09-01T00:00:00Z"),
        account("delegated_admin_revoked", at="2026-03-04T00:00:00Z"),
        actions=INVITE + DA,
    ),
    Case(
        "reseller-without-provider",
        reseller((), buy("open")),
        "R9",
        ELIGIBLE,
        NO_PROVIDER,
        LINK,
        "2027-01-01",
    ),
    Case(
        "nce-window-closed-changes-nothing",
        direct(nce(buy("open"), "2026-03-10")),
        "R9",
        ELIGIBLE,
        M1,
        SEND,
        "2027-01-01",
        as_of="2026-06-01T00:00:00Z",
    ),
    # ------------------------------------------------------------------ R10: cancellation and delegated admin
    r10("legacy", direct(buy("open"), rel()), SUPPORT + WAIT_OR_CANCEL),
    r10("nce-window-open", UNDER_A_WINDOW_TO_JUNE_30, SUPPORT + WAIT_OR_CANCEL),
    r10(
        "nce-window-last-day-is-inclusive",
        UNDER_A_WINDOW_TO_JUNE_30,
        SUPPORT + WAIT_OR_CANCEL,
        as_of="2026-06-30T23:59:59.999Z",
    ),
    r10(
        "nce-window-closed-by-timer",
        UNDER_A_WINDOW_TO_JUNE_30,
        SUPPORT + WAIT_END,
        as_of="2026-07-01T00:00:00Z",
    ),
    r10("nce-without-window", direct(nce(buy("open")), rel()), SUPPORT + WAIT_END),
    r10("nce-window-null", direct(dict(nce(buy("open")), cancellation_allowed_until=None), rel()), SUPPORT + WAIT_END),
    r10(
        "nce-window-already-past-at-purchase",
        direct(rel(at="2026-02-01T00:00:00Z"), nce(buy("open"), "2026-02-28")),
        SUPPORT + WAIT_END,
    ),
    r10(
        "nce-window-ending-at-the-purchase-instant",
        direct(rel(at="2026-02-01T00:00:00Z"), nce(buy("open", at="2026-03-01T00:00:00Z"), "2026-02-28")),
        SUPPORT + WAIT_END,
    ),
    r10(
        "nce-window-closed-before-the-relationship",
        direct(nce(buy("open"), "2026-03-01"), rel(at="2026-03-02T00:00:00Z")),
        SUPPORT + WAIT_END,
    ),
    r10(
        "renewal-replaces-the-window",
        RENEWED_WITH_A_WINDOW_TO_JAN_14,
        SUPPORT + WAIT_OR_CANCEL,
        until="2028-01-01",
        as_of="2027-01-14T12:00:00Z",
    ),
    r10(
        "renewal-window-closes-by-timer",
        RENEWED_WITH_A_WINDOW_TO_JAN_14,
        SUPPORT + WAIT_END,
        until="2028-01-01",
        as_of="2027-01-15T00:00:00Z",
    ),
    r10(
        "renewal-without-window-closes-it",
        direct(nce(buy("open"), "2026-12-15"), rel(), renew("2028-01-01", at="2026-04-01T00:00:00Z")),
        SUPPORT + WAIT_END,
        until="2028-01-01",
    ),
    r10(
        "renewal-with-null-window-closes-it",
        direct(
            nce(buy("open"), "2026-12-15"),
            rel(),
            renew("2028-01-01", at="2026-04-01T00:00:00Z") | {"cancellation_allowed_until": None},
        ),
        SUPPORT + WAIT_END,
        until="2028-01-01",
    ),
    r10(
        "latest-renewal-window-wins-over-an-earlier-one-arriving-later",
        direct(
            nce(buy("open")),
            rel(),
            renew("2028-01-01", at="2026-05-01T00:00:00Z", until="2026-12-31"),
            renew("2027-06-01", at="2026-04-01T00:00:00Z"),
        ),
        SUPPORT + WAIT_OR_CANCEL,
        until="2028-01-01",
        choice="arrival-order",
    ),
    r10(
        "renewal-window-already-past-when-renewed",
        direct(
            nce(buy("open"), "2026-12-15"), rel(), renew("2028-01-01", at="2026-04-01T00:00:00Z", until="2026-03-31")
        ),
        SUPPORT + WAIT_END,
        until="2028-01-01",
    ),
    r10(
        "renewal-before-purchase-brings-its-window",
        direct(renew("2028-01-01", at="2026-02-01T00:00:00Z", until="2026-12-31"), nce(buy("open")), rel()),
        SUPPORT + WAIT_OR_CANCEL,
        until="2028-01-01",
    ),
    r10(
        "later-legacy-purchase-reopens-cancellation",
        direct(nce(buy("open")), rel(), buy("open", at="2026-04-01T00:00:00Z")),
        SUPPORT + WAIT_OR_CANCEL,
    ),
    r10(
        "later-nce-purchase-without-window-has-none",
        direct(
            buy("open") | {"cancellation_allowed_until": "2026-12-01"},
            rel(),
            nce(buy("open", at="2026-04-01T00:00:00Z")),
        ),
        SUPPORT + WAIT_END,
    ),
    r10(
        "older-nce-purchase-changes-nothing",
        direct(buy("open", at="2026-04-01T00:00:00Z"), rel(), nce(buy("open"))),
        SUPPORT + WAIT_OR_CANCEL,
    ),
    r10(
        "reseller-without-delegated-admin",
        reseller(("D1", "D2"), nce(buy("open"), "2026-03-20"), rel()),
        SUPPORT + WAIT_OR_CANCEL + DA,
        via=["D1", "D2"],
    ),
    r10(
        "reseller-window-closed-without-delegated-admin",
        reseller(("D1",), nce(buy("open"), "2026-03-20"), rel()),
        SUPPORT + WAIT_END + DA,
        via=["D1"],
        as_of="2026-03-21T00:00:00Z",
    ),
    r10(
        "reseller-with-delegated-admin",
        reseller(("D1",), buy("open"), rel(), grant()),
        SUPPORT + WAIT_OR_CANCEL,
        via=["D1"],
    ),
    r10(
        "reseller-gdap-expired-by-timer",
        reseller(("D1",), buy("open"), rel(), grant(expires="2026-04-15T08:30:00Z")),
        SUPPORT + WAIT_OR_CANCEL + DA,
        via=["D1"],
        as_of="2026-05-01T00:00:00Z",
    ),
    r10("reseller-without-provider-keeps-its-reason", reseller((), buy("open"), rel()), SUPPORT + WAIT_OR_CANCEL + DA),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_book_row(case: Case) -> None:
    """The row's events leave S1 with the rule, decision, reason, next actions, blocked_until and providers
    `current` gives that rule, and every record says rulebook_version 2026-12.1."""
    records = run(case.events, case.as_of)
    d = final(records)
    assert (d.rule, d.decision, d.reason) == (case.rule, case.decision, case.reason)
    assert list(d.next_actions) == case.actions
    assert d.blocked_until == day(case.blocked_until)
    assert list(d.relationship_via_partner_ids) == case.via
    assert {r.rulebook_version for r in records} == {VERSION}


def test_every_rule_action_and_choice_of_the_book_has_a_row() -> None:
    """Each rule of `current` (R1-R10, T1-T3, E1, E2), each new next action and each **[choice]** mark is the
    subject of at least one row, and row ids are unique."""
    assert {c.rule for c in CASES} == {r.value for r in Rule}
    new_actions = {"REQUEST_PARTNER_TRANSFER", "REQUEST_EA_BILLING_TRANSFER"}
    new_actions |= {"SEND_RESELLER_INVITATION_TO_CUSTOMER", "WAIT_FOR_TERM_END"}
    assert new_actions <= {a.value for a in NextAction}
    assert new_actions <= {a for c in CASES for a in c.actions}
    assert {c.choice for c in CASES if c.choice is not None} == set(CHOICES)
    assert len({c.id for c in CASES}) == len(CASES), "ids are unique"


def test_seed_only_invitation_actions_never_appear_in_current() -> None:
    """OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER and SEND_PROVIDER_INVITATION_TO_CUSTOMER are not used in
    `current`: no record of any row carries them."""
    unused = {"OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER", "SEND_PROVIDER_INVITATION_TO_CUSTOMER"}
    for case in CASES:
        for d in decisions(run(case.events, case.as_of)):
            assert unused.isdisjoint(d.next_actions), case.id


def test_blocked_until_and_providers_only_where_the_book_sets_them() -> None:
    """Over every record of every row: blocked_until is set on R7, R9 and R10 only (null on T1-T3, E1, E2),
    and relationship_via_partner_ids is non-empty on R9, R10, T1, T2 and T3 only."""
    for case in CASES:
        for d in decisions(run(case.events, case.as_of)):
            if d.blocked_until is not None:
                assert d.rule in {"R7", "R9", "R10"}, case.id
            if d.rule in {"R7", "R9", "R10"}:
                assert d.blocked_until is not None, case.id
            if d.relationship_via_partner_ids:
                assert d.rule in {"R9", "R10", "T1", "T2", "T3"}, case.id


# ------------------------------------------------------------------------------------------- precedence


def _ea(*more: Any) -> list[Any]:
    return [buy("enterprise_agreement", "usage"), *more]


LOSER_BODY: dict[str, list[Any]] = {
    "R3": [nce(buy("csp", seller="P1")), rel()],
    "R4": [nce(buy("syndication"))],
    "R5": [nce(buy("microsoft_direct")), cancel()],
    "T1": [nce(other_csp()), rel()],
    "T2": [nce(other_csp())],
    "T3": [other_csp("usage")],
    "R6": [other_csp("usage"), rel()],
    "R7": [other_csp()],
    "E1": _ea(rel()),
    "E2": _ea(),
    "R8": [buy("microsoft_direct", "usage")],
    "R9": [nce(buy("microsoft_direct"), "2026-12-01")],
    "R10": [nce(buy("microsoft_direct"), "2026-12-01"), rel()],
}
"""What each rule after R2 holds on, under an account partner in CSP (an Azure Expert MSP: E1 and E2 need one,
and the others do not look at it)."""
LATER = ["R3", "R4", "R5", "T1", "T2", "T3", "R6", "R7", "E1", "E2", "R8", "R9", "R10"]


def _in_csp(rule: str) -> list[Any]:
    return msp(*LOSER_BODY[rule])


CUSTOMER_IN_CSP = partner("C1", "csp_indirect_provider")
THIRD_PARTY_BODY: dict[str, list[Any]] = {
    "T1": [nce(buy("third_party", seller="P2")), rel()],
    "T2": [nce(buy("third_party", seller="P2"))],
    "T3": [buy("third_party", "usage", seller="P2")],
}
"""T1-T3 on a `third_party` purchase from P2: held by another CSP partner while P2 is in CSP, R4 when P2 is a
syndication partner (a `csp` channel purchase is held by another CSP partner whatever its seller's program)."""

PRECEDENCE = [
    *[
        Precedence("R1", loser, "customer-in-csp", [CUSTOMER_IN_CSP, *_in_csp(loser)], _in_csp(loser))
        for loser in LATER
    ],
    Precedence(
        "R1",
        "R2",
        "customer-in-csp",
        [CUSTOMER_IN_CSP, partner("P1", "none"), nce(other_csp())],
        [partner("P1", "none"), nce(other_csp())],
    ),
    *[
        Precedence("R2", loser, "partner-out-of-csp", [expert("P1", "advisor"), *LOSER_BODY[loser]], _in_csp(loser))
        for loser in LATER
    ],
    Precedence("R3", "R5", "own-nce-sale-cancelled", msp(*LOSER_BODY["R3"], cancel()), _in_csp("R5")),
    Precedence("R3", "T1", "own-nce-sale", _in_csp("R3"), _in_csp("T1")),
    Precedence("R3", "T2", "own-nce-sale", msp(nce(buy("csp", seller="P1"))), _in_csp("T2")),
    Precedence("R3", "T3", "own-azure-sale", msp(buy("csp", "usage", seller="P1")), _in_csp("T3")),
    Precedence("R4", "R5", "syndication-cancelled", msp(*LOSER_BODY["R4"], cancel()), _in_csp("R5")),
    *[
        Precedence(
            "R4",
            loser,
            "syndication-seller",
            [partner("P2", "syndication"), *msp(*body)],
            [partner("P2", "csp_direct"), *msp(*body)],
        )
        for loser, body in THIRD_PARTY_BODY.items()
    ],
    *[
        Precedence(
            "R5",
            loser,
            "term-ended",
            msp(*LOSER_BODY[loser]),
            msp(*LOSER_BODY[loser]),
            as_of="2027-01-01T00:00:00Z",
        )
        for loser in ("T1", "T2", "R7", "R9", "R10")
    ],
    *[
        Precedence("R5", loser, "cancelled", msp(*LOSER_BODY[loser], cancel()), _in_csp(loser))
        for loser in ("T3", "R6", "E1", "E2", "R8")
    ],
    Precedence("T1", "R7", "nce-not-legacy", _in_csp("T1"), msp(other_csp(), rel())),
    Precedence("T2", "R7", "nce-not-legacy", _in_csp("T2"), msp(dict(other_csp(), commerce="legacy"))),
    Precedence("T3", "R6", "no-relationship", _in_csp("T3"), _in_csp("R6")),
    Precedence("E1", "R8", "expert-msp", _in_csp("E1"), direct(*LOSER_BODY["E1"])),
    Precedence("E2", "R8", "expert-msp", _in_csp("E2"), direct(*LOSER_BODY["E2"])),
]

ORDER = ["R1", "R2", *LATER]
OVERLAPPING = {
    *(("R1", loser) for loser in ORDER[1:]),
    *(("R2", loser) for loser in LATER if loser not in {"E1", "E2"}),
    ("R3", "R5"),
    ("R4", "R5"),
    *(("R5", loser) for loser in LATER[3:]),
    ("T1", "R7"),
    ("T2", "R7"),
    ("T3", "R6"),
    ("E1", "R8"),
    ("E2", "R8"),
}
"""The pairs of `current` whose conditions can hold at once. R1, R2 and R5 as in `seed`; T1 and T2 take the NCE
licenses that `seed`'s R7 condition (license, held by another CSP partner) holds on too, which is why `current`'s
R7 reads "commerce = legacy"; T3 takes the Azure without relationship of R6's condition; E1 and E2 take some of
R8's usage-based M1 subscriptions."""
NEIGHBOURS = {
    ("R2", "E1"),
    ("R2", "E2"),
    *(("R3", t) for t in ("T1", "T2", "T3")),
    *(("R4", t) for t in ("T1", "T2", "T3")),
}
"""Pairs that never hold at once but sit close: E1 and E2 want `csp_direct`, which R2 never lets through (an
Azure Expert MSP mark on a partner out of CSP is R2); "held by another CSP partner" excludes the account partner
(R3) and a syndication seller (R4). The rows show the earlier rule keeps them."""


@pytest.mark.parametrize("row", PRECEDENCE, ids=[p.id for p in PRECEDENCE])
def test_the_first_matching_rule_wins(row: Precedence) -> None:
    """With both rules' conditions met the earlier rule decides; without the earlier one's, the later does."""
    assert final(run(row.both, row.as_of)).rule == row.winner
    assert final(run(row.loser_alone)).rule == row.loser


def test_every_overlapping_pair_of_rules_has_a_precedence_row() -> None:
    """The precedence rows cover each pair of `current` rules that can both hold, and the neighbours, only."""
    assert {(p.winner, p.loser) for p in PRECEDENCE} == OVERLAPPING | NEIGHBOURS
    assert all(ORDER.index(w) < ORDER.index(loser) for w, loser in OVERLAPPING | NEIGHBOURS)


# ------------------------------------------------------------------------------------------- the window timer


def timer_records(records: list[OutputRecord]) -> list[OutputRecord]:
    return [r for r in records if r.caused_by_event_id is None]


def test_window_end_is_a_timer_stamped_at_the_window_end_with_no_cause_emitted_once() -> None:
    """When an NCE window closes under R10 the decision is emitted once, at 00:00 UTC of the day after its
    last day, with no cause and WAIT_FOR_TERM_END; the status (counts unchanged) is not re-emitted."""
    records = run(direct(nce(buy("open"), "2026-06-30"), rel()), as_of="2026-12-31T00:00:00Z")
    fired = timer_records(records)
    assert [(type(r).__name__, r.decided_at) for r in fired] == [("SubscriptionDecision", utc("2026-07-01T00:00:00Z"))]
    d = decisions(fired)[0]
    assert (d.rule, list(d.next_actions), d.rulebook_version) == ("R10", SUPPORT + WAIT_END, VERSION)


def test_window_timer_fires_before_an_event_at_its_instant() -> None:
    """An event at the window's end comes after the timer: the timer's record first, then the event's."""
    at = "2026-07-01T00:00:00Z"
    records = run(direct(nce(buy("open"), "2026-06-30"), rel(), buy("open", sid="S2", at=at, eid="at-end")))
    tail = [(getattr(r, "subscription_id", None), r.caused_by_event_id, r.decided_at) for r in records[-3:]]
    assert tail == [("S1", None, utc(at)), ("S2", "at-end", utc(at)), (None, "at-end", utc(at))]
    assert list(final(records).next_actions) == SUPPORT + WAIT_END


@pytest.mark.parametrize(
    "events",
    [
        direct(rel(at="2026-02-01T00:00:00Z"), nce(buy("open"), "2026-02-28")),
        direct(
            nce(buy("open"), "2026-12-15"), rel(), renew("2028-01-01", at="2026-04-01T00:00:00Z", until="2026-03-31")
        ),
        direct(rel(), rel(at="2026-05-01T00:00:00Z", cid="C9"), nce(buy("open"), "2026-03-10")),
    ],
    ids=["purchase", "renewal", "purchase-arriving-after-the-clock-passed-its-window"],
)
def test_a_window_already_past_when_applied_takes_effect_at_once_without_a_timer_record(events: list[Any]) -> None:
    """A window that had closed when its purchase (or renewal) is applied gives WAIT_FOR_TERM_END in the event's
    own record; no record is made later for the instant that had passed."""
    records = run(events, as_of="2026-12-31T00:00:00Z")
    assert timer_records(records) == []
    assert list(final(records).next_actions) == SUPPORT + WAIT_END
    assert final(records).caused_by_event_id == events[-1]["event_id"]


def test_a_window_closing_at_its_term_end_gives_one_record_r5() -> None:
    """A window whose end is its term's end: one evaluation at that instant, which R5 decides."""
    records = run(direct(nce(buy("open", term_end="2026-07-01"), "2026-06-30"), rel()), as_of="2026-12-31T00:00:00Z")
    fired = decisions(timer_records(records))
    assert [(d.rule, d.reason, d.decided_at) for d in fired] == [("R5", "TERM_ENDED", utc("2026-07-01T00:00:00Z"))]


def test_a_renewal_moves_the_window_timer() -> None:
    """A renewal before the window closes replaces the window: nothing fires at the old end, one record at the
    new one (the renewed term's last cancellation day, inclusive)."""
    events = direct(
        nce(buy("open"), "2026-04-30"), rel(), renew("2028-01-01", at="2026-04-15T00:00:00Z", until="2027-01-31")
    )
    fired = timer_records(run(events, as_of="2027-12-01T00:00:00Z"))
    assert [(r.decided_at, list(r.next_actions)) for r in decisions(fired)] == [
        (utc("2027-02-01T00:00:00Z"), SUPPORT + WAIT_END)
    ]


def test_a_renewal_without_window_closes_it_at_once_and_cancels_the_timer() -> None:
    """A renewal without cancellation_allowed_until closes the window in its own record; nothing fires at the
    old window's end."""
    events = direct(nce(buy("open"), "2026-12-15"), rel(), renew("2028-01-01", at="2026-04-01T00:00:00Z", eid="rn"))
    records = run(events, as_of="2027-06-01T00:00:00Z")
    assert timer_records(records) == []
    d = final(records)
    assert (d.caused_by_event_id, list(d.next_actions), d.blocked_until) == (
        "rn",
        SUPPORT + WAIT_END,
        day("2028-01-01"),
    )


def test_window_end_under_r9_and_t_rules_changes_nothing() -> None:
    """R9, T1 and T2 do not read the window: its end emits nothing for them."""
    events = direct(
        nce(buy("open"), "2026-06-30"),
        nce(other_csp(sid="S2"), "2026-06-30"),
        nce(other_csp(sid="S3", cid="C2"), "2026-06-30"),
        rel(cid="C2"),
    )
    assert timer_records(run(events, as_of="2026-12-31T00:00:00Z")) == []


def test_a_cancelled_nce_subscription_has_no_window_timer() -> None:
    """Cancellation is final: the window of a cancelled NCE subscription fires nothing."""
    events = direct(nce(buy("open"), "2026-06-30"), rel(), cancel())
    assert timer_records(run(events, as_of="2026-12-31T00:00:00Z")) == []


def test_seed_ignores_the_window() -> None:
    """Under `seed` an NCE window and its end change nothing: R10 keeps WAIT_FOR_TERM_END_OR_CANCELLATION."""
    records = classify(direct(nce(buy("open"), "2026-03-10"), rel()), as_of="2026-12-31T00:00:00Z", rulebook=SEED)
    assert timer_records(records) == []
    assert list(final(records).next_actions) == SUPPORT + WAIT_OR_CANCEL


# ------------------------------------------------------------------------------------------- GDAP expiry


def test_gdap_expiry_is_a_timer_at_expires_at_for_r9_t2_t3_only() -> None:
    """When a reseller's GDAP expires, its R9, T2 and T3 decisions are emitted again with
    REQUEST_DELEGATED_ADMIN_FOR_RESELLER, stamped at expires_at with no cause, in subscription_id order; R7 and
    R8 are not; the status (counts unchanged) is not."""
    expires = "2026-05-01T12:34:56.789Z"
    events = reseller(
        ("D1",),
        buy("open"),
        nce(other_csp(sid="S2")),
        other_csp("usage", sid="S3"),
        other_csp(sid="S4"),
        buy("microsoft_direct", "usage", sid="S5"),
        grant(expires=expires),
    )
    fired = timer_records(run(events, as_of="2026-06-01T00:00:00Z"))
    assert all(r.decided_at == utc(expires) for r in fired)
    assert [(d.subscription_id, d.rule, list(d.next_actions)) for d in decisions(fired)] == [
        ("S1", "R9", INVITE + DA),
        ("S2", "T2", INVITE + DA + TRANSFER),
        ("S3", "T3", INVITE + DA + AZURE_SWITCH),
    ]
    assert statuses(fired) == []


def test_gdap_expiry_under_a_relationship_re_emits_r10_not_t1_or_r6() -> None:
    """With a relationship, the expiry re-emits R10 (DA action back); T1 and R6 carry no delegated-admin
    action and stay as they were."""
    events = reseller(
        ("D1",),
        buy("open"),
        nce(other_csp(sid="S2")),
        other_csp("usage", sid="S3"),
        rel(),
        grant(expires="2026-05-01T00:00:00Z"),
    )
    fired = decisions(timer_records(run(events, as_of="2026-06-01T00:00:00Z")))
    assert [(d.subscription_id, d.rule, list(d.next_actions)) for d in fired] == [
        ("S1", "R10", SUPPORT + WAIT_OR_CANCEL + DA)
    ]


def test_gdap_expiry_of_a_direct_partner_emits_nothing() -> None:
    """Delegated admin is for a reseller: a direct partner's expiring grant changes no decision."""
    events = direct(buy("open"), other_csp("usage", sid="S2"), grant(expires="2026-05-01T00:00:00Z"))
    assert timer_records(run(events, as_of="2026-06-01T00:00:00Z")) == []


@pytest.mark.parametrize(
    ("later", "fires_at"),
    [
        (grant(at="2026-04-01T00:00:00Z", expires="2026-08-01T00:00:00Z"), ["2026-08-01T00:00:00Z"]),
        (grant(at="2026-04-01T00:00:00Z"), []),
        (grant(at="2026-03-01T00:00:00Z"), ["2026-05-01T00:00:00Z"]),
        (grant(at="2026-03-01T00:00:00Z", expires="2026-04-01T00:00:00Z"), ["2026-05-01T00:00:00Z"]),
        (account("delegated_admin_revoked", at="2026-04-01T00:00:00Z"), []),
    ],
    ids=["extended", "newer-grant-without-end", "older-grant", "older-grant-ending-sooner", "revoked"],
)
def test_an_expiry_ends_only_its_own_grant(later: dict[str, Any], fires_at: list[str]) -> None:
    """A newer grant replaces the expiring one (its own end, or none), an older grant changes nothing, a newer
    revocation takes the delegated admin at once: the timer records are those of the grant in force."""
    events = reseller(("D1",), buy("open"), grant(expires="2026-05-01T00:00:00Z"), later)
    fired = timer_records(run(events, as_of="2026-12-01T00:00:00Z"))
    assert [r.decided_at for r in fired] == [utc(t) for t in fires_at]
    assert all(list(d.next_actions) == INVITE + DA for d in decisions(fired))


@pytest.mark.parametrize("expires", ["2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z"], ids=["before", "at-the-grant"])
def test_a_grant_already_expired_when_applied_changes_nothing_and_fires_nothing(expires: str) -> None:
    """A grant whose expires_at is not after the clock when it is applied gives no delegated admin: it emits
    nothing (the decision already asks for it), and no record comes later for the passed instant."""
    events = reseller(("D1",), buy("open"), grant(at="2026-03-05T00:00:00Z", expires=expires, eid="late-grant"))
    records = run(events, as_of="2026-12-01T00:00:00Z")
    assert [r for r in records if r.caused_by_event_id == "late-grant"] == []
    assert timer_records(records) == []
    assert list(final(records).next_actions) == INVITE + DA


@pytest.mark.parametrize(
    ("expires", "records_of_the_grant", "fired"),
    [("2026-04-01T00:00:00Z", 0, []), ("2026-06-01T00:00:00Z", 1, ["2026-06-01T00:00:00Z"])],
    ids=["expired-before-the-clock", "expiring-after-the-clock"],
)
def test_a_grant_arriving_after_the_clock_moved_on_reads_its_expiry_at_that_clock(
    expires: str, records_of_the_grant: int, fired: list[str]
) -> None:
    """A grant that occurred before the clock (moved on by another account's event) has delegated admin only if
    its expiry is still ahead: an expiry already passed takes effect at once, with no record and no timer."""
    events = reseller(
        ("D1",), buy("open"), rel(at="2026-05-01T00:00:00Z", cid="C9"), grant(expires=expires, eid="late-grant")
    )
    records = run(events, as_of="2026-12-01T00:00:00Z")
    assert len([r for r in records if r.caused_by_event_id == "late-grant"]) == records_of_the_grant
    assert [r.decided_at for r in timer_records(records)] == [utc(t) for t in fired]
    assert list(final(records).next_actions) == INVITE + DA


def test_seed_ignores_expires_at() -> None:
    """DAP did not expire: under `seed` the grant holds past expires_at."""
    events = reseller(("D1",), buy("open"), grant(expires="2026-05-01T00:00:00Z"))
    records = classify(events, as_of="2026-12-01T00:00:00Z", rulebook=SEED)
    assert timer_records(records) == []
    assert list(final(records).next_actions) == [
        "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER",
        "SEND_PROVIDER_INVITATION_TO_CUSTOMER",
    ]


def test_timers_of_one_account_at_one_instant_evaluate_it_once() -> None:
    """A GDAP expiry, a window end and a term end of one account at one instant: one evaluation, each changed
    decision once (S1 moves to WAIT_FOR_TERM_END and regains the DA action in one record), then one status."""
    at = "2026-07-01T00:00:00Z"
    events = reseller(
        ("D1",),
        nce(buy("open"), "2026-06-30"),
        buy("open", sid="S2", term_end="2026-07-01"),
        rel(),
        grant(expires=at),
    )
    fired = timer_records(run(events, as_of="2026-08-01T00:00:00Z"))
    assert [(getattr(r, "subscription_id", None), r.decided_at) for r in fired] == [
        ("S1", utc(at)),
        ("S2", utc(at)),
        (None, utc(at)),
    ]
    s1, s2 = decisions(fired)
    assert (s1.rule, list(s1.next_actions)) == ("R10", SUPPORT + WAIT_END + DA)
    assert (s2.rule, s2.reason) == ("R5", "TERM_ENDED")
    assert statuses(fired)[0].decision_counts == {BLOCKED: 1, SWITCH: 1}


def test_timers_at_one_instant_go_by_account_and_an_expiry_sorts_with_its_account() -> None:
    """Timers due at one instant fire in (partner_id, customer_id) order whatever their kind: an account's GDAP
    expiry sorts before its own subscription timers and with its account among the others; earlier deadlines
    first."""
    at = "2026-07-01T00:00:00Z"
    events = [
        partner("P0", "csp_direct"),
        *reseller(("D1",)),
        buy("open", pid="P1", cid="C2", sid="S0", term_end="2026-07-01"),
        buy("open", pid="P1", cid="C1", sid="S9"),
        grant(pid="P1", cid="C1", expires=at),
        nce(buy("open", pid="P0", cid="C3", sid="S5"), "2026-06-30"),
        rel(pid="P0", cid="C3"),
        buy("open", pid="P1", cid="C4", sid="S1", term_end="2026-06-01"),
    ]
    fired = timer_records(run(events, as_of="2026-08-01T00:00:00Z"))
    assert [(r.partner_id, r.customer_id, getattr(r, "subscription_id", None), r.decided_at) for r in fired] == [
        ("P1", "C4", "S1", utc("2026-06-01T00:00:00Z")),
        ("P1", "C4", None, utc("2026-06-01T00:00:00Z")),
        ("P0", "C3", "S5", utc(at)),
        ("P1", "C1", "S9", utc(at)),
        ("P1", "C2", "S0", utc(at)),
        ("P1", "C2", None, utc(at)),
    ]


def test_decided_at_never_goes_backwards_across_timers_and_events() -> None:
    """Term ends, window ends and GDAP expiries interleaved with events: decided_at never decreases."""
    events = reseller(
        ("D1",),
        nce(buy("open", term_end="2026-09-01"), "2026-04-30"),
        rel(),
        grant(expires="2026-05-15T06:00:00Z"),
        nce(buy("open", sid="S2", at="2026-05-20T00:00:00Z"), "2026-06-10"),
        renew("2027-09-01", at="2026-08-01T00:00:00Z", until="2026-08-31"),
        grant(at="2026-08-15T00:00:00Z", expires="2026-10-01T00:00:00Z"),
    )
    times = [r.decided_at for r in run(events, as_of="2027-12-01T00:00:00Z")]
    assert times == sorted(times)
    assert len(timer_records(run(events, as_of="2027-12-01T00:00:00Z"))) >= 5


# ------------------------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("events", "status", "counts"),
    [
        (msp(*_ea(rel())), "MULTICHANNEL", {SWITCH: 1}),
        (msp(*_ea()), "MULTICHANNEL", {ELIGIBLE: 1}),
        (direct(nce(other_csp()), rel()), "SINGLE_CHANNEL", {SWITCH: 1}),
        (direct(nce(other_csp())), "SINGLE_CHANNEL", {ELIGIBLE: 1}),
        (direct(other_csp("usage")), "SINGLE_CHANNEL", {ELIGIBLE: 1}),
        (
            direct(nce(other_csp()), other_csp("usage", sid="S2"), other_csp(sid="S3")),
            "SINGLE_CHANNEL",
            {ELIGIBLE: 2, BLOCKED: 1},
        ),
        (msp(*_ea(), nce(other_csp(sid="S2"))), "MULTICHANNEL", {ELIGIBLE: 2}),
        (msp(*_ea(rel(), cancel())), "SINGLE_CHANNEL", {SWITCH: 1}),
        ([partner("C1", "csp_direct"), *msp(*_ea())], "NOT_ELIGIBLE", {"RESALE_NOT_PERMITTED": 1}),
    ],
    ids=["E1", "E2", "T1", "T2", "T3", "T-and-R7-only", "E2-beside-T2", "E1-cancelled", "R1"],
)
def test_customer_status_counts_e1_e2_as_multichannel_and_t1_t3_not(
    events: list[Any], status: str, counts: dict[str, int]
) -> None:
    """E1 and E2 make the account MULTICHANNEL (they are M1 subscriptions); T1-T3, like R6 and R7, do not."""
    s = final_status(run(events))
    assert (s.status, s.decision_counts, s.rulebook_version) == (status, counts, VERSION)


def test_losing_the_expert_mark_re_classifies_the_account() -> None:
    """A later partner event without azure_expert_msp makes it false: E2 becomes R8, emitted with the partner
    event as cause; the account stays MULTICHANNEL with new counts."""
    records = run(msp(*_ea(), partner("P1", "csp_direct", at="2026-04-01T00:00:00Z", eid="drop-mark")))
    moved = [r for r in records if r.caused_by_event_id == "drop-mark"]
    assert [getattr(r, "rule", None) for r in moved] == ["R8", None]
    assert (statuses(moved)[0].status, statuses(moved)[0].decision_counts) == (
        "MULTICHANNEL",
        {"MIGRATION_REQUIRED": 1},
    )


# ------------------------------------------------------------------------------------------- arrival order


def test_arrival_order_does_not_change_final_decisions() -> None:
    """**[choice]** Every arrival order of an NCE purchase with its window, a renewal with its own window, a
    relationship, two GDAP grants, a partner event and another account's later event (the clock passes the
    first window and the first expiry before some of them arrive) ends in the same final decisions."""
    events = [
        rel(at="2026-05-01T00:00:00Z", cid="C9"),
        partner("P1", "csp_indirect_reseller", ("D1",), at="2026-02-01T00:00:00Z"),
        nce(buy("open", at="2026-03-01T00:00:00Z"), "2026-03-20"),
        renew("2028-01-01", at="2026-03-10T00:00:00Z", until="2026-06-30"),
        rel(at="2026-03-02T00:00:00Z"),
        grant(at="2026-03-03T00:00:00Z", expires="2026-04-01T00:00:00Z"),
        grant(at="2026-03-04T00:00:00Z", expires="2026-09-01T00:00:00Z"),
    ]
    finals = set()
    for order in itertools.permutations(events):
        records = run(list(order), as_of="2026-08-01T00:00:00Z")
        d = final(records)
        finals.add((d.rule, d.reason, d.next_actions, d.blocked_until, d.relationship_via_partner_ids))
    assert finals == {("R10", NOT_SWITCHABLE, tuple(SUPPORT + WAIT_END), day("2028-01-01"), ("D1",))}


# ------------------------------------------------------------------------------------------- the two books


def _without_version(records: list[OutputRecord]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        d = r.to_dict()
        d.pop("rulebook_version")
        out.append(d)
    return out


def _involves_t3_or_reseller_invitation(records: list[OutputRecord]) -> bool:
    return any(d.rule == "T3" or "SEND_RESELLER_INVITATION_TO_CUSTOMER" in d.next_actions for d in decisions(records))


SEED_ROWS = [(c.id, c.events, c.as_of) for c in SEED_CASES]
SEED_ROWS += [(f"{p.id}-both", p.both, p.as_of) for p in SEED_PRECEDENCE]
SEED_ROWS += [(f"{p.id}-alone", p.loser_alone, None) for p in SEED_PRECEDENCE]


@pytest.mark.parametrize(("events", "as_of"), [(e, a) for _i, e, a in SEED_ROWS], ids=[i for i, _e, _a in SEED_ROWS])
def test_without_the_new_fields_current_is_seed_but_for_t3_and_reseller_invitations(
    events: list[Any], as_of: str | None
) -> None:
    """On every `seed` row (no new field), `current` emits the same records as `seed` but for rulebook_version,
    except on rows where T3 or the reseller's own invitation applies."""
    seed, current = classify(events, as_of, rulebook=SEED), run(events, as_of)
    assert {r.rulebook_version for r in current} == {VERSION}
    if not _involves_t3_or_reseller_invitation(current):
        assert _without_version(current) == _without_version(seed)


def test_the_seed_rows_that_differ_in_current_are_t3_and_reseller_invitations() -> None:
    """The `seed` rows on which `current` differs are exactly those whose seed records have an R6 without
    relationship or a reseller's R9 with providers, and some do (the comparison above is not vacuous)."""
    differ = [
        i for i, e, a in SEED_ROWS if _without_version(run(e, a)) != _without_version(classify(e, a, rulebook=SEED))
    ]
    involve = [i for i, e, a in SEED_ROWS if _involves_t3_or_reseller_invitation(run(e, a))]
    assert differ == involve
    assert len(differ) >= 5
    assert len(SEED_ROWS) - len(differ) > 80


def _strip_new_fields(events: list[Any]) -> list[Any]:
    return [{k: v for k, v in e.items() if k not in NEW_FIELDS} for e in events]


NEW_FIELD_ROWS = [c for c in CASES if any(k in e for e in c.events for k in NEW_FIELDS)]


@pytest.mark.parametrize("case", NEW_FIELD_ROWS, ids=[c.id for c in NEW_FIELD_ROWS])
def test_seed_ignores_every_new_field(case: Case) -> None:
    """`seed` emits the same records with and without contract 1.1's fields (commerce, windows, expires_at,
    azure_expert_msp) on every `current` row that carries one."""
    with_fields = classify(case.events, case.as_of, rulebook=SEED)
    assert [r.to_dict() for r in with_fields] == [
        r.to_dict() for r in classify(_strip_new_fields(case.events), case.as_of)
    ]
    assert {r.rulebook_version for r in with_fields} == {"2026-11.1"}


INVALID = [
    (dict(buy("open"), commerce="modern"), "commerce-unknown"),
    (dict(buy("open"), commerce="NCE"), "commerce-upper-case"),
    (dict(buy("open"), commerce=1), "commerce-not-a-string"),
    (dict(buy("csp", "usage", seller="P2"), commerce="modern"), "commerce-unknown-on-usage"),
    (dict(buy("open"), cancellation_allowed_until="2026-13-01"), "window-month-13"),
    (dict(buy("open"), cancellation_allowed_until="2026-06-30T00:00:00Z"), "window-a-timestamp"),
    (dict(buy("open"), cancellation_allowed_until=20260630), "window-a-number"),
    (dict(buy("csp", "usage", seller="P2"), cancellation_allowed_until="30/06/2026"), "window-bad-on-usage"),
    (renew("2028-01-01") | {"cancellation_allowed_until": "2026-02-30"}, "renewal-window-no-such-day"),
    (renew("2028-01-01") | {"cancellation_allowed_until": True}, "renewal-window-a-boolean"),
    (dict(partner("P9", "csp_direct"), azure_expert_msp="yes"), "expert-a-string"),
    (dict(partner("P9", "csp_direct"), azure_expert_msp=1), "expert-a-number"),
    (grant() | {"expires_at": "2026-05-01"}, "expires-a-date"),
    (grant() | {"expires_at": "soon"}, "expires-not-a-timestamp"),
    (grant() | {"expires_at": 1_777_000_000}, "expires-a-number"),
]


@pytest.mark.parametrize("event", [e for e, _i in INVALID], ids=[i for _e, i in INVALID])
def test_an_invalid_new_field_is_invalid_field(event: dict[str, Any]) -> None:
    """A new field of the wrong type, a commerce other than legacy or nce, or a date or timestamp that does not
    parse is refused with INVALID_FIELD and a message."""
    with pytest.raises(InvalidEvent) as refused:
        parse_event(event)
    assert refused.value.reason == "INVALID_FIELD"
    assert refused.value.message


def test_both_books_dead_letter_an_invalid_new_field_alike() -> None:
    """Through `classify` lines, each invalid new field is a dead letter INVALID_FIELD under `seed` and
    `current` alike, and the valid lines around them are still classified."""
    good = [partner("P1", "csp_direct"), buy("open", sid="S-ok")]
    lines = [orjson.dumps(e) for e in (*good, *(e for e, _i in INVALID))]
    outs = {}
    for book in (SEED, CURRENT):
        out = io.BytesIO()
        classify_stream(lines, out, engine=Classifier(transactional=False, rulebook=book))
        outs[book.name] = [orjson.loads(line) for line in out.getvalue().splitlines()]
    dead = {
        name: [(r["line"], r["reason"]) for r in out if r["record_type"] == "dead_letter"] for name, out in outs.items()
    }
    assert dead["seed"] == dead["current"] == [(n, "INVALID_FIELD") for n in range(3, 3 + len(INVALID))]
    assert all(any(r.get("subscription_id") == "S-ok" for r in out) for out in outs.values())
