"""The real `multichannel rules preview` command on an export of events: its report, its files (CSV and JSON
lines, the same subscriptions), and its exit codes for a bad book or a bad output name."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from datetime import date
from pathlib import Path

import orjson
import pytest

from benchmarks.preview_workload import preview_events
from consumers.preview_output import CSV_COLUMNS

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "multichannel")
AS_OF = "2026-12-02T12:00:00Z"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")} | {"COLUMNS": "250"}
    argv = [CLI, "rules", "preview", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("preview") / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in preview_events(300, date(2026, 12, 2))))
    return path


def test_an_export_previews_to_csv_and_json_lines_alike(export: Path, tmp_path: Path) -> None:
    """Exit 0; the report names both books, the clock and the from → to table; the CSV (header, one row per
    change) and the JSON lines (one row per change, then the summary) hold the same subscriptions."""
    as_csv, as_jsonl = tmp_path / "changes.csv", tmp_path / "changes.jsonl"
    done = run("--to", "current", "--from", "seed", "--events", str(export), "--as-of", AS_OF, "-o", str(as_csv))
    assert done.returncode == 0, done.stderr
    assert f"What changes under rule book current 2026-12.1 (from seed 2026-11.1) at {AS_OF}" in done.stdout
    assert "from → to" in done.stdout and "partners with the most changes" in done.stdout
    assert run("--to", "current", "--events", str(export), "--as-of", AS_OF, "-o", str(as_jsonl)).returncode == 0
    rows = list(csv.reader(as_csv.open()))
    lines = [orjson.loads(line) for line in as_jsonl.read_bytes().splitlines()]
    *changes, summary = lines
    assert tuple(rows[0]) == CSV_COLUMNS
    assert summary["record_type"] == "preview_summary" and summary["changed"] == len(changes) == len(rows) - 1 > 50
    assert [r[:3] for r in rows[1:]] == [[c["partner_id"], c["customer_id"], c["subscription_id"]] for c in changes]
    to_rules = {r[CSV_COLUMNS.index("to_rule")] for r in rows[1:]}
    assert {"T1", "T2", "T3", "E1", "E2"} <= to_rules
    assert f"wrote {len(changes):,} changed subscriptions to {as_jsonl}" in run(
        "--to", "current", "--events", str(export), "--as-of", AS_OF, "-o", str(as_jsonl)
    ).stdout.replace("\n", "")


def test_the_same_book_changes_nothing(export: Path) -> None:
    """Seed against seed: no subscription changes."""
    done = run("--to", "seed", "--from", "seed", "--events", str(export), "--as-of", AS_OF)
    assert done.returncode == 0, done.stderr
    assert ": 0 of " in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "newest"], "unknown rule book 'newest': choose one of seed, current"),
        (["--to", "current", "--from", "oldest"], "unknown rule book 'oldest'"),
        (["--to", "current", "-o", "changes.xlsx"], "name it .csv or .jsonl"),
        (["--to", "current", "-o", "changes.csv", "--format", "xml"], "--format must be csv or jsonl"),
        (["--to", "current", "-o", "/no/such/dir/changes.csv"], "is not a directory"),
    ],
    ids=["unknown-to", "unknown-from", "output-suffix", "format", "output-dir"],
)
def test_a_usage_error_exits_2_naming_it(args: list[str], message: str, export: Path) -> None:
    """A bad book, output name or format: exit 2 and the reason on stderr, before anything is read."""
    done = run(*args, "--events", str(export))
    assert done.returncode == 2
    assert message in " ".join(done.stderr.replace("│", " ").split()), done.stderr
