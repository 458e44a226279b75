"""The dashboard at scale and live (`python -m tests.bench_dashboard`, `make bench-dashboard`).

1. Scale: a view of 100,000 accounts and 1,000,000 decisions (synthetic decoded records with the
   rule book's verdicts, partners of Zipf-like sizes), fed in-process; the process's memory after
   it, and the time of every page and its API twin through the real application (best and worst
   of several requests, the largest partner's work queue included).
2. Live: the local stack, the classifier service and `multichannel dashboard`, with the overview
   open in Debian's headless Chromium: for each of a few events, the time from the service's commit
   (when a read_committed probe sees the decision) to the row on the open page (stamped by the
   page itself, through a MutationObserver).

Writes the figures to docs/dashboard-benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from starlette.testclient import TestClient

from dashboard.app import Dashboard, create_app
from dashboard.feed import Progress
from dashboard.view import View
from tests.unit.dashboard_records import VERDICTS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOC = PROJECT_ROOT / "docs" / "dashboard-benchmarks.md"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KINDS = ("eligible", "reseller", "switch", "migration", "blocked", "ended", "managed")
WEIGHTS = (15, 5, 20, 10, 25, 10, 15)


def synthetic_records(
    accounts: int, decisions: int, start: int = 0, count: int | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """(offset, decoded decision) pairs `start` to `start + count` of `decisions` over `accounts` (about 5
    subscriptions per account, 2 decisions per subscription); partners have Zipf-like sizes."""
    partners = max(1, accounts // 150)
    weights = [1 / (i + 1) for i in range(partners)]  # a few large partners, many small ones
    owners = random.Random(1).choices(range(partners), weights, k=accounts)
    rng = random.Random(start)
    subs_per_account = max(1, decisions // accounts // 2)
    out: list[tuple[int, dict[str, Any]]] = []
    for n in range(start, start + (decisions - start if count is None else count)):
        a = n % accounts
        sub = rng.randrange(subs_per_account)
        kind = rng.choices(KINDS, WEIGHTS)[0]
        name, reason, rule, actions = VERDICTS[kind]
        blocked = date(2026, 11, 25) + timedelta(days=rng.randrange(-5, 400)) if kind == "blocked" else None
        out.append(
            (
                n,
                {
                    "partner_id": f"P{owners[a]:05d}",
                    "customer_id": f"C{a:07d}",
                    "subscription_id": f"S-{a:07d}-{sub}",
                    "decision": name,
                    "reason": reason,
                    "rule": rule,
                    "next_actions": list(actions),
                    "blocked_until": blocked,
                    "relationship_via_partner_ids": ["P-PROVIDER-1"] if kind == "reseller" else [],
                    "decided_at": NOW - timedelta(seconds=rng.randrange(7200)),
                    "caused_by_event_id": f"ev-{n:09d}",
                    "rulebook_version": "2026-11.1",
                },
            )
        )
    return out


def _status(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "partner_id": record["partner_id"],
        "customer_id": record["customer_id"],
        "status": "MULTICHANNEL" if record["rule"] in ("R8", "R9", "R10") else "SINGLE_CHANNEL",
        "decision_counts": {record["decision"]: 1},
        "decided_at": record["decided_at"],
        "caused_by_event_id": record["caused_by_event_id"],
        "rulebook_version": "2026-11.1",
    }


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def bench_scale(accounts: int, decisions: int, runs: int) -> dict[str, Any]:
    """Memory of a full view and the time of every page."""
    gc.collect()
    rss_before = _rss_mb()
    view = View()
    fed = 0.0
    for start in range(0, decisions, 200_000):  # build in chunks, so that the records never all exist at once
        chunk = synthetic_records(accounts, decisions, start, min(200_000, decisions - start))
        t0 = time.perf_counter()
        for n, record in chunk:
            view.apply_decision(n, record)
            if n < accounts:
                view.apply_status(n, f"{record['partner_id']}:{record['customer_id']}", _status(record))
        fed += time.perf_counter() - t0
        del chunk
    gc.collect()
    rss_after = _rss_mb()
    progress = Progress(started=True)
    app = create_app(Dashboard(view, progress=lambda: progress, clock=lambda: NOW))
    client = TestClient(app)
    biggest = max(view.partners, key=lambda p: len(view.partners[p]))
    account = next(iter(view.partners[biggest].values()))
    customer = account.key[1]
    sub = next(iter(account.subs))
    pages = {
        "overview": "/",
        "work queues (all partners)": "/partners",
        f"work queue of the largest partner ({len(view.partners[biggest]):,} accounts)": f"/partners/{biggest}",
        "work queue, filtered by next action, sorted by customer": (
            f"/partners/{biggest}?action=SEND_RELATIONSHIP_REQUEST&sort=customer&order=asc"
        ),
        "work queue CSV export (largest partner)": f"/api/partners/{biggest}/queue.csv",
        "calendar, next 90 days": "/calendar?days=90",
        "customer page": f"/partners/{biggest}/customers/{customer}",
        "search by customer id substring": "/search?q=C00012",
        "search by subscription id": f"/search?q={sub}",
        "API: overview": "/api/overview",
        "API: work queue": f"/api/partners/{biggest}/queue",
        "API: calendar": "/api/calendar?days=90",
        "API: customer": f"/api/partners/{biggest}/customers/{customer}",
    }
    timings: dict[str, dict[str, float]] = {}
    for name, path in pages.items():
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            response = client.get(path)
            samples.append(time.perf_counter() - t0)
            assert response.status_code == 200, (path, response.status_code)
        timings[name] = {"best_ms": min(samples) * 1000, "worst_ms": max(samples) * 1000}
    return {
        "accounts": view.account_count,
        "subscriptions": view.subscription_count,
        "decisions": view.decisions_seen,
        "feed_s": fed,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "pages": timings,
    }


def bench_live(events: int) -> dict[str, Any]:
    """Commit → open overview page, on the local stack with the real service and dashboard."""
    from playwright.sync_api import sync_playwright

    from config.endpoints import resolve
    from config.settings import Settings
    from deploy.local.stack import local_stack
    from tests.integration.conftest import make_settings
    from tests.integration.dashboard_support import DashboardProcess, launch_chromium
    from tests.integration.pipeline import ServiceProcess, publish, wait_until_processed
    from tests.integration.test_dashboard_browser import _purchase, _workload

    base = Settings()
    logs = Path(base.local_state_dir)
    with local_stack(base.cache_dir, base.local_state_dir):
        local = resolve(base)
        settings = make_settings(local.bootstrap_servers, local.schema_registry_url, f"bench{uuid.uuid4().hex[:8]}")
        publish(settings, _workload())
        service = ServiceProcess(settings, logs / "bench-dashboard-service.log").start()
        dashboard: DashboardProcess | None = None
        try:
            ops = service.wait_ready()
            wait_until_processed(settings, 90, [service])
            dashboard = DashboardProcess(settings, logs / "bench-dashboard.log", "", f"{ops}/metrics").start()
            dashboard.wait_caught_up()
            seen: dict[str, float] = {}
            stop = threading.Event()
            probe = threading.Thread(target=_probe, args=(settings, seen, stop), daemon=True)
            probe.start()
            commit_to_page: list[float] = []
            publish_to_page: list[float] = []
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page()
                page.goto(dashboard.url + "/")
                page.wait_for_function("document.body.dataset.version !== undefined")
                page.evaluate(_OBSERVER)
                for i in range(events):
                    customer = f"C-BENCH-{i}-{uuid.uuid4().hex[:4]}"
                    published = time.time()
                    publish(settings, [_purchase(10 + i, customer, f"S-BENCH-{i}", "license")])
                    page.wait_for_function(f"window.__seen[{json.dumps(customer)}] !== undefined", timeout=20_000)
                    shown = page.evaluate(f"window.__seen[{json.dumps(customer)}]") / 1000
                    deadline = time.monotonic() + 10
                    while customer not in seen and time.monotonic() < deadline:
                        stop.wait(0.01)  # the probe thread stamps the commit: wait for its stamp
                    commit_to_page.append(shown - seen[customer])
                    publish_to_page.append(shown - published)
                browser.close()
            stop.set()
            probe.join(5)
        finally:
            if dashboard is not None:
                dashboard.stop()
            service.terminate()
    return {
        "events": events,
        "commit_to_page_ms": sorted(round(x * 1000) for x in commit_to_page),
        "publish_to_page_ms": sorted(round(x * 1000) for x in publish_to_page),
    }


_OBSERVER = """
window.__seen = {};
new MutationObserver(() => {
  for (const cell of document.querySelectorAll('#recent tbody tr td:nth-child(3)')) {
    const id = cell.textContent;
    if (window.__seen[id] === undefined) window.__seen[id] = Date.now();
  }
}).observe(document.getElementById('recent'), {childList: true, subtree: true});
"""


def _probe(settings: Any, seen: dict[str, float], stop: threading.Event) -> None:
    """Stamps the wall time at which each decision becomes visible to a read_committed reader."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    from config.registry import registry_client
    from consumers.serde import Decoder
    from schemas import SUBSCRIPTION_DECISION

    decoder = Decoder(registry_client(settings), SUBSCRIPTION_DECISION)
    consumer = Consumer(
        {**settings.kafka_client_config(), "group.id": "bench-probe", "isolation.level": "read_committed"}
    )
    partitions = consumer.list_topics(settings.decision_topic, timeout=10).topics[settings.decision_topic].partitions
    consumer.assign([TopicPartition(settings.decision_topic, p, OFFSET_END) for p in partitions])
    try:
        while not stop.is_set():
            for msg in consumer.consume(100, timeout=0.01):
                if msg.error() is None:
                    record = decoder.decode(msg.value())
                    seen.setdefault(record["customer_id"], time.time())
    finally:
        consumer.close()


def write_doc(scale: dict[str, Any], live: dict[str, Any] | None) -> None:
    cpu = os.cpu_count()
    lines = [
        "# Dashboard benchmarks",
        "",
        "Written by `make bench-dashboard` (`python -m tests.bench_dashboard`); "
        f"{platform.python_implementation()} {platform.python_version()}, {cpu} cores.",
        "",
        "## Scale: 100,000 accounts, 1,000,000 decisions",
        "",
        f"The view fed in-process with {scale['decisions']:,} decoded decisions of {scale['subscriptions']:,} "
        f"subscriptions in {scale['accounts']:,} accounts (and a status per account) in {scale['feed_s']:.1f} s.",
        "",
        f"- Process memory (RSS) with the view built: **{scale['rss_after_mb']:.0f} MB** "
        f"({scale['rss_after_mb'] - scale['rss_before_mb']:.0f} MB for the view; budget 1 GB).",
        "",
        "| page | best | worst |",
        "|---|---:|---:|",
    ]
    for name, t in scale["pages"].items():
        lines.append(f"| {name} | {t['best_ms']:.0f} ms | {t['worst_ms']:.0f} ms |")
    worst = max(t["worst_ms"] for t in scale["pages"].values())
    lines += ["", f"Slowest request: {worst:.0f} ms (budget 1 s), through the application in-process (no network)."]
    if live is not None:
        c, p = live["commit_to_page_ms"], live["publish_to_page_ms"]
        lines += [
            "",
            "## Live: a committed decision on an open overview page",
            "",
            f"{live['events']} events, one at a time, on the local broker with the real service and dashboard; the "
            "overview open in headless Chromium. Commit = when a read_committed probe sees the decision; shown = "
            "when the row appears on the page (stamped by the page).",
            "",
            "| from | median | worst |",
            "|---|---:|---:|",
            f"| commit → shown | {statistics.median(c):.0f} ms | {max(c)} ms |",
            f"| publish → shown (includes the service's batch) | {statistics.median(p):.0f} ms | {max(p)} ms |",
        ]
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="requests per page")
    parser.add_argument("--live-events", type=int, default=10, help="0 skips the live part (no broker needed)")
    args = parser.parse_args()
    scale = bench_scale(args.accounts, args.decisions, args.runs)
    print(json.dumps(scale, indent=2))
    live = bench_live(args.live_events) if args.live_events else None
    if live is not None:
        print(json.dumps(live, indent=2))
    write_doc(scale, live)
    print(f"wrote {DOC.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
