"""`multichannel dashboard`: the live decisions dashboard in the browser."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach `dashboard` to the main app."""

    @app.command("dashboard")
    def dashboard_command() -> None:
        """Serve the live decisions dashboard (MULTICHANNEL_DASHBOARD_HOST/PORT; its URL is printed)."""
        from dashboard.config import EndpointsUnavailable, Settings, configure_logging, get_logger, resolve
        from dashboard.server import serve

        settings = Settings()
        configure_logging(settings.log_level)
        try:
            settings = resolve(settings)
        except EndpointsUnavailable as exc:
            get_logger("multichannel.dashboard").error("no_broker", error=str(exc))
            raise typer.Exit(2) from exc
        serve(settings)
