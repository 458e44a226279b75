"""Where the brokers and the registry are: from settings, or from the local stack's state file.

`multichannel broker start` writes `<local_state_dir>/endpoints.json`; every other command fills
empty `bootstrap_servers` / `schema_registry_url` settings from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from config.settings import Settings


class EndpointsUnavailable(Exception):
    """No broker configured and no local stack running."""


def endpoints_file(settings: Settings) -> Path:
    return settings.local_state_dir / "endpoints.json"


def resolve(settings: Settings) -> Settings:
    """Settings with bootstrap servers and registry URL filled in (from the local stack if empty)."""
    if settings.bootstrap_servers and settings.schema_registry_url:
        return settings
    path = endpoints_file(settings)
    try:
        local = json.loads(path.read_text())
    except (OSError, ValueError):
        missing = (
            "MULTICHANNEL_BOOTSTRAP_SERVERS" if not settings.bootstrap_servers else "MULTICHANNEL_SCHEMA_REGISTRY_URL"
        )
        raise EndpointsUnavailable(
            f"no {missing} set and no local stack running: run `multichannel broker start` or set {missing}"
        ) from None
    return settings.model_copy(
        update={
            "bootstrap_servers": settings.bootstrap_servers or str(local["bootstrap_servers"]),
            "schema_registry_url": settings.schema_registry_url or str(local["schema_registry_url"]),
        }
    )
