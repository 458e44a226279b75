"""`multichannel tail`: what a dashboard sees, live."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.live import Live

from cli.ready import one_line_errors, ready_settings


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def register(app: typer.Typer) -> None:
    """Attach `tail` to the main app."""

    @app.command("tail")
    def tail_command(
        partner: Annotated[str | None, typer.Option(help="Only this account partner.")] = None,
        customer: Annotated[str | None, typer.Option(help="Only this customer.")] = None,
        json_lines: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
        from_end: Annotated[bool, typer.Option("--from-end", help="Only records that arrive from now on.")] = False,
    ) -> None:
        """Show committed decisions and customer statuses as they arrive (read_committed)."""
        from consumers.tail import DecisionTail, TailView

        settings = ready_settings(brokers=True, registry=True)
        tail = DecisionTail(settings, from_end=from_end)
        view = TailView(partner, customer)
        try:
            with one_line_errors():
                if json_lines:
                    while True:
                        for record in tail.poll():
                            if view.accepts(record):
                                print(orjson.dumps(record, default=_json_default).decode(), flush=True)
                with Live(view.render(), refresh_per_second=4) as live:
                    while True:
                        for record in tail.poll():
                            if view.accepts(record):
                                view.add(record)
                        live.update(view.render())
        except KeyboardInterrupt:
            pass
        finally:
            tail.close()
