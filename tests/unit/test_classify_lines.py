"""The JSON-lines path of `multichannel classify` (`consumers/classify_runner.classify_stream`): what the
lines themselves add to the core, that is a bad line's number, a line that is not a JSON object, the
run going on after a bad line, and timestamps written as the contract spells them. The rules are
tested against the core in `test_rulebook.py`."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from cli.classify import parse_as_of
from consumers.classify_runner import classify_stream

PARTNER = {
    "event_type": "partner_program_changed",
    "event_id": "p1",
    "occurred_at": "2026-01-01T00:00:00Z",
    "partner_id": "P1",
    "program": "csp_direct",
    "indirect_provider_ids": [],
}
PURCHASE = {
    "event_type": "subscription_purchased",
    "event_id": "e1",
    "occurred_at": "2026-03-01T09:00:00Z",
    "partner_id": "P1",
    "customer_id": "C1",
    "subscription_id": "S1",
    "offer_id": "O365-E3",
    "billing_model": "license",
    "channel": "open",
    "quantity": 5,
    "term_start": "2026-01-01",
    "term_end": "2027-01-01",
}


def run(lines: list[bytes], as_of: str | None = None) -> list[dict[str, Any]]:
    out = io.BytesIO()
    classify_stream(lines, out, as_of=parse_as_of(as_of) if as_of else None)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "SCHEMA_MISMATCH"),
        (b"[1, 2]", "SCHEMA_MISMATCH"),
        (orjson.dumps(dict(PURCHASE, channel="reseller")), "INVALID_FIELD"),
    ],
    ids=["bad-json", "not-an-object", "a-core-reason"],
)
def test_dead_letter_lines_carry_the_line_number_and_the_run_goes_on(line: bytes, reason: str) -> None:
    """A bad line becomes a dead_letter line with its number, reason and message, and the next line is
    still classified."""
    records = run([orjson.dumps(PARTNER), line, orjson.dumps(PURCHASE)])
    dead = [r for r in records if r["record_type"] == "dead_letter"]
    assert [(d["line"], d["reason"]) for d in dead] == [(2, reason)]
    assert dead[0]["message"]
    decisions = [r for r in records if r["record_type"] == "subscription_decision"]
    assert [d["rule"] for d in decisions] == ["R9"], "the run goes on after a bad line"


def test_blank_lines_are_skipped_and_not_counted() -> None:
    """Blank lines neither dead-letter nor shift the numbers of the lines after them."""
    records = run([orjson.dumps(PARTNER), b"", b"   ", b"{not json"])
    assert [(r["record_type"], r["line"]) for r in records] == [("dead_letter", 4)]


@pytest.mark.parametrize(
    ("occurred_at", "decided_at"),
    [
        ("2026-03-01T11:30:00+02:00", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00.123456Z", "2026-03-01T09:30:00.123Z"),
    ],
    ids=["utc-with-z", "milliseconds-when-there-are-some"],
)
def test_decided_at_is_written_in_utc_with_z(occurred_at: str, decided_at: str) -> None:
    """A decision line writes its instant in UTC with `Z`, with `.mmm` only when it has milliseconds."""
    records = run([orjson.dumps(PARTNER), orjson.dumps(dict(PURCHASE, occurred_at=occurred_at))])
    assert [r["decided_at"] for r in records] == [decided_at, decided_at]


def test_as_of_moves_the_clock_at_the_end_of_the_input() -> None:
    """`--as-of` past a term end fires its timer after the last line, at the deadline, with no cause."""
    records = run([orjson.dumps(PARTNER), orjson.dumps(dict(PURCHASE, term_end="2026-06-01"))], as_of="2026-07-01")
    last = records[-2]
    assert (last["rule"], last["reason"], last["decided_at"], last["caused_by_event_id"]) == (
        "R5",
        "TERM_ENDED",
        "2026-06-01T00:00:00Z",
        None,
    )
