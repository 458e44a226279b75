"""The rule book, row by row, against the core: every row is named after the rule it ends in (the pytest
id is the rule id and a short label) and asserts the final decision of subscription S1.

The rows feed events to `multichannel.parse.parse_event` and `multichannel.engine.Classifier` directly
(`tests/unit/core_driver.py`), under the rule book's event-time clock; the JSON lines of `classify`
have their own tests (`test_classify_lines.py`). Beside the rows: the order of precedence (first
match wins), pair by pair, every **[choice]** of the rule book, customer status, emission and
dead-letter reasons.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from multichannel.errors import InvalidEvent
from multichannel.model import RULEBOOK_VERSION, Rule
from multichannel.parse import parse_event
from tests.unit.core_driver import classify, day, decisions, final, final_status, statuses

T0 = "2026-01-01T00:00:00Z"
_seq = iter(range(1, 1_000_000))


def _id() -> str:
    return f"e{next(_seq):06d}"


def partner(
    pid: str, program: str, providers: tuple[str, ...] = (), at: str = T0, eid: str | None = None
) -> dict[str, Any]:
    return {
        "event_type": "partner_program_changed",
        "event_id": eid or _id(),
        "occurred_at": at,
        "partner_id": pid,
        "program": program,
        "indirect_provider_ids": list(providers),
    }


def buy(
    channel: str,
    billing: str = "license",
    seller: str | None = None,
    sid: str = "S1",
    pid: str = "P1",
    cid: str = "C1",
    at: str = "2026-03-01T09:00:00Z",
    term_start: str = "2026-01-01",
    term_end: str = "2027-01-01",
    eid: str | None = None,
    offer: str = "O365-E3",
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "event_type": "subscription_purchased",
        "event_id": eid or _id(),
        "occurred_at": at,
        "partner_id": pid,
        "customer_id": cid,
        "subscription_id": sid,
        "offer_id": offer,
        "billing_model": billing,
        "channel": channel,
    }
    if seller is not None:
        e["seller_partner_id"] = seller
    if billing == "license":
        e.update(quantity=5, term_start=term_start, term_end=term_end)
    return e


def account(
    kind: str, at: str = "2026-03-02T00:00:00Z", pid: str = "P1", cid: str = "C1", **more: Any
) -> dict[str, Any]:
    return {
        "event_type": kind,
        "event_id": more.pop("eid", None) or _id(),
        "occurred_at": at,
        "partner_id": pid,
        "customer_id": cid,
        **more,
    }


NONE: list[str] = []
WAIT = ["WAIT_FOR_TERM_END_OR_CANCELLATION"]
R8_ACTIONS = [
    "CREATE_CSP_AZURE_SUBSCRIPTION",
    "PORT_DATA_AND_SETTINGS",
    "CUSTOMER_CANCELS_OLD_SUBSCRIPTION",
    "CHECK_SERVICE_AVAILABILITY_IN_CSP",
]
RESELLER_R9 = ["OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER", "SEND_PROVIDER_INVITATION_TO_CUSTOMER"]
DA = ["REQUEST_DELEGATED_ADMIN_FOR_RESELLER"]
R10 = ["SUPPORT_UNDER_RELATIONSHIP", "WAIT_FOR_TERM_END_OR_CANCELLATION"]
M1 = "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL"


CHOICES = {
    "absent-partner-is-none": "A partner absent from the partner table has program `none`.",
    "third-party-csp-seller-is-csp": "R7 (and R6): a `third_party` seller in CSP counts like channel `csp`.",
    "reseller-without-provider": "R9: a reseller with no provider gets RESELLER_WITHOUT_INDIRECT_PROVIDER.",
    "arrival-order": "Arrival order does not change the outcome (latest by occurred_at, then event_id).",
}
"""The rule book's **[choice]** marks, each named here and carried by at least one row."""


@dataclass
class Case:
    label: str
    events: list[Any]
    rule: str
    decision: str
    reason: str
    actions: list[str]
    blocked_until: str | None = None
    via: list[str] = field(default_factory=list)
    as_of: str | None = None
    choice: str | None = None

    @property
    def id(self) -> str:
        return f"{self.rule}-{self.label}"


def direct(*events: Any) -> list[Any]:
    return [partner("P1", "csp_direct"), *events]


def reseller(providers: tuple[str, ...], *events: Any) -> list[Any]:
    return [partner("P1", "csp_indirect_reseller", providers), *events]


CASES = [
    Case(
        "customer-is-csp-partner",
        [partner("C1", "csp_direct"), *direct(buy("microsoft_direct"))],
        "R1",
        "RESALE_NOT_PERMITTED",
        "CUSTOMER_IS_CSP_PARTNER",
        NONE,
        choice="reseller-without-provider",
    ),
    Case(
        "before-R3-even-when-sold-by-account-partner",
        [partner("C1", "csp_indirect_reseller"), *direct(buy("csp", seller="P1"))],
        "R1",
        "RESALE_NOT_PERMITTED",
        "CUSTOMER_IS_CSP_PARTNER",
        NONE,
    ),
    Case(
        "partner-not-in-csp",
        [partner("P1", "advisor"), buy("microsoft_direct")],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
    ),
    Case(
        "partner-absent-from-table-is-none",
        [buy("microsoft_direct")],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
        choice="absent-partner-is-none",
    ),
    Case(
        "csp-sold-by-account-partner",
        direct(buy("csp", seller="P1")),
        "R3",
        "ALREADY_MANAGED",
        "SOLD_BY_ACCOUNT_PARTNER",
        NONE,
    ),
    Case(
        "before-R5-cancelled",
        direct(buy("csp", seller="P1"), account("subscription_cancelled", subscription_id="S1")),
        "R3",
        "ALREADY_MANAGED",
        "SOLD_BY_ACCOUNT_PARTNER",
        NONE,
    ),
    Case("syndication-channel", direct(buy("syndication")), "R4", "NOT_APPLICABLE", "SYNDICATION_CHANNEL", NONE),
    Case(
        "third-party-syndication-seller",
        [partner("SY", "syndication"), *direct(buy("third_party", seller="SY"))],
        "R4",
        "NOT_APPLICABLE",
        "SYNDICATION_CHANNEL",
        NONE,
    ),
    Case(
        "subscription-cancelled",
        direct(buy("microsoft_direct"), account("subscription_cancelled", subscription_id="S1")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "usage-cancelled",
        direct(buy("csp", "usage", seller="P2"), account("subscription_cancelled", subscription_id="S1")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "cancellation-before-purchase",
        direct(
            account("subscription_cancelled", at="2026-02-01T00:00:00Z", subscription_id="S1"), buy("microsoft_direct")
        ),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "term-already-ended-at-purchase",
        direct(buy("microsoft_direct", term_start="2025-01-01", term_end="2026-02-01")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "TERM_ENDED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "term-ended-by-later-event",
        direct(
            buy("microsoft_direct", term_end="2026-06-01"),
            account("relationship_accepted", at="2026-07-01T00:00:00Z", cid="C9"),
        ),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "TERM_ENDED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "term-ended-by-as-of",
        direct(buy("microsoft_direct", term_end="2026-06-01")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "TERM_ENDED",
        ["OFFER_CSP_SUBSCRIPTION"],
        as_of="2026-06-01T00:00:00Z",
    ),
    Case(
        "cancelled-wins-over-term-ended",
        direct(buy("microsoft_direct", term_end="2026-06-01"), account("subscription_cancelled", subscription_id="S1")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
        as_of="2026-12-01",
    ),
    Case(
        "azure-csp-from-other-partner",
        direct(buy("csp", "usage", seller="P2")),
        "R6",
        "CSP_SWITCH_PERMITTED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        ["REQUEST_AZURE_PARTNER_SWITCH"],
    ),
    Case(
        "azure-third-party-csp-seller",
        [partner("P2", "csp_indirect_provider"), *direct(buy("third_party", "usage", seller="P2"))],
        "R6",
        "CSP_SWITCH_PERMITTED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        ["REQUEST_AZURE_PARTNER_SWITCH"],
    ),
    Case(
        "license-held-by-other-csp-partner",
        direct(buy("csp", seller="P2")),
        "R7",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        WAIT,
        "2027-01-01",
    ),
    Case(
        "license-third-party-csp-seller",
        [partner("P2", "csp_indirect_reseller"), *direct(buy("third_party", seller="P2"))],
        "R7",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        WAIT,
        "2027-01-01",
        choice="third-party-csp-seller-is-csp",
    ),
    Case(
        "usage-M1-microsoft-direct",
        direct(buy("microsoft_direct", "usage")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "usage-M3-non-csp-third-party",
        direct(buy("third_party", "usage", seller="X9")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "usage-M2-advisor-self",
        direct(buy("advisor", "usage", seller="P1")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    *[
        Case(
            f"M1-{channel}",
            direct(buy(channel)),
            "R9",
            "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
            M1,
            ["SEND_RELATIONSHIP_REQUEST"],
            "2027-01-01",
        )
        for channel in ("microsoft_direct", "open", "enterprise_agreement")
    ],
    Case(
        "M1-advisor-other-seller",
        direct(buy("advisor", seller="P7")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "M1-advisor-without-seller",
        direct(buy("advisor")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "M1-seller-ignored-for-microsoft-direct",
        direct(buy("microsoft_direct", seller="P1")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "M2-purchased-from-partner-as-advisor",
        direct(buy("advisor", seller="P1")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "PURCHASED_FROM_PARTNER_AS_ADVISOR",
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "M3-non-csp-third-party",
        [partner("X9", "advisor"), *direct(buy("third_party", seller="X9"))],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "PURCHASED_FROM_NON_CSP_THIRD_PARTY",
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "indirect-provider-sends-request",
        [partner("P1", "csp_indirect_provider"), buy("open")],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "reseller-with-providers",
        reseller(("D2", "D1"), buy("open")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9 + DA,
        "2027-01-01",
        ["D2", "D1"],
    ),
    Case(
        "reseller-provider-named-twice-listed-once",
        reseller(("D2", "D1", "D2"), buy("open")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9 + DA,
        "2027-01-01",
        ["D2", "D1"],
    ),
    Case(
        "reseller-with-delegated-admin",
        reseller(("D1",), buy("open"), account("delegated_admin_granted")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9,
        "2027-01-01",
        ["D1"],
    ),
    Case(
        "reseller-delegated-admin-revoked",
        reseller(
            ("D1",),
            buy("open"),
            account("delegated_admin_granted"),
            account("delegated_admin_revoked", at="2026-03-03T00:00:00Z"),
        ),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9 + DA,
        "2027-01-01",
        ["D1"],
    ),
    Case(
        "reseller-without-provider",
        reseller((), buy("open")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "RESELLER_WITHOUT_INDIRECT_PROVIDER",
        ["LINK_INDIRECT_PROVIDER"],
        "2027-01-01",
    ),
    Case(
        "relationship-ended",
        direct(buy("open"), account("relationship_accepted"), account("relationship_ended", at="2026-03-05T00:00:00Z")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "renewal-moves-blocked-until",
        direct(buy("open"), account("subscription_renewed", subscription_id="S1", term_end="2028-01-01")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2028-01-01",
        as_of="2027-06-01",
    ),
    Case(
        "renewal-before-purchase-applied-on-purchase",
        direct(
            account("subscription_renewed", at="2026-03-05T00:00:00Z", subscription_id="S1", term_end="2028-01-01"),
            buy("open", at="2026-03-01T00:00:00Z"),
        ),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2028-01-01",
    ),
    Case(
        "renewal-arriving-first-with-an-earlier-time-applied-on-purchase",
        direct(
            account("subscription_renewed", at="2026-02-01T00:00:00Z", subscription_id="S1", term_end="2028-01-01"),
            buy("open", at="2026-03-01T00:00:00Z"),
        ),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2028-01-01",
    ),
    Case(
        "latest-renewal-wins-over-an-earlier-one-arriving-later",
        direct(
            buy("open"),
            account("subscription_renewed", at="2026-05-01T00:00:00Z", subscription_id="S1", term_end="2029-01-01"),
            account("subscription_renewed", at="2026-04-01T00:00:00Z", subscription_id="S1", term_end="2028-01-01"),
        ),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2029-01-01",
    ),
    Case(
        "renewal-revives-a-term-that-had-ended",
        direct(
            buy("open", term_end="2026-06-01"),
            account("subscription_renewed", at="2026-07-01T00:00:00Z", subscription_id="S1", term_end="2027-06-01"),
        ),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-06-01",
    ),
    Case(
        "later-second-purchase-replaces-attributes",
        direct(buy("open"), buy("open", at="2026-04-01T00:00:00Z", term_end="2029-01-01")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2029-01-01",
    ),
    Case(
        "older-second-purchase-changes-nothing",
        direct(buy("open", at="2026-04-01T00:00:00Z"), buy("csp", seller="P1", at="2026-03-01T00:00:00Z")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "relationship-accepted",
        direct(buy("open"), account("relationship_accepted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10,
        "2027-01-01",
    ),
    Case(
        "reseller-without-delegated-admin",
        reseller(("D1", "D2"), buy("open"), account("relationship_accepted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10 + DA,
        "2027-01-01",
        ["D1", "D2"],
    ),
    Case(
        "reseller-with-delegated-admin",
        reseller(("D1",), buy("open"), account("relationship_accepted"), account("delegated_admin_granted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10,
        "2027-01-01",
        ["D1"],
    ),
    Case(
        "relationship-ended-before-accepted-arrives-late",
        direct(
            buy("open"),
            account("relationship_ended", at="2026-03-09T00:00:00Z"),
            account("relationship_accepted", at="2026-03-02T00:00:00Z"),
        ),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "partner-change-account-partner-joins-csp",
        [partner("P1", "none"), buy("open"), partner("P1", "csp_direct", at="2026-04-01T00:00:00Z")],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "partner-change-seller-joins-csp",
        [
            partner("X9", "none"),
            *direct(buy("third_party", seller="X9")),
            partner("X9", "csp_direct", at="2026-04-01T00:00:00Z"),
        ],
        "R7",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        WAIT,
        "2027-01-01",
    ),
    Case(
        "relationship-changes-nothing",
        direct(buy("open", "usage"), account("relationship_accepted")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "reseller-without-provider-keeps-its-reason",
        reseller((), buy("open"), account("relationship_accepted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10 + DA,
        "2027-01-01",
    ),
    Case(
        "providers-of-a-direct-partner-ignored",
        [partner("P1", "csp_direct", ("D1",)), buy("open")],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "partner-change-seller-becomes-syndication",
        [
            partner("X9", "none"),
            *direct(buy("third_party", seller="X9")),
            partner("X9", "syndication", at="2026-04-01T00:00:00Z"),
        ],
        "R4",
        "NOT_APPLICABLE",
        "SYNDICATION_CHANNEL",
        NONE,
    ),
    Case(
        "partner-change-customer-becomes-csp",
        [*direct(buy("open")), partner("C1", "csp_direct", at="2026-04-01T00:00:00Z")],
        "R1",
        "RESALE_NOT_PERMITTED",
        "CUSTOMER_IS_CSP_PARTNER",
        NONE,
    ),
    Case(
        "partner-change-older-event-arriving-late-changes-nothing",
        [
            partner("P1", "csp_direct", at="2026-02-01T00:00:00Z"),
            buy("open"),
            partner("P1", "none", at="2026-01-01T00:00:00Z"),
        ],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
        choice="arrival-order",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_book_row(case: Case) -> None:
    """The row's events leave S1 with the rule, decision, reason, next actions, blocked_until and providers
    the rule book gives that rule."""
    d = final(classify(case.events, case.as_of))
    assert (d.rule, d.decision, d.reason) == (case.rule, case.decision, case.reason)
    assert list(d.next_actions) == case.actions
    assert d.blocked_until == day(case.blocked_until)
    assert list(d.relationship_via_partner_ids) == case.via
    assert d.rulebook_version == RULEBOOK_VERSION == "2026-11.1"


def test_every_rule_and_choice_of_the_rule_book_has_a_row() -> None:
    """Each of R1..R10 (the `seed` book's rules), each M condition and each **[choice]** mark is the subject of
    at least one row, and every row's id starts with the rule it ends in."""
    assert {c.rule for c in CASES} == {r.value for r in Rule if r.value.startswith("R")}
    assert {m for c in CASES for m in re.findall(r"\bM[1-3]\b", c.label)} == {"M1", "M2", "M3"}
    assert {c.choice for c in CASES if c.choice is not None} == set(CHOICES)
    assert len({c.id for c in CASES}) == len(CASES), "ids are unique"


@dataclass
class Precedence:
    """Two rules whose conditions hold together: `both` has them both and ends in `winner` (the earlier
    rule), `loser_alone` lifts the winner's condition and ends in `loser`, which shows it did hold."""

    winner: str
    loser: str
    label: str
    both: list[Any]
    loser_alone: list[Any]
    as_of: str | None = None

    @property
    def id(self) -> str:
        return f"{self.winner}-over-{self.loser}-{self.label}"


def _cancel(sid: str = "S1") -> dict[str, Any]:
    return account("subscription_cancelled", at="2026-03-03T00:00:00Z", subscription_id=sid)


# What each rule R2..R10 holds on, for an account partner in CSP (the bodies go after the partner event).
LOSER_BODY: dict[str, list[Any]] = {
    "R2": [buy("microsoft_direct")],  # under a partner out of CSP (see `_out_of_csp`)
    "R3": [buy("csp", seller="P1")],
    "R4": [buy("syndication")],
    "R5": [buy("microsoft_direct"), _cancel()],
    "R6": [buy("csp", "usage", seller="P2")],
    "R7": [buy("csp", seller="P2")],
    "R8": [buy("microsoft_direct", "usage")],
    "R9": [buy("microsoft_direct")],
    "R10": [buy("microsoft_direct"), account("relationship_accepted")],
}


def _out_of_csp(*events: Any) -> list[Any]:
    return [partner("P1", "advisor"), *events]


def _in_csp(rule: str) -> list[Any]:
    return _out_of_csp(*LOSER_BODY[rule]) if rule == "R2" else direct(*LOSER_BODY[rule])


CUSTOMER_IN_CSP = partner("C1", "csp_indirect_provider")

PRECEDENCE = [
    *[
        Precedence("R1", loser, "customer-in-csp", [CUSTOMER_IN_CSP, *_in_csp(loser)], _in_csp(loser))
        for loser in ("R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10")
    ],
    *[
        Precedence("R2", loser, "partner-out-of-csp", _out_of_csp(*LOSER_BODY[loser]), direct(*LOSER_BODY[loser]))
        for loser in ("R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10")
    ],
    Precedence(
        "R3",
        "R5",
        "own-csp-sale-cancelled",
        direct(buy("csp", seller="P1"), _cancel()),
        direct(buy("csp", seller="P2"), _cancel()),
    ),
    Precedence("R4", "R5", "syndication-cancelled", direct(buy("syndication"), _cancel()), direct(*LOSER_BODY["R5"])),
    Precedence("R5", "R6", "azure-cancelled", direct(*LOSER_BODY["R6"], _cancel()), _in_csp("R6")),
    Precedence(
        "R5",
        "R7",
        "term-ended",
        direct(buy("csp", seller="P2", term_end="2026-06-01")),
        direct(buy("csp", seller="P2", term_end="2026-06-01")),
        as_of="2026-06-01T00:00:00Z",
    ),
    Precedence("R5", "R8", "azure-cancelled", direct(*LOSER_BODY["R8"], _cancel()), _in_csp("R8")),
    Precedence(
        "R5",
        "R9",
        "term-ended",
        direct(buy("open", term_end="2026-06-01")),
        direct(buy("open", term_end="2026-06-01")),
        as_of="2026-06-01T00:00:00Z",
    ),
    Precedence("R5", "R10", "cancelled", direct(*LOSER_BODY["R10"], _cancel()), _in_csp("R10")),
]

OVERLAPPING = {
    *(("R1", f"R{n}") for n in range(2, 11)),
    *(("R2", f"R{n}") for n in range(3, 11)),
    ("R3", "R5"),
    ("R4", "R5"),
    *(("R5", f"R{n}") for n in range(6, 11)),
}
"""Every pair of rules whose conditions can hold at once. R1 (the customer) and R2 (the account
partner) look at the account alone, and R5 (the subscription ended) at its state alone, so they overlap
every later rule. The others are disjoint: R3 wants the account partner as seller, R6 and R7 another
CSP seller; R4 a syndication channel or seller, which no M condition and no CSP seller is; R6 and R8
are usage-based, R7, R9 and R10 license-based; R9 and R10 differ in the relationship."""


@pytest.mark.parametrize("row", PRECEDENCE, ids=[p.id for p in PRECEDENCE])
def test_the_first_matching_rule_wins(row: Precedence) -> None:
    """With both rules' conditions met the earlier rule decides; without the earlier one's, the later does."""
    assert final(classify(row.both, row.as_of)).rule == row.winner
    assert final(classify(row.loser_alone)).rule == row.loser


def test_every_overlapping_pair_of_rules_has_a_precedence_row() -> None:
    """The precedence rows cover each pair of rules that can both hold, and only those."""
    assert {(p.winner, p.loser) for p in PRECEDENCE} == OVERLAPPING


def test_arrival_order_does_not_change_final_decisions() -> None:
    """**[choice]** Every arrival order of two partner events, a purchase, its renewal and two relationship
    events ends in the same final decision: the latest of each by occurred_at wins."""
    events = [
        partner("P1", "none", at="2026-01-01T00:00:00Z"),
        partner("P1", "csp_indirect_reseller", ("D1",), at="2026-02-01T00:00:00Z"),
        buy("open", at="2026-03-01T00:00:00Z"),
        account("subscription_renewed", at="2026-03-05T00:00:00Z", subscription_id="S1", term_end="2028-01-01"),
        account("relationship_accepted", at="2026-03-02T00:00:00Z"),
        account("relationship_ended", at="2026-03-04T00:00:00Z"),
    ]
    finals = set()
    for order in itertools.permutations(events):
        d = final(classify(order, as_of="2026-04-01T00:00:00Z"))
        finals.add((d.rule, d.reason, d.next_actions, d.blocked_until, d.relationship_via_partner_ids))
    assert finals == {("R9", M1, (*RESELLER_R9, *DA), day("2028-01-01"), ("D1",))}


def test_status_not_eligible_when_R2_applies() -> None:
    """An account whose partner is not in CSP is NOT_ELIGIBLE, its subscription counted as NOT_APPLICABLE."""
    s = final_status(classify([buy("open")]))
    assert (s.status, s.decision_counts) == ("NOT_ELIGIBLE", {"NOT_APPLICABLE": 1})


def test_status_multichannel_with_an_R8_R9_R10_decision_and_counts() -> None:
    """One R9 subscription makes the account MULTICHANNEL; the counts cover every decision of the account."""
    s = final_status(
        classify(direct(buy("open"), buy("csp", seller="P1", sid="S2"), buy("csp", "usage", seller="P2", sid="S3")))
    )
    assert s.status == "MULTICHANNEL"
    assert s.decision_counts == {
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 1,
        "ALREADY_MANAGED": 1,
        "CSP_SWITCH_PERMITTED": 1,
    }


def test_status_single_channel_when_all_ended_counts_include_ended() -> None:
    """An account whose subscriptions all ended is SINGLE_CHANNEL and still counts them."""
    records = classify(
        direct(
            buy("open"),
            buy("enterprise_agreement", sid="S2"),
            account("subscription_cancelled", subscription_id="S1"),
            account("subscription_cancelled", subscription_id="S2"),
        )
    )
    s = final_status(records)
    assert (s.status, s.decision_counts) == ("SINGLE_CHANNEL", {"CSP_SWITCH_PERMITTED": 2})


def test_no_output_for_account_without_purchase() -> None:
    """Relationship events and a cancellation waiting for its purchase emit no record."""
    assert (
        classify(direct(account("relationship_accepted"), account("subscription_cancelled", subscription_id="S1")))
        == []
    )


def test_duplicate_event_id_emits_nothing() -> None:
    """A repeated event_id of the same account is ignored: only the first purchase emits."""
    first = buy("open", eid="dup-1")
    records = classify(direct(first, dict(first)))
    assert [type(r).__name__ for r in records] == ["SubscriptionDecision", "CustomerStatusRecord"]


def test_emit_on_change_only() -> None:
    """A second identical relationship_accepted emits nothing; a status is emitted only when it changes."""
    records = classify(
        direct(
            buy("open"), account("relationship_accepted"), account("relationship_accepted", at="2026-03-04T00:00:00Z")
        )
    )
    assert [d.rule for d in decisions(records)] == ["R9", "R10"]
    assert len(statuses(records)) == 2, "status re-emitted only when counts change"


def test_records_in_subscription_id_order_then_status() -> None:
    """One step emits its decisions in subscription_id order, then the account's status, all with one cause."""
    records = classify(direct(buy("open", sid="S2"), buy("open", sid="S1"), account("relationship_accepted")))
    last = records[-3:]
    assert [(type(r).__name__, getattr(r, "subscription_id", None)) for r in last] == [
        ("SubscriptionDecision", "S1"),
        ("SubscriptionDecision", "S2"),
        ("CustomerStatusRecord", None),
    ]
    assert all(r.caused_by_event_id == last[0].caused_by_event_id for r in last)


def test_partner_change_touches_accounts_in_partner_customer_order() -> None:
    """A partner change re-classifies the accounts it affects in (partner_id, customer_id) order."""
    events = [
        partner("P1", "none"),
        partner("P0", "none"),
        buy("open", pid="P1", cid="C2"),
        buy("open", pid="P1", cid="C1"),
        buy("third_party", seller="P1", pid="P0", cid="C3"),
        partner("P0", "csp_direct"),
        partner("P1", "csp_direct", at="2026-04-01T00:00:00Z", eid="move"),
    ]
    records = [r for r in classify(events) if r.caused_by_event_id == "move"]
    order = [(r.partner_id, r.customer_id, type(r).__name__) for r in records]
    assert order == [
        ("P0", "C3", "SubscriptionDecision"),
        ("P0", "C3", "CustomerStatusRecord"),
        ("P1", "C1", "SubscriptionDecision"),
        ("P1", "C1", "CustomerStatusRecord"),
        ("P1", "C2", "SubscriptionDecision"),
        ("P1", "C2", "CustomerStatusRecord"),
    ]
    assert decisions(records)[0].rule == "R7", "P1 as seller now in CSP"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_timers_fire_at_deadline_in_order_with_null_cause() -> None:
    """Due timers fire by deadline, then account, each at its deadline with no cause and reason TERM_ENDED."""
    events = direct(
        buy("open", sid="S2", cid="C2", term_end="2026-05-01"),
        buy("open", sid="S1", cid="C1", term_end="2026-05-01"),
        buy("open", sid="S3", cid="C1", term_end="2026-04-01"),
    )
    records = classify(events, as_of="2026-06-01T00:00:00Z")
    fired = [r for r in records if r.caused_by_event_id is None]
    assert [(r.customer_id, getattr(r, "subscription_id", None), r.decided_at) for r in fired] == [
        ("C1", "S3", _utc("2026-04-01T00:00:00")),
        ("C1", None, _utc("2026-04-01T00:00:00")),
        ("C1", "S1", _utc("2026-05-01T00:00:00")),
        ("C1", None, _utc("2026-05-01T00:00:00")),
        ("C2", "S2", _utc("2026-05-01T00:00:00")),
        ("C2", None, _utc("2026-05-01T00:00:00")),
    ]
    assert all(d.reason == "TERM_ENDED" for d in decisions(fired))


def test_timer_fires_before_the_event_at_its_deadline() -> None:
    """An event at a term end's instant comes after the timer: the term has ended by then."""
    records = classify(
        direct(buy("open", term_end="2026-05-01"), account("relationship_accepted", at="2026-05-01T00:00:00Z"))
    )
    assert [d.reason for d in decisions(records)] == [M1, "TERM_ENDED"]


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"event_type": "subscription_paused", "event_id": "x", "occurred_at": T0}, "UNKNOWN_EVENT_TYPE"),
        ({"event_id": "x", "occurred_at": T0}, "UNKNOWN_EVENT_TYPE"),
        (buy("open", term_start="2027-01-01", term_end="2027-01-01"), "INVALID_FIELD"),
        ({k: v for k, v in buy("open").items() if k != "term_end"}, "INVALID_FIELD"),
        (buy("csp"), "INVALID_FIELD"),
        (dict(buy("open"), event_id=""), "INVALID_FIELD"),
        (dict(buy("open"), customer_id="  "), "INVALID_FIELD"),
        (dict(buy("open"), channel="reseller"), "INVALID_FIELD"),
        (dict(partner("P9", "csp_direct"), indirect_provider_ids="P2"), "INVALID_FIELD"),
        (dict(partner("P9", "csp_indirect_reseller"), indirect_provider_ids=[1]), "INVALID_FIELD"),
        (buy("open", term_end="2027-W22-1"), "INVALID_FIELD"),
        (dict(buy("open"), occurred_at="20260301T093000Z"), "INVALID_FIELD"),
        (dict(buy("open"), occurred_at="2026-03-01"), "INVALID_FIELD"),
        (dict(buy("open"), occurred_at="2026-03-01 09:30:00Z"), "INVALID_FIELD"),
        (dict(buy("open"), occurred_at="2026-13-01T09:30:00Z"), "INVALID_FIELD"),
    ],
    ids=[
        "unknown-type",
        "missing-type",
        "term-end-not-after-start",
        "license-without-term-end",
        "csp-without-seller",
        "empty-event-id",
        "customer-id-of-spaces-only",
        "unknown-channel",
        "providers-not-a-list-for-a-direct-partner",
        "providers-not-partner-ids-for-a-reseller",
        "week-date",
        "timestamp-in-basic-form",
        "date-for-a-timestamp",
        "space-for-the-T",
        "month-13",
    ],
)
def test_dead_letter_reasons(event: dict[str, Any], reason: str) -> None:
    """An event that cannot be understood is refused with its dead-letter reason and a message."""
    with pytest.raises(InvalidEvent) as refused:
        parse_event(event)
    assert refused.value.reason == reason
    assert refused.value.message


@pytest.mark.parametrize(
    ("occurred_at", "decided_at"),
    [
        ("2026-03-01T09:30:00Z", datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
        ("2026-03-01T09:30:00", datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
        ("2026-03-01T11:30:00+02:00", datetime(2026, 3, 1, 9, 30, tzinfo=UTC)),
        ("2026-03-01T09:30:00.123456Z", datetime(2026, 3, 1, 9, 30, 0, 123000, tzinfo=UTC)),
    ],
    ids=["utc", "no-offset-read-as-utc", "offset-converted-to-utc", "fraction-kept-to-milliseconds"],
)
def test_timestamp_forms_accepted(occurred_at: str, decided_at: datetime) -> None:
    """Each accepted timestamp form becomes the UTC instant, to the millisecond, that the decision carries."""
    records = classify([partner("P1", "csp_direct"), dict(buy("open"), occurred_at=occurred_at)])
    assert final(records).decided_at == decided_at
    assert final(records).decided_at.tzinfo is UTC


def test_status_multichannel_from_R8_alone() -> None:
    """An R8 subscription alone makes the account MULTICHANNEL."""
    s = final_status(classify(direct(buy("microsoft_direct", "usage"))))
    assert (s.status, s.decision_counts) == ("MULTICHANNEL", {"MIGRATION_REQUIRED": 1})


def test_status_single_channel_with_only_R3_to_R7() -> None:
    """Subscriptions under R3 to R7 only (R7 is BLOCKED_UNTIL_TERM_END too) leave the account SINGLE_CHANNEL."""
    s = final_status(classify(direct(buy("csp", seller="P1"), buy("csp", seller="P2", sid="S2"))))
    assert (s.status, s.decision_counts) == (
        "SINGLE_CHANNEL",
        {"ALREADY_MANAGED": 1, "BLOCKED_UNTIL_TERM_END": 1},
    )
