"""Settings for a command that needs the brokers or the registry: resolved, and their dependencies
answering (waited for up to MULTICHANNEL_STARTUP_TIMEOUT_S), or a one-line error and an exit code."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from config.endpoints import EndpointsUnavailable, resolve
from config.reachability import UNREACHABLE_EXIT_CODE, DependencyUnreachable, wait_for_brokers, wait_for_registry
from config.settings import Settings


def ready_settings(*, brokers: bool, registry: bool) -> Settings:
    """Exit 2 when no endpoint is configured; exit 3 when one does not answer in time (errors on stderr)."""
    err = Console(stderr=True)
    try:
        settings = resolve(Settings())
    except EndpointsUnavailable as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from exc
    try:
        if brokers:
            wait_for_brokers(settings)
        if registry:
            wait_for_registry(settings)
    except DependencyUnreachable as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(UNREACHABLE_EXIT_CODE) from exc
    return settings
