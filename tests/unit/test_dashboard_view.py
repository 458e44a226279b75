"""The dashboard's materialized view: records in, queues, calendar, counts and history out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboard import queries
from dashboard.view import View
from tests.unit.dashboard_records import AT, TODAY, decision, status


def test_the_current_decision_is_the_last_by_offset_and_counts_follow_it() -> None:
    """A later decision of a subscription replaces it in the counts; the history keeps both."""
    view = View()
    view.apply_decision(0, decision("P1", "C1", "S1", "eligible"))
    view.apply_decision(1, decision("P1", "C1", "S2", "switch"))
    view.apply_decision(2, decision("P1", "C1", "S1", "blocked", blocked_until=TODAY + timedelta(days=5)))
    assert view.decision_counts == {
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 0,
        "CSP_SWITCH_PERMITTED": 1,
        "BLOCKED_UNTIL_TERM_END": 1,
    }
    page = queries.customer(view, "P1", "C1")
    assert page is not None
    s1 = page["subscriptions"][0]
    assert (s1["subscription_id"], s1["decision"]) == ("S1", "BLOCKED_UNTIL_TERM_END")
    assert [h["decision"] for h in s1["history"]] == ["BLOCKED_UNTIL_TERM_END", "ELIGIBLE_FOR_RELATIONSHIP_REQUEST"]
    assert view.decisions_seen == 3


def test_records_out_of_order_keep_the_history_in_offset_order() -> None:
    """An earlier offset that arrives late goes into its place and does not become current; a repeat is ignored."""
    view = View()
    view.apply_decision(7, decision("P1", "C1", "S1", "switch", event="e7"))
    view.apply_decision(3, decision("P1", "C1", "S1", "eligible", event="e3", at=AT + timedelta(hours=1)))
    assert view.apply_decision(7, decision("P1", "C1", "S1", "switch", event="e7")) is False
    page = queries.customer(view, "P1", "C1")
    assert page is not None
    history = page["subscriptions"][0]["history"]
    assert [h["offset"] for h in history] == [7, 3]
    assert page["subscriptions"][0]["decision"] == "CSP_SWITCH_PERMITTED"
    assert view.decision_counts["CSP_SWITCH_PERMITTED"] == 1
    assert view.decision_counts["ELIGIBLE_FOR_RELATIONSHIP_REQUEST"] == 0


def test_a_tombstone_deletes_the_status_and_an_older_status_does_not_replace_a_newer_one() -> None:
    """Compacted-topic semantics: the highest offset wins, a null value removes the account's status."""
    view = View()
    view.apply_status(5, "P1:C1", status("P1", "C1", "MULTICHANNEL"))
    assert view.apply_status(2, "P1:C1", status("P1", "C1", "SINGLE_CHANNEL")) is False
    assert view.status_counts["MULTICHANNEL"] == 1
    assert view.apply_status(9, "P1:C1", None) is True
    assert view.status_counts["MULTICHANNEL"] == 0
    assert view.account("P1", "C1") is None, "an account with neither status nor decisions is forgotten"
    view.apply_status(10, "P:x:C:y", status("P:x", "C:y"))
    assert view.apply_status(11, "P:x:C:y", None) is True, "ids holding a colon are found by trying each split"


def test_a_tombstone_keeps_the_decisions_of_the_account() -> None:
    """Deleting the status leaves the subscription decisions (another topic) in place."""
    view = View()
    view.apply_decision(0, decision("P1", "C1", "S1"))
    view.apply_status(0, "P1:C1", status("P1", "C1"))
    view.apply_status(1, "P1:C1", None)
    page = queries.customer(view, "P1", "C1")
    assert page is not None and page["status"] is None and len(page["subscriptions"]) == 1


def test_work_queue_groups_by_decision_filters_sorts_and_pages() -> None:
    """Only subscriptions with something to do are queued; filters by decision and next action narrow it."""
    view = View()
    offset = 0
    for i in range(5):
        view.apply_decision(offset, decision("P1", f"C{i}", "S-a", "eligible", at=AT + timedelta(minutes=i)))
        view.apply_decision(offset + 1, decision("P1", f"C{i}", "S-b", "migration"))
        view.apply_decision(offset + 2, decision("P1", f"C{i}", "S-c", "blocked", blocked_until=TODAY))
        view.apply_decision(offset + 3, decision("P1", f"C{i}", "S-d", "managed"))
        offset += 4
    view.apply_decision(offset, decision("P2", "C9", "S-x", "reseller", via=["PROV1"]))
    queue = queries.work_queue(view, "P1", size=4)
    assert queue["total"] == 10
    assert {g["decision"]: g["count"] for g in queue["groups"]}["BLOCKED_UNTIL_TERM_END"] == 0
    assert (queue["pages"], len(queue["rows"])) == (3, 4)
    eligible = queries.work_queue(view, "P1", decision="ELIGIBLE_FOR_RELATIONSHIP_REQUEST", sort="decided_at")
    assert [r["customer_id"] for r in eligible["rows"]] == ["C4", "C3", "C2", "C1", "C0"]
    migration = queries.work_queue(view, "P1", action="PORT_DATA_AND_SETTINGS", sort="customer", order="asc")
    first = migration["rows"][0]
    assert (first["customer_id"], first["decision"]) == ("C0", "MIGRATION_REQUIRED")
    assert migration["matching"] == 5
    reseller = queries.work_queue(view, "P2", action="REQUEST_DELEGATED_ADMIN_FOR_RESELLER")
    assert reseller["rows"][0]["relationship_via_partner_ids"] == ["PROV1"]
    assert view.actionable_by_partner == {"P1": 10, "P2": 1}
    assert len(queries.queue_rows(view, "P1", None, None)) == 10


def test_calendar_counts_what_becomes_switchable_in_each_window() -> None:
    """Blocked subscriptions are counted by blocked_until into the 7/30/90-day windows, overdue ones included."""
    view = View()
    for offset, days in enumerate((-2, 3, 20, 60, 200)):
        view.apply_decision(
            offset, decision("P1", f"C{offset}", "S1", "blocked", blocked_until=TODAY + timedelta(days=days))
        )
    view.apply_decision(9, decision("P2", "C9", "S1", "blocked", blocked_until=TODAY + timedelta(days=1)))
    cal = queries.calendar(view, TODAY, days=30)
    assert {w["days"]: w["count"] for w in cal["windows"]} == {7: 3, 30: 4, 90: 5}
    assert [r["customer_id"] for r in cal["rows"]] == ["C0", "C9", "C1", "C2"]
    assert cal["overdue"] == 1
    only_p1 = queries.calendar(view, TODAY, days=7, partner="P1")
    assert [r["customer_id"] for r in only_p1["rows"]] == ["C0", "C1"]
    view.apply_decision(10, decision("P1", "C1", "S1", "ended"))
    assert [r["customer_id"] for r in queries.calendar(view, TODAY, days=7)["rows"]] == ["C0", "C9"]


def test_overview_counts_statuses_minutes_dead_letters_and_malformed_records() -> None:
    """The overview's numbers come from the aggregates kept as records arrive."""
    view = View()
    view.apply_decision(0, decision("P1", "C1", "S1", at=AT))
    view.apply_decision(1, decision("P1", "C1", "S2", at=AT))
    view.apply_decision(2, decision("P1", "C2", "S1", at=AT + timedelta(minutes=2)))
    view.apply_status(0, "P1:C1", status("P1", "C1", "MULTICHANNEL"))
    view.apply_status(1, "P1:C2", status("P1", "C2", "SINGLE_CHANNEL"))
    view.add_dead_letter("SCHEMA_MISMATCH")
    view.add_dead_letter("SCHEMA_MISMATCH")
    view.count_malformed("decisions")
    now_ms = int((AT + timedelta(minutes=2)).timestamp() * 1000)
    data = queries.overview(view, now_ms)
    assert (data["accounts"], data["partners"], data["subscriptions"]) == (2, 1, 3)
    assert {s["status"]: s["count"] for s in data["statuses"]}["SINGLE_CHANNEL"] == 1
    assert [p["count"] for p in data["per_minute"][-3:]] == [2, 0, 1]
    assert len(data["per_minute"]) == 60
    assert data["dead_letters"] == [{"reason": "SCHEMA_MISMATCH", "count": 2}]
    assert data["malformed"] == {"decisions": 1}
    assert data["recent"][0]["customer_id"] == "C2"


def test_a_record_with_a_wrong_field_changes_nothing() -> None:
    """A decoded record of the wrong shape raises before the view changes, so the feed can count it and go on."""
    view = View()
    bad = decision("P1", "C1", "S1") | {"decided_at": "yesterday"}
    with pytest.raises(TypeError):
        view.apply_decision(0, bad)
    assert view.account("P1", "C1") is None and view.decisions_seen == 0


def test_search_finds_partners_customers_and_subscriptions() -> None:
    """Search matches partner and customer ids by substring and subscription ids exactly."""
    view = View()
    view.apply_decision(0, decision("PARTNER-7", "CUST-42", "SUB-1"))
    view.apply_decision(1, decision("PARTNER-8", "CUST-42", "SUB-2"))
    found = queries.search(view, "cust-4")
    assert sorted(a["partner_id"] for a in found["accounts"]) == ["PARTNER-7", "PARTNER-8"]
    assert queries.search(view, "SUB-2")["subscriptions"] == [
        {"partner_id": "PARTNER-8", "customer_id": "CUST-42", "subscription_id": "SUB-2"}
    ]
    assert queries.search(view, "partner-7")["partners"] == ["PARTNER-7"]
