"""The files a preview writes: every changed subscription with both verdicts, as CSV or JSON lines.

JSON lines: one `preview_change` object per changed subscription (`multichannel.preview.change_record`), then
one `preview_summary` object with the figures that the changes alone do not give (accounts and subscriptions
compared, status changes, the book the deployment's state was saved by); the dashboard's preview page reads
such a file. CSV: a header and one row per changed subscription, `from_*` and `to_*` columns side by side,
lists joined by spaces, for a spreadsheet. A file is written whole under a temporary name and then renamed,
so that a reader never sees half of one.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

import orjson

from multichannel.preview import VERDICT_FIELDS, Change, PreviewSummary, change_record

OutputForm = Literal["csv", "jsonl"]
FORMS: tuple[OutputForm, ...] = ("csv", "jsonl")
SUFFIXES: dict[str, OutputForm] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

CSV_COLUMNS = (
    "partner_id",
    "customer_id",
    "subscription_id",
    *(f"from_{name}" for name in VERDICT_FIELDS),
    *(f"to_{name}" for name in VERDICT_FIELDS),
)


def form_of(path: Path, asked: str | None) -> OutputForm:
    """The output's format: `asked`, else the file's suffix (ValueError naming both when neither says)."""
    if asked is not None:
        if asked not in FORMS:
            raise ValueError(f"--format must be csv or jsonl, not {asked!r}")
        return asked
    form = SUFFIXES.get(path.suffix.lower())
    if form is None:
        raise ValueError(f"{path.name}: name it .csv or .jsonl, or say --format csv|jsonl")
    return form


def _cell(text: str) -> str:
    """A cell that a spreadsheet would run as a formula starts with a quote."""
    return "'" + text if text and text[0] in "=+-@\t\r" else text


def _csv_row(change: Change) -> list[str]:
    record = change_record(change)
    row = [_cell(change.partner_id), _cell(change.customer_id), _cell(change.subscription_id)]
    for side in ("from", "to"):
        for name in VERDICT_FIELDS:
            value = record[side][name]
            row.append(" ".join(map(_cell, value)) if isinstance(value, list) else _cell(value or ""))
    return row


class ChangeWriter:
    """Changed subscriptions to a binary file, in the chosen form, buffered."""

    def __init__(self, file: IO[bytes], form: OutputForm, *, header: bool) -> None:
        self._file = file
        self._form = form
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._lines: list[bytes] = []
        if header and form == "csv":
            self._csv.writerow(CSV_COLUMNS)

    def write(self, change: Change) -> None:
        if self._form == "jsonl":
            self._lines.append(orjson.dumps(change_record(change)))
        else:
            self._csv.writerow(_csv_row(change))
        if len(self._lines) >= 4096 or self._text.tell() >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._file.write(b"\n".join(self._lines) + b"\n")
            self._lines.clear()
        if self._text.tell():
            self._file.write(self._text.getvalue().encode())
            self._text.seek(0)
            self._text.truncate()
        self._file.flush()


def summary_line(summary: PreviewSummary) -> bytes:
    """The last line of a JSON-lines preview."""
    return orjson.dumps(summary.figures(), option=orjson.OPT_UTC_Z)


def join_parts(output: Path, form: OutputForm, parts: Sequence[Path], summary: PreviewSummary) -> None:
    """Write `output` from the part files (written without a header), in their order: the CSV header first, the
    JSON-lines summary last; under a temporary name, then renamed over `output`."""
    staging = output.with_name(f".{output.name}.tmp")
    with staging.open("wb") as out:
        if form == "csv":
            header = ChangeWriter(out, form, header=True)
            header.flush()
        for part in parts:
            if part.exists():
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        if form == "jsonl":
            out.write(summary_line(summary) + b"\n")
    staging.replace(output)
