"""The real `multichannel classify` command on files: exact JSON lines, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

CLI = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "multichannel")

EVENTS = [
    {
        "event_type": "partner_program_changed",
        "event_id": "p1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "partner_id": "P1",
        "program": "csp_direct",
        "indirect_provider_ids": [],
    },
    {
        "event_type": "subscription_purchased",
        "event_id": "e1",
        "occurred_at": "2026-03-01T09:30:00Z",
        "partner_id": "P1",
        "customer_id": "C1",
        "subscription_id": "S1",
        "offer_id": "O",
        "billing_model": "license",
        "channel": "open",
        "quantity": 3,
        "term_start": "2026-01-01",
        "term_end": "2026-06-01",
    },
]
EXPECTED = [
    {
        "record_type": "subscription_decision",
        "partner_id": "P1",
        "customer_id": "C1",
        "subscription_id": "S1",
        "decision": "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "reason": "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
        "rule": "R9",
        "next_actions": ["SEND_RELATIONSHIP_REQUEST"],
        "blocked_until": "2026-06-01",
        "relationship_via_partner_ids": [],
        "decided_at": "2026-03-01T09:30:00Z",
        "caused_by_event_id": "e1",
        "rulebook_version": "2026-11.1",
    },
    {
        "record_type": "customer_status",
        "partner_id": "P1",
        "customer_id": "C1",
        "status": "MULTICHANNEL",
        "decision_counts": {"ELIGIBLE_FOR_RELATIONSHIP_REQUEST": 1},
        "decided_at": "2026-03-01T09:30:00Z",
        "caused_by_event_id": "e1",
        "rulebook_version": "2026-11.1",
    },
    {"record_type": "dead_letter", "line": 3, "reason": "SCHEMA_MISMATCH"},
]
TIMER = [
    {
        "record_type": "subscription_decision",
        "partner_id": "P1",
        "customer_id": "C1",
        "subscription_id": "S1",
        "decision": "CSP_SWITCH_PERMITTED",
        "reason": "TERM_ENDED",
        "rule": "R5",
        "next_actions": ["OFFER_CSP_SUBSCRIPTION"],
        "blocked_until": None,
        "relationship_via_partner_ids": [],
        "decided_at": "2026-06-01T00:00:00Z",
        "caused_by_event_id": None,
        "rulebook_version": "2026-11.1",
    },
    {
        "record_type": "customer_status",
        "partner_id": "P1",
        "customer_id": "C1",
        "status": "SINGLE_CHANNEL",
        "decision_counts": {"CSP_SWITCH_PERMITTED": 1},
        "decided_at": "2026-06-01T00:00:00Z",
        "caused_by_event_id": None,
        "rulebook_version": "2026-11.1",
    },
]


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([*(json.dumps(e) for e in EVENTS), "this is not json", ""]) + "\n")
    return path


def _parse(stdout: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in stdout.splitlines()]
    for r in records:
        if r["record_type"] == "dead_letter":
            assert r.pop("message")
    return records


def test_classify_file_argument_exact_lines(tmp_path: Path) -> None:
    """`classify FILE` writes exactly the documented JSON lines and a summary on stderr."""
    result = subprocess.run([CLI, "classify", str(_input(tmp_path))], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert _parse(result.stdout) == EXPECTED
    assert "3 events read" in result.stderr


def test_classify_stdin_with_as_of_fires_timers(tmp_path: Path) -> None:
    """`classify --as-of` reading stdin fires the timers due by then after the input's records."""
    with _input(tmp_path).open() as stdin:
        result = subprocess.run(
            [CLI, "classify", "--as-of", "2026-07-01T00:00:00Z"],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    assert _parse(result.stdout) == EXPECTED + TIMER


def test_classify_bad_as_of_is_a_usage_error(tmp_path: Path) -> None:
    """An `--as-of` that is not a timestamp exits 2 with a message and writes nothing."""
    result = subprocess.run(
        [CLI, "classify", "--as-of", "soon", str(_input(tmp_path))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "not an ISO 8601 timestamp" in result.stderr
    assert result.stdout == ""


def _repeat_after_two_others(tmp_path: Path) -> Path:
    """The purchase, two relationship events of its account, then the purchase again."""
    account = {"partner_id": "P1", "customer_id": "C1", "occurred_at": "2026-03-02T00:00:00Z"}
    lines = [
        *EVENTS,
        {"event_type": "relationship_accepted", "event_id": "r1", **account},
        {"event_type": "relationship_ended", "event_id": "r2", **account},
        EVENTS[1],
    ]
    path = tmp_path / "repeat.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    return path


def _classify(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "classify", str(path)], capture_output=True, text=True, check=False, env={**os.environ, **env}
    )


def test_classify_detects_duplicates_within_the_configured_window(tmp_path: Path) -> None:
    """A repeated event id is a duplicate within the dedup window and applied again past it, with the same output."""
    path = _repeat_after_two_others(tmp_path)
    default = _classify(path)
    narrow = _classify(path, MULTICHANNEL_DEDUP_WINDOW="2")
    assert (default.returncode, narrow.returncode) == (0, 0)
    assert "4 applied, 1 duplicates" in default.stderr
    assert "5 applied, 0 duplicates" in narrow.stderr, "the repeated id had left a window of two"
    assert narrow.stdout == default.stdout, "an identical repeat changes nothing, in the window or not"


def test_an_invalid_setting_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    """An invalid MULTICHANNEL_* variable exits 2 naming it, without a traceback or output."""
    result = _classify(_input(tmp_path), MULTICHANNEL_DEDUP_WINDOW="0")
    assert result.returncode == 2
    assert "MULTICHANNEL_DEDUP_WINDOW" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
