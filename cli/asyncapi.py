"""`multichannel asyncapi`: writes the AsyncAPI 3.0 document of the topics (docs/asyncapi.yaml), or checks it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from config.settings import Settings
from deploy.asyncapi import DOCUMENT_PATH, differs, render


def register(app: typer.Typer) -> None:
    """Attach `asyncapi` to the main app."""

    @app.command("asyncapi")
    def asyncapi_command(
        output: Annotated[
            Path, typer.Option("--output", "-o", help="Where to write it; `-` for stdout.", dir_okay=False)
        ] = DOCUMENT_PATH,
        check: Annotated[
            bool,
            typer.Option("--check", help="Write nothing; exit 1 when the file is not what would be written."),
        ] = False,
    ) -> None:
        """The AsyncAPI 3.0 document of every topic (key, partitions, cleanup policy, Avro schema, Kafka bindings,
        registry) for the MULTICHANNEL_ settings in force; the committed docs/asyncapi.yaml is the defaults'."""
        text = render(Settings())
        if str(output) == "-":
            sys.stdout.write(text)
            return
        if check:
            if differs(output, text):
                typer.echo(f"{output} is out of date: run `multichannel asyncapi` and commit it", err=True)
                raise typer.Exit(1)
            typer.echo(f"{output} is up to date", err=True)
            return
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
