"""The `multichannel` command: one typer app whose subcommands live in sibling modules."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from cli import (
    acls,
    asyncapi,
    bench,
    broker,
    classify,
    dashboard,
    dead_letters,
    demo,
    rules,
    schemas,
    service,
    tail,
    topics,
    workload,
)

app = typer.Typer(
    name="multichannel",
    help="Classify CSP customers' multichannel status from Kafka billing events.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def check_settings() -> None:
    """Refuse every command, before it starts, when a MULTICHANNEL_ variable is invalid (exit 2); then
    send its logs, librdkafka's lines included, to stderr as JSON, so that stdout is the command's output."""
    from config.logs import configure_logging
    from config.settings import Settings, describe_invalid_settings

    try:
        settings = Settings()
    except ValidationError as exc:
        typer.echo(f"invalid configuration:\n{describe_invalid_settings(exc)}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.log_level)


acls.register(app)
asyncapi.register(app)
bench.register(app)
broker.register(app)
topics.register(app)
classify.register(app)
rules.register(app)
schemas.register(app)
service.register(app)
tail.register(app)
demo.register(app)
dashboard.register(app)
workload.register(app)
dead_letters.register(app)


if __name__ == "__main__":
    app()
