"""`multichannel demo` (what `make run` runs): local broker and registry, topics, the classifier
service, the dashboard beside it (its URL printed), a generated workload at a moderate rate, and the
live decision table; Ctrl-C or SIGTERM stops everything and prints a summary."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from config.logs import configure_logging
from config.settings import PROJECT_ROOT, Settings

console = Console()


def _service_env(settings: Settings, metrics_port: int, **updates: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")}
    env.update(settings.model_copy(update={"metrics_port": metrics_port, **updates}).to_env())
    return env


def _dashboard_port(wanted: int) -> int:
    """The configured dashboard port when it is free, else any free one (a second demo, another program)."""
    from deploy.local.process import free_port

    if wanted:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed port is free
            try:
                s.bind(("127.0.0.1", wanted))
            except OSError:
                return free_port()
            return wanted
    return free_port()


def _start(log_path: Path, env: dict[str, str], *command: str) -> subprocess.Popen[bytes]:
    """A `multichannel` subcommand logging to `log_path`, in its own session like the broker's: Ctrl-C or a
    SIGTERM to the terminal's group reaches the demo alone, which reads the service's counts before it
    stops its children, with one SIGTERM each."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), *command],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def _scrape(port: int) -> dict[str, Counter[str]]:
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {
        "multichannel_event_outcomes": "outcome",
        "multichannel_dead_letters": "reason",
        "multichannel_decisions": "decision",
    }
    out: dict[str, Counter[str]] = {name: Counter() for name in wanted}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return out
    for family in text_string_to_metric_families(text):
        label = wanted.get(family.name)
        if label is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[family.name][sample.labels[label]] += int(sample.value)
    return out


def _publish_workload(settings: Settings, rate: float, stop: threading.Event, published: Counter[str]) -> None:
    from producers.generator import BadRecord, WorkloadGenerator, WorkloadSpec
    from producers.publisher import EventPublisher

    with EventPublisher(settings, auto_register=True) as publisher:
        interval = 1.0 / rate if rate > 0 else 0.0
        next_at = time.monotonic()
        for item in WorkloadGenerator(WorkloadSpec(seed=7, partners=60, customers=3000, bad_rate=0.01)).events():
            if stop.is_set():
                return
            if isinstance(item, BadRecord):
                raw = item.event if isinstance(item.event, str) else str(item.event)
                publisher.publish_raw(settings.subscription_topic, (item.key or "C-bad").encode(), raw.encode(), "bad")
                published["bad record"] += 1
            else:
                publisher.publish(item)
                published[item["event_type"]] += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return


def register(app: typer.Typer) -> None:
    """Attach `demo` to the main app."""

    @app.command("demo")
    def demo_command(
        rate: Annotated[float, typer.Option(help="Events published per second.")] = 200.0,
    ) -> None:
        """Run the whole pipeline locally on a generated workload and show decisions as they arrive."""
        from config.endpoints import resolve
        from consumers.tail import DecisionTail, TailView
        from consumers.topics import ensure_topics
        from deploy.local.process import free_port
        from deploy.local.stack import local_stack

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        base = Settings(auto_register_schemas=True)
        # the demo's own logs (its clients' lines included) go to a file: the terminal shows the live table
        demo_log = Path(base.local_state_dir) / "demo.log"
        configure_logging(base.log_level, file=demo_log)
        with ExitStack() as stack:
            if not base.bootstrap_servers:
                with console.status("starting local Kafka 4.3.1 and Apicurio Registry (first run downloads jars)…"):
                    info = stack.enter_context(local_stack(base.cache_dir, base.local_state_dir))
                console.print(f"Kafka {info.bootstrap_servers}, Schema Registry {info.schema_registry_url}")
            settings = resolve(base)
            ensure_topics(
                settings.kafka_client_config(),
                settings.topic_specs,
                settings.replication_factor,
                settings.topic_configs,
            )
            metrics_port = free_port()
            log_path = Path(settings.local_state_dir) / "demo-service.log"
            service = _start(log_path, _service_env(settings, metrics_port), "run")
            dashboard_port = _dashboard_port(settings.dashboard_port)
            dashboard_log = Path(settings.local_state_dir) / "demo-dashboard.log"
            dashboard = _start(
                dashboard_log,
                _service_env(
                    settings,
                    metrics_port,
                    dashboard_port=dashboard_port,
                    dashboard_metrics_url=settings.dashboard_metrics_url or f"http://127.0.0.1:{metrics_port}/metrics",
                ),
                "dashboard",
            )
            published: Counter[str] = Counter()
            producer = threading.Thread(
                target=_publish_workload, args=(settings, rate, stop, published), name="workload", daemon=True
            )
            producer.start()
            console.print(
                f"classifier service pid {service.pid}, metrics on :{metrics_port}, log {log_path}; demo log {demo_log}"
            )
            url = f"http://{settings.dashboard_host}:{dashboard_port}/"
            if settings.dashboard_token.get_secret_value():
                url += " (open it once with ?token=<MULTICHANNEL_DASHBOARD_TOKEN>)"
            console.print(f"dashboard [bold]{url}[/bold], log {dashboard_log}")
            tail = DecisionTail(settings)
            view = TailView()
            try:
                with Live(view.render(), console=console, refresh_per_second=4) as live:
                    while not stop.is_set() and service.poll() is None:
                        for record in tail.poll(timeout_s=0.25):
                            view.add(record)
                        live.update(view.render())
            finally:
                stop.set()
                producer.join(10)
                counts = _scrape(metrics_port)
                code = _stop(service)
                _stop(dashboard)
                tail.close()
                _summary(published, counts, view, code)
        console.print("local stack stopped" if not base.bootstrap_servers else "done")
        sys.exit(0)


def _summary(published: Counter[str], counts: dict[str, Counter[str]], view: object, service_exit: int) -> None:
    table = Table("what", "count", title="demo summary")
    table.add_row("events published", str(sum(published.values())))
    for kind, n in sorted(published.items()):
        table.add_row(f"  {kind}", str(n))
    for outcome, n in sorted(counts["multichannel_event_outcomes"].items()):
        table.add_row(f"input events {outcome}", str(n))
    for decision, n in sorted(counts["multichannel_decisions"].items()):
        table.add_row(f"decisions {decision}", str(n))
    for reason, n in sorted(counts["multichannel_dead_letters"].items()):
        table.add_row(f"dead letters {reason}", str(n))
    table.add_row("service exit code", str(service_exit))
    console.print(table)
