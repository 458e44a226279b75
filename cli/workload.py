"""`multichannel generate` (a seeded workload, to JSON lines or straight to Kafka) and
`multichannel produce FILE` (publish a JSON-lines file of events)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.ready import ready_settings

err = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )


def _say(text: str) -> None:
    """One plain line on stderr: messages quote input values, which must not be read as rich markup."""
    err.out(text, highlight=False)


def _bad_payload(item: Any) -> tuple[str, bytes]:
    event = item.event
    raw = event.encode() if isinstance(event, str) else orjson.dumps(event)
    return item.key or "C-bad", raw


def register(app: typer.Typer) -> None:
    """Attach `generate` and `produce` to the main app."""

    @app.command("generate")
    def generate_command(
        seed: Annotated[int, typer.Option(help="Same seed, same stream.")] = 42,
        partners: Annotated[int, typer.Option(help="Partners across all programs.")] = 200,
        customers: Annotated[int, typer.Option(help="Customers (each with 1-2 accounts).")] = 2000,
        bad_rate: Annotated[float, typer.Option(help="Share of bad records of every dead-letter kind.")] = 0.01,
        events: Annotated[int | None, typer.Option(help="Stop after this many records.")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="JSON-lines file (default stdout).")] = None,
        publish: Annotated[bool, typer.Option("--publish", help="Publish to Kafka instead of writing JSON.")] = False,
        rate: Annotated[float, typer.Option(help="Events/s when publishing; 0 = as fast as possible.")] = 0.0,
        shape: Annotated[
            Literal["uniform", "realistic"],
            typer.Option(
                help="uniform: small accounts, terms from any day; realistic: heavy-tailed account sizes "
                "(some of 10,000+ subscriptions), terms ending on the 1st of a month, late partner changes."
            ),
        ] = "uniform",
        giant: Annotated[
            list[int] | None,
            typer.Option(
                "--giant", min=1, help="Add one account with this many subscriptions (repeatable: one account each)."
            ),
        ] = None,
        max_subscriptions: Annotated[
            int, typer.Option(min=1, help="realistic: the largest drawn account size (giant accounts excepted).")
        ] = 20_000,
        mix: Annotated[
            Literal["seed", "current"],
            typer.Option(
                help="The contract-1.1 fields the current rule book reads. seed: none (contract 1.0, the stream as "
                "it always was); current: 60% of licenses on new commerce with a cancellation window to 7 days "
                "after the term starts, 30% of partners Azure Expert MSP (half their accounts with Enterprise "
                "Agreement Azure), delegated admin that expires after 30 to 730 days."
            ),
        ] = "seed",
        nce_fraction: Annotated[
            float | None,
            typer.Option(min=0.0, max=1.0, help="Share of license purchases on new commerce (default: the mix's)."),
        ] = None,
        expert_msp_fraction: Annotated[
            float | None,
            typer.Option(min=0.0, max=1.0, help="Share of partners that are Azure Expert MSPs (default: the mix's)."),
        ] = None,
    ) -> None:
        """A realistic, seeded workload: JSON lines in the contract's format, or published to Kafka."""
        from producers.generator import MIXES, BadRecord, WorkloadGenerator, WorkloadSpec

        fields = dict(MIXES[mix])
        if nce_fraction is not None:
            fields["nce_fraction"] = nce_fraction
        if expert_msp_fraction is not None:
            fields["expert_msp_fraction"] = expert_msp_fraction
        spec = WorkloadSpec(
            seed=seed,
            partners=partners,
            customers=customers,
            bad_rate=bad_rate,
            max_events=events,
            shape=shape,
            giant_accounts=tuple(giant or ()),
            max_subscriptions=max_subscriptions,
            **fields,
        )
        stream = WorkloadGenerator(spec).events()
        if not publish:
            sink = output.open("wb") if output is not None else sys.stdout.buffer
            count = 0
            for item in stream:
                if isinstance(item, BadRecord):
                    line = item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event)
                else:
                    line = orjson.dumps(item)
                sink.write(line + b"\n")
                count += 1
            sink.flush()
            err.print(f"generated {count} records (seed {seed})")
            return
        from producers.publisher import EventPublisher

        settings = ready_settings(brokers=True, registry=True)
        published = rejected = 0
        started = time.monotonic()
        with EventPublisher(settings, auto_register=True) as publisher, _progress() as progress:
            task = progress.add_task("publishing", total=events)
            for n, item in enumerate(stream, start=1):
                if isinstance(item, BadRecord):
                    key, raw = _bad_payload(item)
                    publisher.publish_raw(settings.subscription_topic, key.encode(), raw, "bad")
                else:
                    publisher.publish(item)
                published += 1
                progress.advance(task)
                if rate > 0:
                    ahead = n / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)  # pacing to the requested rate
            undelivered = publisher.flush()
        rejected += undelivered
        err.print(f"published {published - undelivered}, undelivered {undelivered}")
        if undelivered:
            raise typer.Exit(1)

    @app.command("produce")
    def produce_command(
        file: Annotated[Path, typer.Argument(exists=True, help="JSON-lines file of events (contract format).")],
        timeout: Annotated[
            float, typer.Option(min=0.1, help="Longest wait for the brokers' delivery reports, in seconds.")
        ] = 30.0,
    ) -> None:
        """Publish a JSON-lines file of events; invalid lines are rejected before Kafka with their reason.
        Exit 1 when an event was not delivered (or its delivery was not confirmed within --timeout)."""
        from multichannel.errors import InvalidEvent
        from producers.publisher import DeliveryFailed, EventPublisher, json_object

        settings = ready_settings(brokers=True, registry=True)
        lines = file.read_bytes().splitlines()
        published = rejected = 0
        futures = []
        publisher = EventPublisher(
            settings, auto_register=True, delivery_timeout_ms=int(timeout * 1000), flush_timeout_s=timeout
        )
        with publisher, _progress() as progress:
            task = progress.add_task(f"publishing {file.name}", total=len(lines))
            for number, raw in enumerate(lines, start=1):
                progress.advance(task)
                if not raw.strip():
                    continue
                try:
                    futures.append(publisher.publish(json_object(raw)))
                except InvalidEvent as exc:
                    rejected += 1
                    _say(f"line {number}: {exc.reason}: {exc.message}")
            publisher.flush()
        failed = unconfirmed = 0
        for future in futures:
            if not future.done():  # no delivery report within the timeout: not known to be delivered
                unconfirmed += 1
                continue
            error = future.exception()
            if error is None:
                published += 1
            else:
                failed += 1
                _say(str(error) if isinstance(error, DeliveryFailed) else repr(error))
        if unconfirmed:
            err.print(f"{unconfirmed} events had no delivery report within {timeout:g} s (brokers unreachable?)")
        failed += unconfirmed
        err.print(f"published {published}, rejected {rejected}, undelivered {failed}")
        if failed:
            raise typer.Exit(1)
