"""`multichannel classify`: the rule engine offline, JSON lines in and out."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from multichannel.errors import InvalidEvent
from multichannel.parse import parse_timestamp


def parse_as_of(value: str) -> datetime:
    """An ISO 8601 timestamp (UTC if no offset) or a YYYY-MM-DD date (00:00 UTC)."""
    text = value.strip()
    if len(text) == 10:
        text += "T00:00:00Z"
    try:
        return parse_timestamp(text, "as_of")
    except InvalidEvent as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 timestamp such as 2026-03-01T00:00:00Z") from exc


def register(app: typer.Typer) -> None:
    """Attach `classify` to the main app."""

    @app.command("classify")
    def classify_command(
        input_file: Annotated[
            Path | None, typer.Argument(help="JSON-lines file of events (default: standard input).", exists=True)
        ] = None,
        as_of: Annotated[
            str | None,
            typer.Option(
                "--as-of",
                help="Move the clock here at the end of input and fire due term-end timers "
                "(2026-06-01T00:00:00Z; a date alone means 00:00 UTC).",
            ),
        ] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write records here (default: standard output).")
        ] = None,
        rulebook_name: Annotated[
            str | None,
            typer.Option(
                "--rulebook",
                help="The rule book that decides: seed (2026-11.1) or current (2026-12.1); "
                "default MULTICHANNEL_RULEBOOK, else seed.",
            ),
        ] = None,
    ) -> None:
        """Classify events (JSON lines on stdin) into decisions, statuses and dead letters (JSON lines on stdout)."""
        from config.settings import Settings
        from consumers.classify_runner import classify_stream
        from consumers.runtime import tune_gc
        from multichannel.engine import Classifier
        from multichannel.rulebooks import rulebook

        tune_gc()
        settings = Settings()
        try:
            book = rulebook(rulebook_name or settings.rulebook)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--rulebook") from exc

        as_of_ts = parse_as_of(as_of) if as_of is not None else None
        source = input_file.open("rb") if input_file is not None else sys.stdin.buffer
        sink = output.open("wb") if output is not None else sys.stdout.buffer
        try:
            engine = Classifier(transactional=False, dedup_window=settings.dedup_window, rulebook=book)
            counts = classify_stream(source, sink, as_of=as_of_ts, engine=engine)
        finally:
            if input_file is not None:
                source.close()
            if output is not None:
                sink.close()
        print(counts.summary(), file=sys.stderr)
