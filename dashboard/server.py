"""`multichannel dashboard`: the view, its Kafka feed, the metrics scraper and the web server, together."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from dashboard.app import Dashboard, create_app
from dashboard.config import Settings, get_logger, metrics_url
from dashboard.feed import Feed
from dashboard.preview import PreviewFile
from dashboard.service_metrics import MetricsScraper
from dashboard.view import View

log = get_logger("multichannel.dashboard")


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM (uvicorn handles both); `settings` has its endpoints resolved."""
    view = View()
    dashboard = Dashboard(view, progress=lambda: feed.progress, feed_error=lambda: feed.error)
    dashboard.scraper = MetricsScraper(metrics_url(settings))
    dashboard.preview = PreviewFile(Path(settings.dashboard_preview_file) if settings.dashboard_preview_file else None)
    feed = Feed(settings, view, on_change=dashboard.notifier.notify)
    app = create_app(dashboard, settings.dashboard_token.get_secret_value())
    config = uvicorn.Config(
        app, host=settings.dashboard_host, port=settings.dashboard_port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    feed.start()
    try:
        server.run()
    finally:
        feed.stop()
        log.info("dashboard_stopped")
