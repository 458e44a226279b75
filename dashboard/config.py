"""Everything the dashboard takes from the rest of the project's adapters, in one place: the settings,
logging, the endpoint resolution of the local stack and the registry client."""

from __future__ import annotations

from config.endpoints import EndpointsUnavailable, resolve
from config.logs import configure_logging, get_logger
from config.registry import registry_client
from config.settings import PROJECT_ROOT, Settings

__all__ = [
    "PROJECT_ROOT",
    "EndpointsUnavailable",
    "Settings",
    "configure_logging",
    "get_logger",
    "metrics_url",
    "registry_client",
    "resolve",
]


def metrics_url(settings: Settings) -> str:
    """The service's /metrics URL: the dashboard setting, or the local service's port."""
    return settings.dashboard_metrics_url or f"http://127.0.0.1:{settings.metrics_port}/metrics"
