"""`multichannel broker start|stop|status`: the local Kafka broker and Schema Registry."""

from __future__ import annotations

import typer
from rich.console import Console

from config.settings import Settings

broker_app = typer.Typer(help="Run a local Kafka 4.3.1 broker and Apicurio Schema Registry (no Docker needed).")
console = Console(stderr=True)


@broker_app.command("start")
def start() -> None:
    """Fetch the jars (once), start broker and registry on free loopback ports, print the endpoints."""
    from deploy.local.stack import start_stack

    s = Settings()
    with console.status("starting the local Kafka broker and Schema Registry…"):
        try:
            info = start_stack(s.cache_dir, s.local_state_dir)
        except Exception as exc:
            console.print(f"[red]could not start the local stack:[/red] {exc}")
            raise typer.Exit(1) from exc
    console.print(f"Kafka:           {info.bootstrap_servers}\nSchema Registry: {info.schema_registry_url}")
    print(f"MULTICHANNEL_BOOTSTRAP_SERVERS={info.bootstrap_servers}")
    print(f"MULTICHANNEL_SCHEMA_REGISTRY_URL={info.schema_registry_url}")


@broker_app.command("stop")
def stop() -> None:
    """Stop the local broker and registry and delete their data."""
    from deploy.local.stack import stop_stack

    s = Settings()
    console.print("stopped" if stop_stack(s.local_state_dir) else "nothing was running")


@broker_app.command("status")
def status() -> None:
    """Exit 0 when the local stack runs (printing its endpoints), 1 when it does not."""
    from deploy.local.stack import read_stack, stack_running

    info = read_stack(Settings().local_state_dir)
    if info is None or not stack_running(info):
        console.print("not running")
        raise typer.Exit(1)
    console.print(f"running: Kafka {info.bootstrap_servers}, Schema Registry {info.schema_registry_url}")


def register(app: typer.Typer) -> None:
    """Attach the `broker` group to the main app."""
    app.add_typer(broker_app, name="broker")
