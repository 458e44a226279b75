"""The rule book, row by row: each case is named after the rule (or rule-book sentence) it covers
and asserts the final decision of subscription S1 (and, where it matters, the records emitted).

Cases run through the offline driver (`classify_stream`), so the contract's clock semantics hold.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from cli.classify import parse_as_of
from consumers.classify_runner import classify_stream

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


def run(events: list[Any], as_of: str | None = None) -> list[dict[str, Any]]:
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    out = io.BytesIO()
    classify_stream(lines, out, as_of=parse_as_of(as_of) if as_of else None)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def final(records: list[dict[str, Any]], sid: str = "S1", cid: str = "C1") -> dict[str, Any]:
    mine = [
        r
        for r in records
        if r["record_type"] == "subscription_decision" and r["subscription_id"] == sid and r["customer_id"] == cid
    ]
    assert mine, f"no decision for {sid}"
    return mine[-1]


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


@dataclass
class Case:
    id: str
    events: list[Any]
    rule: str
    decision: str
    reason: str
    actions: list[str]
    blocked_until: str | None = None
    via: list[str] = field(default_factory=list)
    as_of: str | None = None


def direct(*events: Any) -> list[Any]:
    return [partner("P1", "csp_direct"), *events]


def reseller(providers: tuple[str, ...], *events: Any) -> list[Any]:
    return [partner("P1", "csp_indirect_reseller", providers), *events]


CASES = [
    Case(
        "R1-customer-is-csp-partner",
        [partner("C1", "csp_direct"), *direct(buy("microsoft_direct"))],
        "R1",
        "RESALE_NOT_PERMITTED",
        "CUSTOMER_IS_CSP_PARTNER",
        NONE,
    ),
    Case(
        "R1-before-R3-even-when-sold-by-account-partner",
        [partner("C1", "csp_indirect_reseller"), *direct(buy("csp", seller="P1"))],
        "R1",
        "RESALE_NOT_PERMITTED",
        "CUSTOMER_IS_CSP_PARTNER",
        NONE,
    ),
    Case(
        "R2-partner-not-in-csp",
        [partner("P1", "advisor"), buy("microsoft_direct")],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
    ),
    Case(
        "R2-partner-absent-from-table-is-none",
        [buy("microsoft_direct")],
        "R2",
        "NOT_APPLICABLE",
        "PARTNER_NOT_IN_CSP",
        NONE,
    ),
    Case(
        "R3-csp-sold-by-account-partner",
        direct(buy("csp", seller="P1")),
        "R3",
        "ALREADY_MANAGED",
        "SOLD_BY_ACCOUNT_PARTNER",
        NONE,
    ),
    Case(
        "R3-before-R5-cancelled",
        direct(buy("csp", seller="P1"), account("subscription_cancelled", subscription_id="S1")),
        "R3",
        "ALREADY_MANAGED",
        "SOLD_BY_ACCOUNT_PARTNER",
        NONE,
    ),
    Case("R4-syndication-channel", direct(buy("syndication")), "R4", "NOT_APPLICABLE", "SYNDICATION_CHANNEL", NONE),
    Case(
        "R4-third-party-syndication-seller",
        [partner("SY", "syndication"), *direct(buy("third_party", seller="SY"))],
        "R4",
        "NOT_APPLICABLE",
        "SYNDICATION_CHANNEL",
        NONE,
    ),
    Case(
        "R5-subscription-cancelled",
        direct(buy("microsoft_direct"), account("subscription_cancelled", subscription_id="S1")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "R5-usage-cancelled",
        direct(buy("csp", "usage", seller="P2"), account("subscription_cancelled", subscription_id="S1")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "R5-cancellation-before-purchase",
        direct(
            account("subscription_cancelled", at="2026-02-01T00:00:00Z", subscription_id="S1"), buy("microsoft_direct")
        ),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "R5-term-already-ended-at-purchase",
        direct(buy("microsoft_direct", term_start="2025-01-01", term_end="2026-02-01")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "TERM_ENDED",
        ["OFFER_CSP_SUBSCRIPTION"],
    ),
    Case(
        "R5-term-ended-by-later-event",
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
        "R5-term-ended-by-as-of",
        direct(buy("microsoft_direct", term_end="2026-06-01")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "TERM_ENDED",
        ["OFFER_CSP_SUBSCRIPTION"],
        as_of="2026-06-01T00:00:00Z",
    ),
    Case(
        "R5-cancelled-wins-over-term-ended",
        direct(buy("microsoft_direct", term_end="2026-06-01"), account("subscription_cancelled", subscription_id="S1")),
        "R5",
        "CSP_SWITCH_PERMITTED",
        "SUBSCRIPTION_CANCELLED",
        ["OFFER_CSP_SUBSCRIPTION"],
        as_of="2026-12-01",
    ),
    Case(
        "R6-azure-csp-from-other-partner",
        direct(buy("csp", "usage", seller="P2")),
        "R6",
        "CSP_SWITCH_PERMITTED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        ["REQUEST_AZURE_PARTNER_SWITCH"],
    ),
    Case(
        "R6-azure-third-party-csp-seller",
        [partner("P2", "csp_indirect_provider"), *direct(buy("third_party", "usage", seller="P2"))],
        "R6",
        "CSP_SWITCH_PERMITTED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        ["REQUEST_AZURE_PARTNER_SWITCH"],
    ),
    Case(
        "R7-license-held-by-other-csp-partner",
        direct(buy("csp", seller="P2")),
        "R7",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        WAIT,
        "2027-01-01",
    ),
    Case(
        "R7-license-third-party-csp-seller",
        [partner("P2", "csp_indirect_reseller"), *direct(buy("third_party", seller="P2"))],
        "R7",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        WAIT,
        "2027-01-01",
    ),
    Case(
        "R8-usage-M1-microsoft-direct",
        direct(buy("microsoft_direct", "usage")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "R8-usage-M3-non-csp-third-party",
        direct(buy("third_party", "usage", seller="X9")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    Case(
        "R8-usage-M2-advisor-self",
        direct(buy("advisor", "usage", seller="P1")),
        "R8",
        "MIGRATION_REQUIRED",
        "NO_CSP_MIGRATION_PATH",
        R8_ACTIONS,
    ),
    *[
        Case(
            f"R9-M1-{channel}",
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
        "R9-M1-advisor-other-seller",
        direct(buy("advisor", seller="P7")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-M1-advisor-without-seller",
        direct(buy("advisor")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-M1-seller-ignored-for-microsoft-direct",
        direct(buy("microsoft_direct", seller="P1")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-M2-purchased-from-partner-as-advisor",
        direct(buy("advisor", seller="P1")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "PURCHASED_FROM_PARTNER_AS_ADVISOR",
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-M3-non-csp-third-party",
        [partner("X9", "advisor"), *direct(buy("third_party", seller="X9"))],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "PURCHASED_FROM_NON_CSP_THIRD_PARTY",
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-indirect-provider-sends-request",
        [partner("P1", "csp_indirect_provider"), buy("open")],
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-reseller-with-providers",
        reseller(("D2", "D1"), buy("open")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9 + DA,
        "2027-01-01",
        ["D2", "D1"],
    ),
    Case(
        "R9-reseller-provider-named-twice-listed-once",
        reseller(("D2", "D1", "D2"), buy("open")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9 + DA,
        "2027-01-01",
        ["D2", "D1"],
    ),
    Case(
        "R9-reseller-with-delegated-admin",
        reseller(("D1",), buy("open"), account("delegated_admin_granted")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        RESELLER_R9,
        "2027-01-01",
        ["D1"],
    ),
    Case(
        "R9-reseller-delegated-admin-revoked",
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
        "R9-reseller-without-provider",
        reseller((), buy("open")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "RESELLER_WITHOUT_INDIRECT_PROVIDER",
        ["LINK_INDIRECT_PROVIDER"],
        "2027-01-01",
    ),
    Case(
        "R9-relationship-ended",
        direct(buy("open"), account("relationship_accepted"), account("relationship_ended", at="2026-03-05T00:00:00Z")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R9-renewal-moves-blocked-until",
        direct(buy("open"), account("subscription_renewed", subscription_id="S1", term_end="2028-01-01")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2028-01-01",
        as_of="2027-06-01",
    ),
    Case(
        "R9-renewal-before-purchase-applied-on-purchase",
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
        "R9-renewal-arriving-first-with-an-earlier-time-applied-on-purchase",
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
        "R9-latest-renewal-wins-over-an-earlier-one-arriving-later",
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
        "R5-renewal-revives-a-term-that-had-ended",
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
        "R9-later-second-purchase-replaces-attributes",
        direct(buy("open"), buy("open", at="2026-04-01T00:00:00Z", term_end="2029-01-01")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2029-01-01",
    ),
    Case(
        "R9-older-second-purchase-changes-nothing",
        direct(buy("open", at="2026-04-01T00:00:00Z"), buy("csp", seller="P1", at="2026-03-01T00:00:00Z")),
        "R9",
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        M1,
        ["SEND_RELATIONSHIP_REQUEST"],
        "2027-01-01",
    ),
    Case(
        "R10-relationship-accepted",
        direct(buy("open"), account("relationship_accepted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10,
        "2027-01-01",
    ),
    Case(
        "R10-reseller-without-delegated-admin",
        reseller(("D1", "D2"), buy("open"), account("relationship_accepted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10 + DA,
        "2027-01-01",
        ["D1", "D2"],
    ),
    Case(
        "R10-reseller-with-delegated-admin",
        reseller(("D1",), buy("open"), account("relationship_accepted"), account("delegated_admin_granted")),
        "R10",
        "BLOCKED_UNTIL_TERM_END",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        R10,
        "2027-01-01",
        ["D1"],
    ),
    Case(
        "R10-relationship-ended-before-accepted-arrives-late",
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
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule_book_row(case: Case) -> None:
    d = final(run(case.events, case.as_of))
    assert (d["rule"], d["decision"], d["reason"]) == (case.rule, case.decision, case.reason)
    assert d["next_actions"] == case.actions
    assert d["blocked_until"] == case.blocked_until
    assert d["relationship_via_partner_ids"] == case.via
    assert d["rulebook_version"] == "2026-11.1"


def _status(records: list[dict[str, Any]], cid: str = "C1") -> dict[str, Any]:
    return [r for r in records if r["record_type"] == "customer_status" and r["customer_id"] == cid][-1]


def test_status_not_eligible_when_R2_applies() -> None:
    s = _status(run([buy("open")]))
    assert (s["status"], s["decision_counts"]) == ("NOT_ELIGIBLE", {"NOT_APPLICABLE": 1})


def test_status_multichannel_with_an_R8_R9_R10_decision_and_counts() -> None:
    s = _status(run(direct(buy("open"), buy("csp", seller="P1", sid="S2"), buy("csp", "usage", seller="P2", sid="S3"))))
    assert s["status"] == "MULTICHANNEL"
    assert s["decision_counts"] == {
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 1,
        "ALREADY_MANAGED": 1,
        "CSP_SWITCH_PERMITTED": 1,
    }


def test_status_single_channel_when_all_ended_counts_include_ended() -> None:
    records = run(
        direct(
            buy("open"),
            buy("enterprise_agreement", sid="S2"),
            account("subscription_cancelled", subscription_id="S1"),
            account("subscription_cancelled", subscription_id="S2"),
        )
    )
    s = _status(records)
    assert (s["status"], s["decision_counts"]) == ("SINGLE_CHANNEL", {"CSP_SWITCH_PERMITTED": 2})


def test_no_output_for_account_without_purchase() -> None:
    assert run(direct(account("relationship_accepted"), account("subscription_cancelled", subscription_id="S1"))) == []


def test_duplicate_event_id_emits_nothing() -> None:
    first = buy("open", eid="dup-1")
    records = run(direct(first, dict(first)))
    assert [r["record_type"] for r in records] == ["subscription_decision", "customer_status"]


def test_emit_on_change_only() -> None:
    records = run(
        direct(
            buy("open"), account("relationship_accepted"), account("relationship_accepted", at="2026-03-04T00:00:00Z")
        )
    )
    decisions = [r for r in records if r["record_type"] == "subscription_decision"]
    assert [d["rule"] for d in decisions] == ["R9", "R10"]
    statuses = [r for r in records if r["record_type"] == "customer_status"]
    assert len(statuses) == 2, "status re-emitted only when counts change"


def test_records_in_subscription_id_order_then_status() -> None:
    records = run(direct(buy("open", sid="S2"), buy("open", sid="S1"), account("relationship_accepted")))
    last = records[-3:]
    assert [(r["record_type"], r.get("subscription_id")) for r in last] == [
        ("subscription_decision", "S1"),
        ("subscription_decision", "S2"),
        ("customer_status", None),
    ]
    assert all(r["caused_by_event_id"] == last[0]["caused_by_event_id"] for r in last)


def test_partner_change_touches_accounts_in_partner_customer_order() -> None:
    events = [
        partner("P1", "none"),
        partner("P0", "none"),
        buy("open", pid="P1", cid="C2"),
        buy("open", pid="P1", cid="C1"),
        buy("third_party", seller="P1", pid="P0", cid="C3"),
        partner("P0", "csp_direct"),
        partner("P1", "csp_direct", at="2026-04-01T00:00:00Z", eid="move"),
    ]
    records = [r for r in run(events) if r["caused_by_event_id"] == "move"]
    order = [(r["partner_id"], r["customer_id"], r["record_type"]) for r in records]
    assert order == [
        ("P0", "C3", "subscription_decision"),
        ("P0", "C3", "customer_status"),
        ("P1", "C1", "subscription_decision"),
        ("P1", "C1", "customer_status"),
        ("P1", "C2", "subscription_decision"),
        ("P1", "C2", "customer_status"),
    ]
    assert records[0]["rule"] == "R7", "P1 as seller now in CSP"


def test_timers_fire_at_deadline_in_order_with_null_cause() -> None:
    events = direct(
        buy("open", sid="S2", cid="C2", term_end="2026-05-01"),
        buy("open", sid="S1", cid="C1", term_end="2026-05-01"),
        buy("open", sid="S3", cid="C1", term_end="2026-04-01"),
    )
    records = run(events, as_of="2026-06-01T00:00:00Z")
    fired = [r for r in records if r["caused_by_event_id"] is None]
    assert [(r["customer_id"], r.get("subscription_id"), r["decided_at"]) for r in fired] == [
        ("C1", "S3", "2026-04-01T00:00:00Z"),
        ("C1", None, "2026-04-01T00:00:00Z"),
        ("C1", "S1", "2026-05-01T00:00:00Z"),
        ("C1", None, "2026-05-01T00:00:00Z"),
        ("C2", "S2", "2026-05-01T00:00:00Z"),
        ("C2", None, "2026-05-01T00:00:00Z"),
    ]
    assert all(r["reason"] == "TERM_ENDED" for r in fired if r["record_type"] == "subscription_decision")


def test_timer_fires_before_the_event_at_its_deadline() -> None:
    records = run(
        direct(buy("open", term_end="2026-05-01"), account("relationship_accepted", at="2026-05-01T00:00:00Z"))
    )
    assert [r["reason"] for r in records if r["record_type"] == "subscription_decision"] == [M1, "TERM_ENDED"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "SCHEMA_MISMATCH"),
        (b"[1, 2]", "SCHEMA_MISMATCH"),
        (orjson.dumps({"event_type": "subscription_paused", "event_id": "x", "occurred_at": T0}), "UNKNOWN_EVENT_TYPE"),
        (orjson.dumps({"event_id": "x", "occurred_at": T0}), "UNKNOWN_EVENT_TYPE"),
        (orjson.dumps(buy("open", term_start="2027-01-01", term_end="2027-01-01")), "INVALID_FIELD"),
        (orjson.dumps({k: v for k, v in buy("open").items() if k != "term_end"}), "INVALID_FIELD"),
        (orjson.dumps(buy("csp")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), event_id="")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), customer_id="  ")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), channel="reseller")), "INVALID_FIELD"),
        (orjson.dumps(dict(partner("P9", "csp_direct"), indirect_provider_ids="P2")), "INVALID_FIELD"),
        (orjson.dumps(dict(partner("P9", "csp_indirect_reseller"), indirect_provider_ids=[1])), "INVALID_FIELD"),
        (orjson.dumps(buy("open", term_end="2027-W22-1")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), occurred_at="20260301T093000Z")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), occurred_at="2026-03-01")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), occurred_at="2026-03-01 09:30:00Z")), "INVALID_FIELD"),
        (orjson.dumps(dict(buy("open"), occurred_at="2026-13-01T09:30:00Z")), "INVALID_FIELD"),
    ],
    ids=[
        "bad-json",
        "not-an-object",
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
def test_dead_letter_reasons_with_line_numbers(line: bytes, reason: str) -> None:
    records = run([partner("P1", "csp_direct"), line, buy("open")])
    dead = [r for r in records if r["record_type"] == "dead_letter"]
    assert [(d["line"], d["reason"]) for d in dead] == [(2, reason)]
    assert dead[0]["message"]
    assert final(records)["rule"] == "R9", "the run goes on after a bad line"


@pytest.mark.parametrize(
    ("occurred_at", "decided_at"),
    [
        ("2026-03-01T09:30:00Z", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00", "2026-03-01T09:30:00Z"),
        ("2026-03-01T11:30:00+02:00", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00.123456Z", "2026-03-01T09:30:00.123Z"),
    ],
    ids=["utc", "no-offset-read-as-utc", "offset-converted-to-utc", "fraction-kept-to-milliseconds"],
)
def test_timestamp_forms_accepted(occurred_at: str, decided_at: str) -> None:
    records = run([partner("P1", "csp_direct"), dict(buy("open"), occurred_at=occurred_at)])
    assert final(records)["decided_at"] == decided_at


def test_status_multichannel_from_R8_alone() -> None:
    s = _status(run(direct(buy("microsoft_direct", "usage"))))
    assert (s["status"], s["decision_counts"]) == ("MULTICHANNEL", {"MIGRATION_REQUIRED": 1})


def test_status_single_channel_with_only_R3_to_R7() -> None:
    s = _status(run(direct(buy("csp", seller="P1"), buy("csp", seller="P2", sid="S2"))))
    assert (s["status"], s["decision_counts"]) == (
        "SINGLE_CHANNEL",
        {"ALREADY_MANAGED": 1, "BLOCKED_UNTIL_TERM_END": 1},
    )
