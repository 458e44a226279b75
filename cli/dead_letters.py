"""`multichannel dead-letters list|show|replay`: look at the dead letters, and re-drive them to their source
topics exactly once (unchanged, or edited as JSON lines and validated as `multichannel produce` validates)."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.classify import parse_as_of
from cli.ready import one_line_errors, ready_settings
from multichannel.redrive import (
    DeadLetterRecord,
    GroupProgress,
    OffsetRange,
    ScanWindow,
    Selection,
    count_by_reason,
    parse_coordinate,
    scan_window,
)

if TYPE_CHECKING:
    from config.settings import Settings
    from consumers.redrive import DeadLetterDecoder, TopicReader
    from producers.publisher import EventPublisher
    from producers.redrive import Outgoing, RedriveTransactions

dead_letters_app = typer.Typer(help="The dead letters: list, show and re-drive them (exactly once).")
err = Console(stderr=True)

ReasonOption = Annotated[
    list[str] | None, typer.Option("--reason", help="Only this reason code (repeatable), e.g. SCHEMA_MISMATCH.")
]
SourceOption = Annotated[list[str] | None, typer.Option("--source-topic", help="Only from this topic (repeatable).")]
SinceOption = Annotated[
    str | None, typer.Option(help="Only dead-lettered at or after this time (ISO 8601, or YYYY-MM-DD).")
]
UntilOption = Annotated[str | None, typer.Option(help="Only dead-lettered before this time.")]
OffsetsOption = Annotated[
    list[str] | None,
    typer.Option("--offsets", help="Only these dead-letter offsets: P:O, P:FIRST-LAST or P:FIRST- (repeatable)."),
]


def _say(text: str) -> None:
    """One plain line on stderr: messages quote input values, which must not be read as rich markup."""
    err.out(text, highlight=False)


def _selection(
    reasons: list[str] | None,
    source_topics: list[str] | None,
    since: str | None,
    until: str | None,
    offsets: list[str] | None,
) -> Selection:
    ranges: list[OffsetRange] = []
    for text in offsets or ():
        try:
            ranges.append(parse_coordinate(text))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--offsets") from None

    def ms(value: str | None) -> int | None:
        return None if value is None else int(parse_as_of(value).timestamp() * 1000)

    return Selection(
        reasons=frozenset(reasons or ()),
        source_topics=frozenset(source_topics or ()),
        since_ms=ms(since),
        until_ms=ms(until),
        ranges=tuple(ranges),
    )


@contextmanager
def _command_errors() -> Iterator[None]:
    """A command error, or a Kafka call that failed, ends the command with one line (exit 1 unless it says)."""
    from confluent_kafka import KafkaException

    with one_line_errors():
        try:
            yield
        except KafkaException as exc:
            _say(f"KAFKA_ERROR: {exc.args[0] if exc.args else exc}")
            raise typer.Exit(1) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _windows(
    reader: TopicReader, selection: Selection, committed: dict[int, int | None] | None = None
) -> dict[int, ScanWindow]:
    """The window of each dead-letter partition to read; `committed`: the re-drive group's offsets (replay)."""
    partitions = reader.partitions()
    times = reader.offsets_for_time(partitions, selection.since_ms) if selection.since_ms is not None else {}
    windows: dict[int, ScanWindow] = {}
    for p in partitions:
        low, high = reader.watermarks(p)
        windows[p] = scan_window(
            p,
            low,
            high,
            selection,
            times.get(p),
            redrive=committed is not None,
            committed=None if committed is None else committed.get(p),
        )
    return windows


def _scan(reader: TopicReader, windows: dict[int, ScanWindow], progress: Progress) -> Iterator[DeadLetterRecord]:
    """Every committed dead letter of the windows, with a progress bar over their offsets."""
    from consumers.redrive import dead_letter_record

    task = progress.add_task("reading dead letters", total=sum(w.end - w.start for w in windows.values()))
    for msg in reader.read({p: (w.start, w.end) for p, w in windows.items()}, lambda n: progress.advance(task, n)):
        yield dead_letter_record(msg)


def _selected(settings: Settings, selection: Selection) -> list[DeadLetterRecord]:
    from consumers.redrive import TopicReader

    reader = TopicReader(settings, settings.dead_letter_topic)
    try:
        with _progress() as progress:
            return [r for r in _scan(reader, _windows(reader, selection), progress) if selection.accepts(r)]
    finally:
        reader.close()


def _time(ms: int) -> str:
    if ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def summary(record: DeadLetterRecord) -> dict[str, Any]:
    """A dead letter without its value, as `list --json` prints it."""
    return {
        "dead_letter": record.coordinate,
        "dead_lettered_at": _time(record.timestamp_ms),
        "reason": record.reason,
        "message": record.message,
        "source_topic": record.source_topic,
        "source_partition": record.source_partition,
        "source_offset": record.source_offset,
        "source_timestamp": _time(record.source_timestamp_ms),
        "key": _text(record.key),
        "value_bytes": 0 if record.value is None else len(record.value),
        "truncated": record.truncated,
    }


def edit_line(record: DeadLetterRecord, decoder: DeadLetterDecoder) -> dict[str, Any]:
    """A dead letter as one line to edit (`show --json`, `replay --edit`): where it is, why, and its value
    decoded as the event (null when it does not decode), with the check it still fails."""
    event, error = decoder.decode(record)
    if record.truncated and error is None:
        error_text: str | None = f"cut to fit the dead-letter topic: {record.truncated}"
    else:
        error_text = None if error is None else f"{error.reason}: {error.message}"
    return {
        "dead_letter": record.coordinate,
        "reason": record.reason,
        "message": record.message,
        "source_topic": record.source_topic,
        "key": _text(record.key),
        "event": event,
        "fails": error_text,
    }


def _counts_table(counts: dict[str, int]) -> Table:
    table = Table("reason", "dead letters", title="counts by reason")
    for reason, n in counts.items():
        table.add_row(reason, f"{n:,}")
    table.add_row("total", f"{sum(counts.values()):,}", style="bold")
    return table


@dead_letters_app.command("list")
def list_command(
    reason: ReasonOption = None,
    source_topic: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    offsets: OffsetsOption = None,
    limit: Annotated[int, typer.Option(min=0, help="Rows shown in the table (counts are of all).")] = 50,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON line per dead letter, then the counts.")] = False,
) -> None:
    """The committed dead letters that match, and their counts by reason (read_committed, nothing committed)."""
    import orjson

    selection = _selection(reason, source_topic, since, until, offsets)
    settings = ready_settings(brokers=True, registry=False)
    with _command_errors():
        records = _selected(settings, selection)
    counts = count_by_reason(records)
    if json_lines:
        for record in records:
            print(orjson.dumps(summary(record)).decode())
        print(orjson.dumps({"counts": counts, "total": len(records)}).decode())
        return
    out = Console()
    table = Table("dead letter", "dead-lettered at", "reason", "source", "key", "message", title="dead letters")
    for r in records[:limit] if limit else records:
        source = f"{r.source_topic}:{r.source_partition}:{r.source_offset}"
        table.add_row(r.coordinate, _time(r.timestamp_ms), r.reason, source, _text(r.key) or "", r.message[:80])
    out.print(table)
    if limit and len(records) > limit:
        out.print(f"{len(records) - limit:,} more not shown (--limit)")
    out.print(_counts_table(counts))


@dead_letters_app.command("show")
def show_command(
    coordinates: Annotated[
        list[str] | None, typer.Argument(help="Dead letters to show, P:O (as `list` prints them); else the filters.")
    ] = None,
    reason: ReasonOption = None,
    source_topic: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    offsets: OffsetsOption = None,
    json_lines: Annotated[
        bool, typer.Option("--json", help="The lines `replay --edit --from-file` takes: one per dead letter.")
    ] = False,
) -> None:
    """Each matching dead letter whole: its headers, and its value decoded as the event it holds (or why not)."""
    from consumers.redrive import DeadLetterDecoder, to_json

    selection = _selection(reason, source_topic, since, until, [*(offsets or ()), *(coordinates or ())])
    settings = ready_settings(brokers=True, registry=True)
    with _command_errors():
        records = _selected(settings, selection)
        decoder = DeadLetterDecoder(settings)
    for record in records:
        line = edit_line(record, decoder)
        if json_lines:
            print(to_json(line).decode())
            continue
        print(f"dead letter {record.coordinate}, dead-lettered at {_time(record.timestamp_ms)}")
        print(f"  reason   {record.reason}: {record.message}")
        print(f"  source   {record.source_topic}:{record.source_partition}:{record.source_offset}", end="")
        print(f" at {_time(record.source_timestamp_ms)}")
        print(f"  key      {line['key']}")
        decoded = "decoded" if line["event"] is not None else "not decoded"
        print(f"  value    {decoded}, {summary(record)['value_bytes']} bytes")
        if record.truncated:
            print(f"  cut      {record.truncated} (cannot be re-driven unchanged)")
        for name, value in record.own_headers:
            print(f"  header   {name}={_text(value)}")
        if line["event"] is not None:
            print(f"  event    {to_json(line['event']).decode()}")
        if line["fails"]:
            print(f"  fails    {line['fails']}")
    _say(f"{len(records)} dead letters: " + ", ".join(f"{k} {v}" for k, v in count_by_reason(records).items()))


@dataclass
class Tally:
    """What a replay did, for its summary line."""

    redriven: int = 0
    edited: int = 0
    already: int = 0
    passed: Counter[str] = field(default_factory=Counter)
    transactions: int = 0

    def line(self, dry_run: bool) -> str:
        verb = "would re-drive" if dry_run else "re-driven"
        passed = ", ".join(f"{why} {n}" for why, n in sorted(self.passed.items())) or "none"
        return (
            f"{verb} {self.redriven} ({self.edited} edited) in {self.transactions} transactions, "
            f"already re-driven {self.already}, passed over: {passed}"
        )


SKIP_NOT_SELECTED = "not selected"
SKIP_CUT = "cut to fit (use --edit)"
SKIP_LEFT_OUT = "left out of the edit"
SKIP_NO_SOURCE = "no source.topic header"
DONE = "done"


def _classified(
    records: Iterable[DeadLetterRecord], selection: Selection, done: set[tuple[int, int]], edit: bool
) -> Iterator[tuple[DeadLetterRecord, str | None]]:
    """Each scanned dead letter with why it is passed over, DONE when the audit has it, or None: to re-drive."""
    for record in records:
        if (record.partition, record.offset) in done:  # selected or not: it holds the group's offset no longer
            yield record, DONE
        elif not selection.accepts(record):
            yield record, SKIP_NOT_SELECTED
        elif not record.source_topic:
            yield record, SKIP_NO_SOURCE
        elif record.truncated and not edit:
            yield record, SKIP_CUT
        else:
            yield record, None


@dataclass
class Replay:
    """One run of `replay`: walks the classified dead letters in offset order and re-drives them in
    transactions of `batch` records, moving the re-drive group's offsets with them."""

    settings: Settings
    transactions: RedriveTransactions | None
    """None for a dry run."""
    group_metadata: Any
    batch_size: int
    progress: GroupProgress = field(default_factory=GroupProgress)
    tally: Tally = field(default_factory=Tally)
    planned: list[Outgoing] = field(default_factory=list)

    def walk(self, items: Iterable[tuple[DeadLetterRecord, Outgoing | str]]) -> None:
        batch: list[Outgoing] = []
        for record, what in items:
            if isinstance(what, str):
                if what == DONE:
                    self.tally.already += 1
                    self.progress.redriven(record)
                else:
                    self.tally.passed[what] += 1
                    self.progress.passed_over(record)
                continue
            batch.append(what)
            self.progress.redriven(record)
            if len(batch) >= self.batch_size:
                self._commit(batch)
                batch = []
        if batch or self.progress.moved:
            self._commit(batch)

    def _commit(self, batch: list[Outgoing]) -> None:
        offsets = self.progress.take_moved()
        if self.transactions is not None:
            self.transactions.commit(batch, offsets, self.group_metadata)
        else:
            self.planned.extend(batch)
        self.tally.transactions += 1
        self.tally.redriven += len(batch)
        self.tally.edited += sum(1 for o in batch if o.edited)


def _edited_lines(lines: list[dict[str, Any]], from_file: Path | None) -> list[bytes]:
    """The edited JSON lines: `from_file`'s, or the user's, who edits `lines` in $VISUAL or $EDITOR."""
    from consumers.redrive import to_json

    if from_file is not None:
        return from_file.read_bytes().splitlines()
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        _say("--edit needs $EDITOR (or $VISUAL), or --from-file with the edited lines of `show --json`")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dead-letters.jsonl"
        path.write_bytes(b"".join(to_json(line) + b"\n" for line in lines))
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if done.returncode != 0:
            _say(f"the editor exited with {done.returncode}: nothing re-driven")
            raise typer.Exit(1)
        return path.read_bytes().splitlines()


def _validated_edits(
    raw_lines: list[bytes],
    candidates: dict[str, DeadLetterRecord],
    done: set[str],
    publisher: EventPublisher,
) -> dict[str, Outgoing]:
    """Dead letter → its edited event, validated and encoded as `produce` does; every bad line is reported
    and the command exits 1 with nothing re-driven."""
    from multichannel.errors import InvalidEvent
    from producers.publisher import json_object
    from producers.redrive import edited

    out: dict[str, Outgoing] = {}
    bad = 0
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        where = f"line {number}"
        try:
            obj = json_object(raw)
            coordinate = obj.get("dead_letter")
            where += f" (dead letter {coordinate})"
            if coordinate in done:
                _say(f"{where}: already re-driven, left alone")
                continue
            if not isinstance(coordinate, str) or coordinate not in candidates:
                raise ValueError("names no dead letter of this replay's selection (keep each line's dead_letter)")
            if coordinate in out:
                raise ValueError("the dead letter has another line already")
            event = obj.get("event")
            if not isinstance(event, dict):
                raise ValueError("`event` must hold the event as a JSON object (or delete the line)")
            out[coordinate] = edited(publisher, candidates[coordinate], event)
        except InvalidEvent as exc:
            bad += 1
            _say(f"{where}: {exc.reason}: {exc.message}")
        except ValueError as exc:
            bad += 1
            _say(f"{where}: {exc}")
    if bad:
        _say(f"{bad} edited lines refused: nothing re-driven (fix them and run again)")
        raise typer.Exit(1)
    return out


def _plan_table(planned: list[Outgoing]) -> Table:
    table = Table("dead letter", "reason", "source", "to topic", "key", "edited", title="would re-drive")
    for o in planned:
        r = o.dead_letter
        source = f"{r.source_topic}:{r.source_partition}:{r.source_offset}"
        table.add_row(r.coordinate, r.reason, source, o.topic, _text(o.key) or "", "yes" if o.edited else "")
    return table


@dead_letters_app.command("replay")
def replay_command(
    reason: ReasonOption = None,
    source_topic: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    offsets: OffsetsOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be re-driven; write and commit nothing.")
    ] = False,
    edit: Annotated[
        bool, typer.Option("--edit", help="Fix the events first: as JSON lines in $EDITOR, or --from-file.")
    ] = False,
    from_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="With --edit: the edited lines (`show --json`'s form)."),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Dead letters re-driven per transaction.")] = 100,
    halt_in_transaction: Annotated[int | None, typer.Option(hidden=True, min=1)] = None,
) -> None:
    """Re-drive the matching dead letters to their source topics, exactly once: each transaction re-produces
    them, writes their audit entries and commits the re-drive group's offsets (MULTICHANNEL_REDRIVE_GROUP).
    Dead letters the audit has are never re-driven again. Exit 1 when an edit is refused or a transaction fails."""
    if from_file is not None and not edit:
        raise typer.BadParameter("--from-file goes with --edit", param_hint="--from-file")
    selection = _selection(reason, source_topic, since, until, offsets)
    settings = ready_settings(brokers=True, registry=True)
    with _command_errors():
        tally, planned = _replay(settings, selection, dry_run, edit, from_file, batch, halt_in_transaction)
    if dry_run:
        Console().print(_plan_table(planned))
    _say(tally.line(dry_run))


def _replay(
    settings: Settings,
    selection: Selection,
    dry_run: bool,
    edit: bool,
    from_file: Path | None,
    batch: int,
    halt: int | None,
) -> tuple[Tally, list[Outgoing]]:
    from consumers.redrive import DeadLetterDecoder, TopicReader, redriven_dead_letters
    from consumers.topics import ensure_topics
    from producers.publisher import EventPublisher
    from producers.redrive import Outgoing, RedriveTransactions

    transactions: RedriveTransactions | None = None
    reader = TopicReader(settings, settings.dead_letter_topic, group=settings.redrive_group_id)
    try:
        audit = settings.redrive_audit_topic_name
        if not dry_run and not reader.exists(audit):  # created here when `topics create` has not made it
            ensure_topics(
                settings.kafka_client_config(), {audit: settings.topic_specs[audit]}, settings.replication_factor
            )
        if not dry_run:  # first: fence an earlier replay, whose open transaction is aborted before anything is read
            transactions = RedriveTransactions(settings, halt_in_transaction=halt)
        committed = reader.committed(reader.partitions())
        done = redriven_dead_letters(settings, settings.redrive_audit_topic_name)
        windows = _windows(reader, selection, committed)
        replay = Replay(settings, transactions, reader.group_metadata(), batch)
        for window in windows.values():
            replay.progress.start(window)
        with _progress() as progress:
            items = _classified(_scan(reader, windows, progress), selection, done, edit)
            if not edit:
                replay.walk((r, Outgoing.unchanged(r) if what is None else what) for r, what in items)
                return replay.tally, replay.planned
            scanned = list(items)
        candidates = {r.coordinate: r for r, what in scanned if what is None}
        decoder = DeadLetterDecoder(settings)
        lines = [edit_line(r, decoder) for r in candidates.values()]
        if not lines:
            _say("no dead letter to edit")
        raw = _edited_lines(lines, from_file) if lines or from_file is not None else []
        publisher = transactions.publisher if transactions is not None else EventPublisher(settings)
        edits = _validated_edits(raw, candidates, {f"{p}:{o}" for p, o in done}, publisher)
        replay.walk((r, edits.get(r.coordinate, SKIP_LEFT_OUT) if what is None else what) for r, what in scanned)
        return replay.tally, replay.planned
    finally:
        reader.close()
        if transactions is not None:
            transactions.close()


def register(app: typer.Typer) -> None:
    """Attach `dead-letters` to the main app."""
    app.add_typer(dead_letters_app, name="dead-letters")
