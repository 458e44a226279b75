"""Subcommands: `schemas register` and `schemas check` against the Schema Registry.

Subjects follow the topic-name strategy for the topics in Settings, so a deployment with other
topic names registers and checks its own subjects. `check` is meant for CI before a release: it
fails, naming the field, when a local change would break readers of the registered version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cli.ready import ready_settings
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import topic_schemas
from schemas import SCHEMAS_DIR, load_dir, subject_for
from schemas.compat import LEVELS, incompatibilities
from schemas.wire import RegistryUnavailableError, registry_call

_DEFAULT_LEVEL = "BACKWARD"

SchemasDir = Annotated[
    Path,
    typer.Option(
        "--schemas-dir",
        help="Directory of the .avsc files (default: the package's schemas).",
        exists=True,
        file_okay=False,
        resolve_path=True,
    ),
]


@dataclass(frozen=True, slots=True)
class SubjectCheck:
    """The outcome of checking one local schema against its subject's latest version."""

    subject: str
    schema_name: str
    latest_version: int | None  # None: the subject is not registered yet
    level: str
    compatible: bool
    problems: tuple[str, ...]


def _subjects(settings: Settings, schemas_dir: Path) -> list[tuple[str, str, str]]:
    """(subject, schema name, schema text) of every topic with Avro values."""
    texts = load_dir(schemas_dir)
    return [(subject_for(topic), name, texts[name]) for topic, name in topic_schemas(settings).items()]


def register_all(
    client: SchemaRegistryClient, settings: Settings, schemas_dir: Path, level: str = _DEFAULT_LEVEL
) -> list[tuple[str, str, int, int | None]]:
    """Register every subject with `level` compatibility: (subject, schema name, id, version) each.

    The level is set before registering, so an incompatible schema is refused by the registry;
    a registry that refuses a level for a subject it does not know yet gets it right after.
    """
    rows: list[tuple[str, str, int, int | None]] = []
    for subject, name, text in _subjects(settings, schemas_dir):
        schema = Schema(text, "AVRO")
        with registry_call(f"registering {subject}", answers=(404, 409, 422)):
            try:
                client.set_compatibility(subject, level)
                level_set = True
            except SchemaRegistryError as exc:
                if exc.http_status_code != 404:
                    raise
                level_set = False
            schema_id = client.register_schema(subject, schema)
            if not level_set:
                client.set_compatibility(subject, level)
            version = client.lookup_schema(subject, schema).version
        rows.append((subject, name, int(schema_id), None if version is None else int(version)))
    return rows


def _subject_level(client: SchemaRegistryClient, subject: str) -> str:
    """The subject's own compatibility level, else BACKWARD (what `register` sets).

    The global level is not used: Apicurio's is NONE (no rule), which would make `check` pass anything.
    """
    try:
        with registry_call("reading the compatibility level"):
            level = client.get_compatibility(subject)
    except SchemaRegistryError:  # 404: the subject has no level of its own
        return _DEFAULT_LEVEL
    return level.upper() if isinstance(level, str) and level.upper() in LEVELS else _DEFAULT_LEVEL


def _registry_accepts(client: SchemaRegistryClient, subject: str, text: str) -> bool:
    with registry_call(f"testing compatibility of {subject}"):
        return bool(client.test_compatibility(subject, Schema(text, "AVRO"), verbose=True))


def check_all(
    client: SchemaRegistryClient, settings: Settings, schemas_dir: Path, level: str | None = None
) -> list[SubjectCheck]:
    """Check every local schema against its subject's latest version.

    A schema is incompatible when the Avro resolution rules say so at `level` (default: the
    subject's level), which names the field, or, at the subject's own level, when the registry
    says so (a registry without a rule for the subject accepts anything, hence the local rules).
    """
    results: list[SubjectCheck] = []
    for subject, name, text in _subjects(settings, schemas_dir):
        try:
            with registry_call(f"reading {subject}"):
                latest = client.get_latest_version(subject)
        except SchemaRegistryError:  # 404: nothing registered, nothing to break
            results.append(SubjectCheck(subject, name, None, level or _DEFAULT_LEVEL, True, ()))
            continue
        subject_level = level or _subject_level(client, subject)
        label = f"registered version {latest.version}"
        problems = incompatibilities(
            text, latest.schema.schema_str or "", subject_level, new="the local schema", old=label
        )
        # The registry judges at the subject's own level; its reasons do not reach us (the Python client
        # returns only the boolean, and Apicurio's Confluent API gives no messages even with verbose=true).
        if level is None and not problems and not _registry_accepts(client, subject, text):
            problems.append(f"registry: not {subject_level} compatible with {label} (it gave no reason)")
        results.append(SubjectCheck(subject, name, latest.version, subject_level, not problems, tuple(problems)))
    return results


def _level(option: str) -> str:
    if option.upper() not in LEVELS:
        raise typer.BadParameter(f"not one of {', '.join(LEVELS)}", param_hint="--compatibility")
    return option.upper()


def _client() -> tuple[Settings, SchemaRegistryClient]:
    settings = ready_settings(brokers=False, registry=True)
    return settings, registry_client(settings)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the main app."""
    schemas_app = typer.Typer(help="Avro schemas in the Schema Registry.", no_args_is_help=True)
    app.add_typer(schemas_app, name="schemas")

    @schemas_app.command("register")
    def register_command(
        schemas_dir: SchemasDir = SCHEMAS_DIR,
        compatibility: Annotated[
            str, typer.Option(help=f"Compatibility level of every subject: {', '.join(LEVELS)}.")
        ] = _DEFAULT_LEVEL,
    ) -> None:
        """Register every topic's value schema (subject `<topic>-value`) with a compatibility level."""
        console, level = Console(), _level(compatibility)
        settings, client = _client()
        try:
            rows = register_all(client, settings, schemas_dir, level)
        except RegistryUnavailableError as exc:
            console.print(f"[red]schema registry unavailable:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from exc
        except SchemaRegistryError as exc:
            console.print(f"[red]refused:[/red] {escape(str(exc))}; `multichannel schemas check` names the field")
            raise typer.Exit(1) from exc
        table = Table(title=f"Registered at {settings.schema_registry_url} ({level})")
        for column in ("subject", "schema", "id", "version"):
            table.add_column(column)
        for subject, name, schema_id, version in rows:
            table.add_row(subject, name, str(schema_id), "?" if version is None else str(version))
        console.print(table)

    @schemas_app.command("check")
    def check_command(
        schemas_dir: SchemasDir = SCHEMAS_DIR,
        compatibility: Annotated[
            str | None, typer.Option(help="Level to check at (default: each subject's level in the registry).")
        ] = None,
    ) -> None:
        """Test the local schemas against the latest registered versions; exit 1 when one would break readers."""
        console, level = Console(), None if compatibility is None else _level(compatibility)
        settings, client = _client()
        try:
            results = check_all(client, settings, schemas_dir, level)
        except RegistryUnavailableError as exc:
            console.print(f"[red]schema registry unavailable:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from exc
        table = Table(title=f"Local schemas against {settings.schema_registry_url}")
        for column in ("subject", "schema", "latest", "level", "result"):
            table.add_column(column)
        for r in results:
            verdict = "[green]compatible[/green]" if r.compatible else "[red]INCOMPATIBLE[/red]"
            latest = "not registered" if r.latest_version is None else str(r.latest_version)
            table.add_row(r.subject, r.schema_name, latest, r.level, verdict)
        console.print(table)
        broken = [r for r in results if not r.compatible]
        for r in broken:
            for problem in r.problems:
                console.print(f"[red]{escape(r.subject)}[/red]: {escape(problem)}", soft_wrap=True)
        if broken:
            raise typer.Exit(1)
