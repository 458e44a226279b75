"""The dashboard's web application on an in-memory view: pages, API, CSV, escaping and the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from starlette.testclient import TestClient

from config.settings import Settings
from consumers.serde import OutputEncoders
from dashboard.app import Dashboard, create_app
from dashboard.decode import OutputDecoder
from dashboard.feed import Progress
from dashboard.rules import RULE_TEXT, rule_link
from dashboard.view import View
from multichannel.model import Rule
from schemas import SUBSCRIPTION_DECISION
from tests.unit.dashboard_records import AT, TODAY, decision, status

XSS = "<script>alert(1)</script>"


def _progress(caught_up: bool = True) -> Progress:
    progress = Progress(ends={("t", 0): 10}, positions={("t", 0): 4}, started=True)
    if caught_up:
        progress.at_end.add(("t", 0))
    return progress


def _client(view: View, token: str = "", caught_up: bool = True) -> TestClient:
    progress = _progress(caught_up)
    dashboard = Dashboard(view, progress=lambda: progress, clock=lambda: AT + timedelta(minutes=1))
    return TestClient(create_app(dashboard, token))


@pytest.fixture
def view() -> View:
    v = View()
    v.apply_decision(0, decision("P1", "C1", "S1", "eligible"))
    v.apply_decision(1, decision("P1", "C1", "S2", "blocked", blocked_until=TODAY + timedelta(days=10)))
    v.apply_decision(2, decision("P1", XSS, "S3", "switch"))
    v.apply_status(0, "P1:C1", status("P1", "C1"))
    return v


def test_every_page_renders(view: View) -> None:
    """Overview, work queues, a queue, a customer, the calendar, search and the rule book answer 200."""
    client = _client(view)
    for path in (
        "/",
        "/partners",
        "/partners/P1",
        "/partners/P1/customers/C1",
        "/calendar?days=90",
        "/search?q=C1",
        "/docs/rules.md",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "text/html" in response.headers["content-type"]
    assert client.get("/partners/P1/customers/nobody").status_code == 404


def test_a_customer_id_with_markup_renders_as_text(view: View) -> None:
    """Values from Kafka are escaped everywhere: the id appears as text, never as a script element."""
    client = _client(view)
    for path in ("/", "/partners/P1", "/search?q=script", "/partners/P1/customers/%3Cscript%3Ealert(1)%3C%2Fscript%3E"):
        html = client.get(path).text
        assert XSS not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path


def test_the_api_returns_the_pages_data(view: View) -> None:
    """Each page has its JSON twin."""
    client = _client(view)
    overview = client.get("/api/overview").json()
    assert overview["subscriptions"] == 3 and overview["status"]["caught_up"] is True
    queue = client.get("/api/partners/P1/queue", params={"decision": "CSP_SWITCH_PERMITTED"}).json()
    assert [r["customer_id"] for r in queue["rows"]] == [XSS]
    customer = client.get("/api/partners/P1/customers/C1").json()
    s1 = customer["subscriptions"][0]
    assert s1["next_actions"] == [{"code": "SEND_RELATIONSHIP_REQUEST", "label": "Send relationship request"}]
    assert s1["rule_link"] == rule_link("R9")
    assert client.get("/api/calendar", params={"days": 30}).json()["windows"][1] == {"days": 30, "count": 1}
    assert client.get("/api/search", params={"q": "S2"}).json()["subscriptions"][0]["customer_id"] == "C1"
    assert client.get("/api/partners/P1/customers/nobody").status_code == 404
    assert len(client.get("/api/rules").json()["rules"]) >= len(Rule)


def test_csv_export_has_every_row_and_defuses_formulas() -> None:
    """The CSV holds the filtered queue; a cell that a spreadsheet would run as a formula is quoted."""
    view = View()
    view.apply_decision(0, decision("P1", "=HYPERLINK(1)", "S1", "migration"))
    view.apply_decision(1, decision("P1", "C2", "S2", "eligible"))
    response = _client(view).get("/api/partners/P1/queue.csv", params={"decision": "MIGRATION_REQUIRED"})
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    assert lines[0].startswith("customer_id,subscription_id,decision")
    assert len(lines) == 2 and lines[1].startswith("'=HYPERLINK(1),S1,MIGRATION_REQUIRED")


def test_the_token_protects_pages_api_and_assets(view: View) -> None:
    """With a token: 401 without it; a bearer header, the query (which sets a cookie) or the cookie let in."""
    client = _client(view, token="s3cret")
    assert client.get("/").status_code == 401
    assert client.get("/api/overview").status_code == 401
    assert client.get("/static/style.css").status_code == 401
    assert client.get("/api/overview", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/overview", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/?token=s3cret")
    assert first.status_code == 200 and "s3cret" not in first.headers["set-cookie"]
    assert client.get("/partners/P1").status_code == 200, "the cookie set by ?token= lets the next request in"
    assert client.get("/api/overview").status_code == 200


def test_the_banner_says_how_far_behind_the_view_is(view: View) -> None:
    """Until the feed has caught up, every page says how many records are left."""
    assert "catching up: 6 records behind" in _client(view, caught_up=False).get("/").text
    assert "catching up" not in _client(view).get("/").text


def test_every_rule_has_a_text_and_a_link() -> None:
    """The customer page explains each rule id and links it to its section of docs/rules.md."""
    assert set(RULE_TEXT) == set(Rule)
    assert all(rule_link(r).startswith("/docs/rules.md#") for r in Rule)


def test_now_is_read_from_the_clock_given() -> None:
    """The per-minute chart ends at the dashboard clock's minute."""
    view = View()
    view.apply_decision(0, decision("P1", "C1", "S1", at=datetime(2026, 3, 1, 9, 31, tzinfo=UTC)))
    points = _client(view).get("/api/overview").json()["per_minute"]
    assert points[-1] == {"minute": "2026-03-01T09:31:00.000Z", "count": 1}


def test_the_rules_page_renders_docs_rules_md_with_every_rules_anchor() -> None:
    """The rule book page is docs/rules.md rendered as HTML (no raw Markdown), and every rule link of
    the dashboard lands on an element with that id."""
    from dashboard.docs import rules_html

    html = rules_html()
    assert html is not None
    assert "<table>" in html and "](#" not in html and "**" not in html
    for rule in Rule:
        assert f'id="{rule_link(rule).split("#", 1)[1]}"' in html


def test_the_customer_page_shows_the_codes_of_the_current_rule_book() -> None:
    """A decision of `current` written by the service's encoder and read by the dashboard's decoder shows its
    rule, reason and next actions (T2, TRANSFER_NEEDS_RELATIONSHIP, the reseller's invitation and the transfer),
    not UNKNOWN; a decision a timer made says so without calling it a term end."""
    client = SchemaRegistryClient.new_client({"url": "mock://dashboard-codes"})
    settings = Settings(bootstrap_servers="unused:9092", schema_registry_url="mock://dashboard-codes")
    encoder = OutputEncoders.for_settings(settings, client, auto_register=True).decision
    actions = [
        "SEND_RESELLER_INVITATION_TO_CUSTOMER",
        "REQUEST_DELEGATED_ADMIN_FOR_RESELLER",
        "REQUEST_PARTNER_TRANSFER",
    ]
    record = decision("P1", "C1", "S1") | {
        "reason": "TRANSFER_NEEDS_RELATIONSHIP",
        "rule": "T2",
        "next_actions": actions,
        "relationship_via_partner_ids": ["D1"],
        "caused_by_event_id": None,
        "rulebook_version": "2026-12.1",
    }
    decoded = OutputDecoder(client, SUBSCRIPTION_DECISION).decode(encoder.encode(record))
    assert decoded == record
    view = View()
    view.apply_decision(0, decoded)
    client_app = _client(view)
    [sub] = client_app.get("/api/partners/P1/customers/C1").json()["subscriptions"]
    assert (sub["rule"], sub["reason"]) == ("T2", "TRANSFER_NEEDS_RELATIONSHIP")
    assert [a["code"] for a in sub["next_actions"]] == actions
    html = client_app.get("/partners/P1/customers/C1").text
    assert ">T2</a>" in html and "<code>TRANSFER_NEEDS_RELATIONSHIP</code>" in html
    assert all(f'title="{a}"' in html for a in actions)
    assert "by timer" in html and "term-end timer" not in html
