"""The Starlette application: HTML pages, the JSON API behind each of them, and the live stream.

Every page has its API twin (`/partners/P` ↔ `/api/partners/P/queue`), both built from the same
`queries` function. Handlers that read the view are plain functions, which Starlette runs in its
thread pool, so a long read never stalls the event loop that serves the live stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dashboard import queries
from dashboard.auth import TokenGate
from dashboard.docs import rules_html, rules_page
from dashboard.feed import Progress
from dashboard.preview import PreviewFile, preview_page
from dashboard.rules import ACTION_LABEL, DECISION_LABEL, QUEUE_DECISIONS
from dashboard.service_metrics import MetricsScraper, ServiceStats
from dashboard.view import View

HERE: Final = Path(__file__).resolve().parent
STREAM_MIN_INTERVAL_S: Final = 0.1
"""Least time between two overview pushes: a burst of batches becomes one update."""
STREAM_KEEPALIVE_S: Final = 15.0
SCRAPE_INTERVAL_S: Final = 2.0


class Notifier:
    """Wakes the live streams from any thread (the feed's) when the view has changed."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)


@dataclass
class Dashboard:
    """What the handlers read: the view, how far the feed is, and the service's metrics."""

    view: View
    progress: Callable[[], Progress]
    feed_error: Callable[[], str | None] = lambda: None
    scraper: MetricsScraper | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    notifier: Notifier = field(default_factory=Notifier)
    preview: PreviewFile = field(default_factory=lambda: PreviewFile(None))
    """The rule-book preview file the preview page shows (MULTICHANNEL_DASHBOARD_PREVIEW_FILE)."""

    def status(self) -> dict[str, Any]:
        progress = self.progress()
        stats = self.scraper.stats if self.scraper is not None else None
        return {
            "caught_up": progress.caught_up,
            "behind": progress.behind,
            "feed_error": self.feed_error(),
            "service": None if stats is None else asdict(stats),
        }

    def overview(self) -> dict[str, Any]:
        now_ms = int(self.clock().timestamp() * 1000)
        return {**queries.overview(self.view, now_ms), "status": self.status()}

    def today(self) -> date:
        return self.clock().date()


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seg"] = lambda value: quote(str(value), safe="")
    env.filters["q"] = lambda value: quote(str(value), safe="")
    env.filters["when"] = when
    env.globals.update(decision_labels=DECISION_LABEL, action_labels=ACTION_LABEL, queue_decisions=QUEUE_DECISIONS)
    return env


def when(iso: str | None) -> str:
    """An API timestamp (`2026-03-01T09:30:00.000Z`) as the pages show it: `2026-03-01 09:30:00`."""
    return "" if not iso else iso[:19].replace("T", " ")


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        return default


def _choice(request: Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.query_params.get(name, default)
    return value if value in allowed else default


def _optional(request: Request, name: str) -> str | None:
    return request.query_params.get(name) or None


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json")


def _csv_cell(text: str | None) -> str:
    """A cell; one that a spreadsheet would run as a formula starts with a quote."""
    if not text:
        return ""
    return "'" + text if text[0] in "=+-@\t\r" else text


def create_app(dashboard: Dashboard, token: str = "") -> Starlette:
    """The ASGI application (wrapped in the token gate when a token is set)."""
    env = _templates()
    view = dashboard.view

    def page(name: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(request=request, status=dashboard.status(), **context)
        return HTMLResponse(html, status_code=status_code)

    def queue_params(request: Request) -> dict[str, Any]:
        order = _choice(request, "order", ("asc", "desc"), "desc")
        return {
            "decision": _optional(request, "decision"),
            "action": _optional(request, "action"),
            "sort": _choice(request, "sort", queries.SORT_KEYS, "decided_at"),
            "order": "asc" if order == "asc" else "desc",
            "page": _int(request, "page", 1),
            "size": _int(request, "size", 50),
        }

    def calendar_data(request: Request) -> dict[str, Any]:
        days = _int(request, "days", 30)
        return queries.calendar(
            view,
            dashboard.today(),
            days=days if days in queries.CALENDAR_WINDOWS else 30,
            partner=_optional(request, "partner"),
            page=_int(request, "page", 1),
        )

    # --- pages -----------------------------------------------------------------------------------------
    def overview_page(request: Request) -> Response:
        return page("overview.html", request, data=dashboard.overview())

    def partners_page(request: Request) -> Response:
        return page("partners.html", request, data=queries.partners(view))

    def queue_page(request: Request) -> Response:
        partner = request.path_params["partner"]
        return page("queue.html", request, data=queries.work_queue(view, partner, **queue_params(request)))

    def customer_page(request: Request) -> Response:
        p, c = request.path_params["partner"], request.path_params["customer"]
        data = queries.customer(view, p, c)
        if data is None:
            return page("missing.html", request, status_code=404, partner_id=p, customer_id=c)
        return page("customer.html", request, data=data)

    def calendar_page(request: Request) -> Response:
        return page("calendar.html", request, data=calendar_data(request))

    def search_page(request: Request) -> Response:
        data = queries.search(view, request.query_params.get("q", ""))
        return page("search.html", request, data=data, query=data["query"])

    def preview_data(request: Request) -> dict[str, Any]:
        return preview_page(
            dashboard.preview,
            partner=_optional(request, "partner"),
            moved=request.query_params.get("moved") == "1",
            page=_int(request, "page", 1),
        )

    def rules_preview(request: Request) -> Response:
        return page("preview.html", request, data=preview_data(request))

    def rules_doc(request: Request) -> Response:
        return page("rules.html", request, html=rules_html(), sections=rules_page())

    # --- API ------------------------------------------------------------------------------------------
    def api_overview(request: Request) -> Response:
        return _json(dashboard.overview())

    def api_status(request: Request) -> Response:
        return _json(dashboard.status())

    def api_partners(request: Request) -> Response:
        return _json(queries.partners(view))

    def api_queue(request: Request) -> Response:
        return _json(queries.work_queue(view, request.path_params["partner"], **queue_params(request)))

    def api_queue_csv(request: Request) -> Response:
        partner = request.path_params["partner"]
        params = queue_params(request)
        rows = queries.queue_rows(view, partner, params["decision"], params["action"], params["sort"], params["order"])
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(queries.CSV_COLUMNS)
        writer.writerows([_csv_cell(v) for v in row] for row in rows)
        filename = quote(f"work-queue-{partner}.csv", safe="")
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"},
        )

    def api_customer(request: Request) -> Response:
        data = queries.customer(view, request.path_params["partner"], request.path_params["customer"])
        return _json({"error": "no such account"}, 404) if data is None else _json(data)

    def api_calendar(request: Request) -> Response:
        return _json(calendar_data(request))

    def api_search(request: Request) -> Response:
        return _json(queries.search(view, request.query_params.get("q", "")))

    def api_preview(request: Request) -> Response:
        return _json(preview_data(request))

    def api_rules(request: Request) -> Response:
        return _json({"rules": rules_page()})

    async def api_stream(request: Request) -> Response:
        """Server-sent events: `overview` with the whole overview each time the view (or the service) changed."""

        async def events() -> AsyncIterator[bytes]:
            last: tuple[int, dict[str, Any]] | None = None
            while not await request.is_disconnected():
                data = await run_in_threadpool(dashboard.overview)
                current = (data["version"], data["status"])
                if current != last:
                    last = current
                    yield b"event: overview\ndata: " + orjson.dumps(data) + b"\n\n"
                else:
                    yield b": keepalive\n\n"
                await dashboard.notifier.wait(STREAM_KEEPALIVE_S)
                await asyncio.sleep(STREAM_MIN_INTERVAL_S)  # rate limit: coalesce a burst of changes

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dashboard.notifier.bind(asyncio.get_running_loop())
        task = asyncio.create_task(_scrape_forever(dashboard)) if dashboard.scraper is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    routes = [
        Route("/", overview_page),
        Route("/partners", partners_page),
        Route("/partners/{partner}/customers/{customer:path}", customer_page),
        Route("/partners/{partner:path}", queue_page),
        Route("/calendar", calendar_page),
        Route("/search", search_page),
        Route("/docs/rules.md", rules_doc),
        Route("/preview", rules_preview),
        Route("/api/overview", api_overview),
        Route("/api/status", api_status),
        Route("/api/stream", api_stream),
        Route("/api/partners", api_partners),
        Route("/api/partners/{partner}/queue", api_queue),
        Route("/api/partners/{partner}/queue.csv", api_queue_csv),
        Route("/api/partners/{partner}/customers/{customer:path}", api_customer),
        Route("/api/calendar", api_calendar),
        Route("/api/search", api_search),
        Route("/api/rules", api_rules),
        Route("/api/preview", api_preview),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    if token:
        app.add_middleware(TokenGate, token=token)
    return app


async def _scrape_forever(dashboard: Dashboard) -> None:
    scraper = dashboard.scraper
    assert scraper is not None
    while True:
        before: ServiceStats = scraper.stats
        started = time.monotonic()
        after = await asyncio.to_thread(scraper.scrape)
        if after != before:
            dashboard.notifier.notify()
        await asyncio.sleep(max(0.0, SCRAPE_INTERVAL_S - (time.monotonic() - started)))
