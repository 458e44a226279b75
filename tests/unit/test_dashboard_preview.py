"""The dashboard's page "What changes under rule book X" on a preview file the command wrote: the command's
figures, a link to each customer page, filters, pages, a file that changes, and the files it refuses."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from benchmarks.preview_workload import preview_events
from config.settings import Settings
from consumers.preview_source import Books, preview_export
from dashboard.app import Dashboard, create_app
from dashboard.feed import Progress
from dashboard.preview import PAGE_SIZE, PreviewFile
from dashboard.view import View
from multichannel.preview import PreviewSummary
from multichannel.rulebooks import CURRENT, SEED

CLOCK = datetime(2026, 12, 2, 12, tzinfo=UTC)
XSS = "<script>alert(1)</script>"


def write_preview(path: Path, accounts: int = 200) -> PreviewSummary:
    """What `multichannel rules preview --to current --events ... --output path` writes, and its figures."""
    events = [*preview_events(accounts, date(2026, 12, 2))]
    events += [
        {**e, "customer_id": XSS, "event_id": f"{e['event_id']}-x"} for e in events if e.get("customer_id") == "C1"
    ]
    source = path.with_name("events.jsonl")
    source.write_text("".join(json.dumps(e) + "\n" for e in events))
    summary, _counts = preview_export(source, Settings(), Books(SEED, CURRENT, CLOCK), output=path, form="jsonl")
    return summary


def client(path: Path | None) -> TestClient:
    progress = Progress(started=True)
    dashboard = Dashboard(View(), progress=lambda: progress, preview=PreviewFile(path))
    return TestClient(create_app(dashboard))


@pytest.fixture
def preview_file(tmp_path: Path) -> tuple[Path, PreviewSummary]:
    path = tmp_path / "preview.jsonl"
    return path, write_preview(path)


def test_the_page_shows_the_commands_figures(preview_file: tuple[Path, PreviewSummary]) -> None:
    """Title, counts, the from → to table, partners and next actions are the summary's own figures; the page
    and its JSON twin agree; the nav links the page."""
    path, summary = preview_file
    c = client(path)
    html = c.get("/preview").text
    data = c.get("/api/preview").json()
    assert "What changes under rule book current 2026-12.1" in html and 'href="/preview"' in html
    assert (data["changed"], data["subscriptions"], data["accounts"]) == (
        summary.changed,
        summary.subscriptions,
        summary.accounts,
    )
    assert [(t["from"]["decision"], t["from"]["reason"], t["count"]) for t in data["transitions"]] == [
        (*b.split("/"), n) for b, _a, n in summary.rows()
    ]
    assert [(p["partner_id"], p["count"]) for p in data["partners"]] == summary.top_partners(10)
    assert {a["code"]: (a["gained"], a["lost"]) for a in data["actions"]} == {
        a: (summary.actions_gained[a], summary.actions_lost[a])
        for a in {*summary.actions_gained, *summary.actions_lost}
    }
    assert f"{summary.changed:,}" in html


def test_each_changed_subscription_links_its_customer_page(preview_file: tuple[Path, PreviewSummary]) -> None:
    """Every row of every page links `/partners/{partner}/customers/{customer}`; the pages hold every change once;
    an id with markup is escaped."""
    path, summary = preview_file
    c = client(path)
    first = c.get("/api/preview").json()
    seen = []
    for page in range(1, first["pages"] + 1):
        data = c.get("/api/preview", params={"page": page}).json()
        html = c.get("/preview", params={"page": page}).text
        for row in data["rows"]:
            if row["customer_id"] != XSS:
                assert f'href="/partners/{row["partner_id"]}/customers/{row["customer_id"]}"' in html
            seen.append((row["partner_id"], row["customer_id"], row["subscription_id"]))
        assert XSS not in html
    assert len(seen) == len(set(seen)) == summary.changed > PAGE_SIZE
    assert any(customer == XSS for _p, customer, _s in seen)


def test_the_filters_narrow_the_rows(preview_file: tuple[Path, PreviewSummary]) -> None:
    """`partner=` keeps that partner's changes (its count in the partners table); `moved=1` those whose next
    actions appear or disappear."""
    path, summary = preview_file
    c = client(path)
    partner, count = summary.top_partners(1)[0]
    data = c.get("/api/preview", params={"partner": partner}).json()
    assert data["matching"] == count and {r["partner_id"] for r in data["rows"]} == {partner}
    moved = c.get("/api/preview", params={"moved": "1"}).json()
    assert moved["matching"] == summary.actions_moved
    assert all(r["actions_gained"] or r["actions_lost"] for r in moved["rows"])


def test_a_new_preview_file_is_read_on_the_next_request(tmp_path: Path) -> None:
    """The page follows the file: a preview written over it shows at once."""
    path = tmp_path / "preview.jsonl"
    write_preview(path, 50)
    c = client(path)
    before = c.get("/api/preview").json()["accounts"]
    write_preview(path, 120)
    assert (before, c.get("/api/preview").json()["accounts"]) == (51, 121)  # and the account with markup


def test_without_a_usable_file_the_page_says_what_to_do(tmp_path: Path) -> None:
    """No file set, a file not there yet, one cut short (no summary line), one not a preview: the page answers
    200 with the reason, and the API says it has nothing."""
    path = tmp_path / "preview.jsonl"
    assert "MULTICHANNEL_DASHBOARD_PREVIEW_FILE" in client(None).get("/preview").text
    assert "No preview at" in client(path).get("/preview").text
    write_preview(path, 20)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-1]))
    cut = client(path).get("/api/preview").json()
    assert cut == {
        "available": False,
        "message": f"{path} has no summary line: the preview that writes it did not finish",
    }
    path.write_text('{"record_type": "subscription_decision"}\n')
    assert "is not a preview" in client(path).get("/preview").text
