"""`multichannel rules preview`: what would change if the running deployment switched rule books."""

from __future__ import annotations

import os
import resource
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.classify import parse_as_of
from cli.ready import one_line_errors, ready_settings

if TYPE_CHECKING:
    from multichannel.rulebooks import RuleBook

rules_app = typer.Typer(help="The rule books: what switching from one to the other would change.")
err = Console(stderr=True)


def _book(name: str, option: str) -> RuleBook:
    from multichannel.rulebooks import rulebook

    try:
        return rulebook(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest worker process, in MB (Linux reports KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, workers


@rules_app.command("preview")
def preview(
    to: Annotated[str, typer.Option("--to", help="The rule book to switch to: seed or current.")],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="The rule book the deployment runs (default MULTICHANNEL_RULEBOOK, else seed)."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Compare at this clock (2026-12-01T00:00:00Z; default: now, as a restart would)."),
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="An export of the deployment's events (JSON lines) instead of its committed state.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write every changed subscription, both verdicts: FILE.csv or FILE.jsonl."),
    ] = None,
    form: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: the output file's suffix).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Processes comparing changelog partitions (default: the cores).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Partners and subscriptions listed by name.")] = 10,
) -> None:
    """Evaluate every subscription under both books, read from the deployment's committed state
    (read_committed, without joining its group) or from an export of its events, and print what changes."""
    from config.settings import Settings
    from consumers.preview_output import OutputForm, form_of
    from consumers.preview_source import Books, changelog_records, load_partners, preview_export, preview_live
    from consumers.runtime import tune_gc

    after = _book(to, "--to")
    before = _book(from_ or Settings().rulebook, "--from")
    clock = parse_as_of(as_of) if as_of is not None else datetime.now(UTC).replace(microsecond=0)
    output_form: OutputForm = "jsonl"
    if output is not None:
        try:
            output_form = form_of(output, form)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--output") from exc
        if not output.parent.is_dir():
            raise typer.BadParameter(f"{output.parent} is not a directory", param_hint="--output")
    books = Books(before, after, clock)
    tune_gc()
    with one_line_errors():
        if events is not None:
            settings = Settings()
            with _progress() as bar:
                task = bar.add_task(f"events of {events.name}", total=None)
                summary, counts = preview_export(
                    events, settings, books, output=output, form=output_form, progress=lambda n: bar.advance(task, n)
                )
            err.print(counts.summary())
        else:
            settings = ready_settings(brokers=True, registry=True)
            with err.status("reading the partner table…"):
                partners = load_partners(settings)
                sizes = changelog_records(settings)
            n = workers or max(1, min(os.cpu_count() or 1, len(sizes)))
            with _progress() as bar:
                task = bar.add_task(f"{settings.changelog_topic}, {len(sizes)} partitions", total=sum(sizes.values()))
                live = preview_live(
                    settings,
                    partners,
                    books,
                    sorted(sizes),
                    output=output,
                    form=output_form,
                    workers=n,
                    progress=lambda r: bar.advance(task, r),
                )
            summary = live.summary
            err.print(f"read {live.records:,} changelog records, {len(partners):,} partners, {n} worker(s)")
    from cli.preview_report import render

    render(Console(), summary, top=top, output=output)
    own, largest = _peak_rss_mb()
    workers_part = f", {largest:,.0f} MB (largest worker process)" if largest else ""
    err.print(f"peak memory: {own:,.0f} MB (this process){workers_part}")


def register(app: typer.Typer) -> None:
    """Attach the `rules` group to the main app."""
    app.add_typer(rules_app, name="rules")
