"""The dashboard in a real browser (Debian's headless Chromium through Playwright) against a real broker,
registry and classifier service: live updates, work queues, the customer page, escaping and the token."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from config.settings import Settings
from tests.integration.conftest import make_settings
from tests.integration.dashboard_support import DashboardProcess, launch_chromium
from tests.integration.pipeline import ServiceProcess, publish, wait_until_processed

TOKEN = "browser-test-token"
XSS = "<script>alert(1)</script>"
PARTNER = "P-DASH"


def _event(kind: str, n: int, customer: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_type": kind,
        "event_id": f"dash-{n}-{uuid.uuid4().hex[:6]}",
        "occurred_at": f"2026-03-01T09:{n % 60:02d}:00Z",
        "partner_id": PARTNER,
        "customer_id": customer,
        **fields,
    }


def _purchase(n: int, customer: str, sub: str, model: str) -> dict[str, Any]:
    terms = {"quantity": 5, "term_start": "2026-01-01", "term_end": "2031-01-01"} if model == "license" else {}
    return _event(
        "subscription_purchased",
        n,
        customer,
        subscription_id=sub,
        offer_id="O365_E3",
        billing_model=model,
        channel="microsoft_direct",
        **terms,
    )


def _workload() -> list[dict[str, Any]]:
    partner = {
        "event_type": "partner_program_changed",
        "event_id": f"dash-p-{uuid.uuid4().hex[:6]}",
        "occurred_at": "2026-01-01T00:00:00Z",
        "partner_id": PARTNER,
        "program": "csp_direct",
        "indirect_provider_ids": [],
    }
    return [
        partner,
        _purchase(1, "C-LICENSE", "S-LIC-1", "license"),  # R9: send a relationship request
        _purchase(2, "C-AZURE", "S-AZ-1", "usage"),  # R8: migration required
        _purchase(3, XSS, "S-XSS-1", "license"),
    ]


@dataclass
class Stack:
    settings: Settings
    service: ServiceProcess
    dashboard: DashboardProcess
    browser: Browser


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, schema_registry_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Service and dashboard on fresh topics with a small known workload processed, and a browser."""
    logs = tmp_path_factory.mktemp("dashboard")
    settings = make_settings(kafka_bootstrap, schema_registry_url, f"t{uuid.uuid4().hex[:12]}")
    publish(settings, _workload())
    service = ServiceProcess(settings, logs / "service.log").start()
    dashboard: DashboardProcess | None = None
    try:
        ops = service.wait_ready()
        wait_until_processed(settings, 90, [service])
        dashboard = DashboardProcess(settings, logs / "dashboard.log", TOKEN, f"{ops}/metrics").start()
        dashboard.wait_caught_up()
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                yield Stack(settings, service, dashboard, browser)
            finally:
                browser.close()
    finally:
        if dashboard is not None:
            dashboard.stop()
        service.terminate()


@pytest.fixture
def page(stack: Stack) -> Iterator[Page]:
    """A page that has presented the token once (the dashboard answers with its cookie)."""
    context = stack.browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    response = page.goto(f"{stack.dashboard.url}/?token={TOKEN}")
    assert response is not None and response.status == 200
    yield page
    context.close()
    assert not dialogs, f"a script from Kafka data ran: {dialogs}"


def test_overview_loads_and_a_new_decision_appears_without_a_reload(stack: Stack, page: Page) -> None:
    """The overview shows the committed counts, then a decision committed during the test arrives live."""
    expect(page.locator("#live")).to_have_text("Live")
    expect(page.locator("#decisions")).to_contain_text("Migration required")
    expect(page.locator("#recent")).to_contain_text("C-LICENSE")
    page.wait_for_function("document.body.dataset.version !== undefined")  # the live stream is open
    customer = f"C-LIVE-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    publish(stack.settings, [_purchase(4, customer, "S-LIVE-1", "license")])
    expect(page.locator("#recent")).to_contain_text(customer, timeout=20_000)
    took = time.monotonic() - started
    assert page.url.endswith(f"/?token={TOKEN}"), "no navigation happened"
    print(f"published → shown on the open overview in {took:.2f} s")


def test_work_queue_filters_by_decision_and_by_next_action(stack: Stack, page: Page) -> None:
    """The migration pill keeps the Azure subscription with its migration steps; the action filter finds R9."""
    page.goto(f"{stack.dashboard.url}/partners/{PARTNER}")
    page.locator('[data-decision="MIGRATION_REQUIRED"]').click()
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("C-AZURE")
    expect(rows.first).to_contain_text("Plan migration: create a CSP Azure subscription")
    page.goto(f"{stack.dashboard.url}/partners/{PARTNER}")
    page.select_option("#action-filter", "SEND_RELATIONSHIP_REQUEST")
    expect(page.locator('#queue tr[data-customer="C-LICENSE"]')).to_contain_text("Send relationship request")
    expect(page.locator('#queue tr[data-customer="C-AZURE"]')).to_have_count(0)
    rows = page.locator("#queue tbody tr[data-customer]")
    assert rows.count() >= 2  # C-LICENSE and the markup id (and the live test's customer)
    for row in rows.all():
        expect(row).to_contain_text("Send relationship request")


def test_customer_page_shows_decision_rule_and_next_actions(stack: Stack, page: Page) -> None:
    """The customer page names the decision, links the rule to the rule book and lists what to do."""
    page.goto(f"{stack.dashboard.url}/partners/{PARTNER}/customers/C-LICENSE")
    card = page.locator('[data-subscription="S-LIC-1"]')
    expect(card).to_contain_text("Eligible for relationship request")
    expect(card).to_contain_text("Send relationship request")
    expect(card.locator("a.rule").first).to_have_attribute("href", re.compile(r"^/docs/rules\.md#r9(-|$)"))
    expect(page.locator("#customer-actions")).to_contain_text("Send relationship request")


def test_a_customer_id_with_markup_renders_as_text(stack: Stack, page: Page) -> None:
    """`<script>alert(1)</script>` as a customer id is shown as those characters and never runs."""
    expect(page.locator("#recent")).to_contain_text(XSS)
    page.goto(f"{stack.dashboard.url}/search?q=script")
    page.get_by_role("link", name=XSS).first.click()
    expect(page.locator("#customer-id")).to_have_text(XSS)
    assert page.locator("main script").count() == 0


def test_the_token_is_enforced(stack: Stack) -> None:
    """Without the token pages and API answer 401; the bearer header or the cookie let in."""
    context = stack.browser.new_context()
    try:
        response = context.new_page().goto(stack.dashboard.url + "/")
        assert response is not None and response.status == 401
    finally:
        context.close()
    assert stack.dashboard.get("/api/overview")[0] == 401
    assert stack.dashboard.get("/api/overview", "wrong")[0] == 401
    code, overview = stack.dashboard.get("/api/overview", TOKEN)
    assert code == 200 and overview["accounts"] >= 3
