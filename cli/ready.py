"""Settings for a command that needs the brokers or the registry: resolved, and their dependencies
answering (waited for up to MULTICHANNEL_STARTUP_TIMEOUT_S), or a one-line error and an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from config.endpoints import EndpointsUnavailable, resolve
from config.errors import CommandError
from config.reachability import wait_for_brokers, wait_for_registry
from config.settings import Settings


def fail(exc: CommandError) -> NoReturn:
    """End the command with the error's one line on stderr (never wrapped) and its exit code."""
    typer.echo(f"{exc.reason}: {exc}", err=True)
    raise typer.Exit(exc.exit_code) from exc


@contextmanager
def one_line_errors() -> Iterator[None]:
    """A `CommandError` raised in the block ends the command with one line instead of a traceback."""
    try:
        yield
    except CommandError as exc:
        fail(exc)


def ready_settings(*, brokers: bool, registry: bool) -> Settings:
    """Exit 2 when no endpoint is configured; exit 3 when one does not answer in time, 4 when the brokers
    refuse the credentials or the TLS handshake (errors on stderr)."""
    try:
        settings = resolve(Settings())
    except EndpointsUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    with one_line_errors():
        if brokers:
            wait_for_brokers(settings)
        if registry:
            wait_for_registry(settings)
    return settings
