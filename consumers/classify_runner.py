"""The offline `classify` driver: JSON lines in, JSON lines out, the same engine as the service.

Streams: one input line at a time, output written in chunks; memory grows with accounts, not
lines. Clock semantics are the contract's: the clock is the largest `occurred_at` of the valid
events so far; due timers fire before each event, and at the end the clock moves to `as_of`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import IO

import orjson

from consumers.runtime import freeze_survivors
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent, SchemaMismatch
from multichannel.parse import parse_event
from multichannel.records import CustomerStatusRecord, OutputRecord, SubscriptionDecision

_FLUSH_LINES = 4096  # about a megabyte of output
_FREEZE_EVERY = 10_000


@dataclass
class ClassifyCounts:
    lines: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    records: int = 0

    def summary(self) -> str:
        return (
            f"classify: {self.lines} events read, {self.applied} applied, {self.duplicates} duplicates, "
            f"{self.dead_letters} dead letters, {self.records} records written"
        )


@lru_cache(maxsize=1024)
def format_timestamp(ts: datetime) -> str:
    """`2026-03-01T09:30:00Z`, or with `.mmm` when there are milliseconds (every timestamp here is UTC,
    truncated to milliseconds). Memoised: the records of one step, and timers, share their timestamp."""
    return (ts.isoformat()[:23] if ts.microsecond else ts.isoformat()[:19]) + "Z"


def record_to_json(record: OutputRecord) -> bytes:
    """One output line, fields in the contract's order. orjson writes enums, tuples and dates itself."""
    if type(record) is SubscriptionDecision:
        return orjson.dumps(
            {
                "record_type": "subscription_decision",
                "partner_id": record.partner_id,
                "customer_id": record.customer_id,
                "subscription_id": record.subscription_id,
                "decision": record.decision,
                "reason": record.reason,
                "rule": record.rule,
                "next_actions": record.next_actions,
                "blocked_until": record.blocked_until,
                "relationship_via_partner_ids": record.relationship_via_partner_ids,
                "decided_at": format_timestamp(record.decided_at),
                "caused_by_event_id": record.caused_by_event_id,
                "rulebook_version": record.rulebook_version,
            }
        )
    assert isinstance(record, CustomerStatusRecord)
    return orjson.dumps(
        {
            "record_type": "customer_status",
            "partner_id": record.partner_id,
            "customer_id": record.customer_id,
            "status": record.status,
            "decision_counts": dict(sorted(record.decision_counts.items())),
            "decided_at": format_timestamp(record.decided_at),
            "caused_by_event_id": record.caused_by_event_id,
            "rulebook_version": record.rulebook_version,
        }
    )


def dead_letter_json(line: int, error: InvalidEvent) -> bytes:
    return orjson.dumps({"record_type": "dead_letter", "line": line, "reason": error.reason, "message": error.message})


def classify_stream(
    lines: Iterable[bytes], out: IO[bytes], *, as_of: datetime | None = None, engine: Classifier | None = None
) -> ClassifyCounts:
    """Classify a stream of JSON lines into `out`; never stops on a bad line. Blank lines are skipped
    (not counted); output goes out in chunks of about a megabyte."""
    if engine is None:  # not `engine or ...`: a Classifier holding no accounts is falsy
        engine = Classifier(transactional=False)
    apply, fire_due, to_json = engine.apply, engine.fire_due, record_to_json
    deadlines = engine.deadlines
    counts = ClassifyCounts()
    clock: datetime | None = None
    buf: list[bytes] = []
    lines_read = applied = duplicates = dead_letters = written = 0
    for number, raw in enumerate(lines, start=1):
        try:
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if not raw.strip():
                    continue
                lines_read += 1
                raise SchemaMismatch(f"not a JSON object: {exc}") from None
            lines_read += 1
            if type(obj) is not dict:
                raise SchemaMismatch(f"a line must hold a JSON object, not {type(obj).__name__}")
            event = parse_event(obj)
        except InvalidEvent as error:
            dead_letters += 1
            buf.append(dead_letter_json(number, error))
            continue
        at = event.occurred_at
        if clock is None or at > clock:
            clock = at
            if deadlines and deadlines[0] <= clock:
                due = fire_due(clock)
                buf.extend(map(to_json, due))
                written += len(due)
        records = apply(event, clock)
        if records is None:
            duplicates += 1
        else:
            applied += 1
            if records:
                buf.extend(map(to_json, records))
                written += len(records)
        if number % _FREEZE_EVERY == 0:
            freeze_survivors()
        if len(buf) >= _FLUSH_LINES:
            out.write(b"\n".join(buf) + b"\n")
            buf.clear()
    if as_of is not None and (clock is None or as_of > clock):
        due = fire_due(as_of)
        buf.extend(map(to_json, due))
        written += len(due)
    if buf:
        out.write(b"\n".join(buf) + b"\n")
    out.flush()
    counts.lines, counts.applied, counts.duplicates = lines_read, applied, duplicates
    counts.dead_letters, counts.records = dead_letters, written
    return counts
