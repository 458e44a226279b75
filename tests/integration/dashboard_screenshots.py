"""Screenshots of a running dashboard for the README (`python -m tests.integration.dashboard_screenshots
[URL]`, default the demo's http://127.0.0.1:8765): the overview and the customer page of an account
with several subscriptions and a decision history, in Debian's headless Chromium."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import sync_playwright

from tests.integration.dashboard_support import launch_chromium

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def pick_customer(base: str) -> tuple[str, str]:
    """The account with the most subscriptions among the first partners' queues (its history included)."""
    best: tuple[int, str, str] = (0, "", "")
    for partner in _get(f"{base}/api/partners")["partners"][:5]:
        pid = partner["partner_id"]
        for row in _get(f"{base}/api/partners/{quote(pid, safe='')}/queue?size=50")["rows"]:
            account = _get(f"{base}/api/partners/{quote(pid, safe='')}/customers/{quote(row['customer_id'], safe='')}")
            score = len(account["subscriptions"]) * 10 + sum(len(s["history"]) for s in account["subscriptions"])
            best = max(best, (score, pid, row["customer_id"]))
    return best[1], best[2]


def main() -> None:
    base = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765").rstrip("/")
    partner, customer = pick_customer(base)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(base + "/")
        page.wait_for_selector("#live.on")
        page.wait_for_function("document.body.dataset.version !== undefined")  # a live update has been drawn
        page.screenshot(path=str(DOCS / "dashboard-overview.png"), full_page=True)
        page.goto(f"{base}/partners/{quote(partner, safe='')}/customers/{quote(customer, safe='')}")
        page.screenshot(path=str(DOCS / "dashboard-customer.png"), full_page=True)
        browser.close()
    print(f"wrote docs/dashboard-overview.png and docs/dashboard-customer.png ({partner} / {customer})")


if __name__ == "__main__":
    main()
