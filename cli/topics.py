"""`multichannel topics create`: every topic of the contract with its partitions and cleanup policy."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from cli.ready import one_line_errors, ready_settings

topics_app = typer.Typer(help="Manage the pipeline's topics.")


@topics_app.command("create")
def create() -> None:
    """Create the input, output, dead-letter and changelog topics (existing ones are kept)."""
    from consumers.topics import ensure_topics

    s = ready_settings(brokers=True, registry=False)
    with one_line_errors():
        result = ensure_topics(s.kafka_client_config(), s.topic_specs, s.replication_factor, s.topic_configs)
    table = Table("topic", "partitions", "cleanup.policy", "result")
    for name, (partitions, policy) in s.topic_specs.items():
        table.add_row(name, str(partitions), policy, result[name])
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Attach the `topics` group to the main app."""
    app.add_typer(topics_app, name="topics")
