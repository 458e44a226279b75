"""The offline `classify` driver: JSON lines in, JSON lines out, the same engine as the service.

Streams: one input line at a time, output written in chunks; memory grows with accounts, not
lines. Clock semantics are the contract's: the clock is the largest `occurred_at` of the valid
events so far; due timers fire before each event, and at the end the clock moves to `as_of`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

import orjson

from consumers.runtime import freeze_survivors
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent, SchemaMismatch
from multichannel.parse import parse_event
from multichannel.records import OutputRecord, SubscriptionDecision

_FLUSH_BYTES = 1 << 20
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


def format_timestamp(ts: datetime) -> str:
    """`2026-03-01T09:30:00Z`, or with `.mmm` when there are milliseconds."""
    ms = ts.microsecond // 1000
    base = f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:{ts.second:02d}"
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def record_to_json(record: OutputRecord) -> bytes:
    out: dict[str, Any] = {
        "record_type": "subscription_decision" if isinstance(record, SubscriptionDecision) else "customer_status"
    }
    for k, v in record.to_dict().items():
        out[k] = _json_value(v)
    counts = out.get("decision_counts")
    if counts is not None:
        out["decision_counts"] = dict(sorted(counts.items()))
    return orjson.dumps(out)


def dead_letter_json(line: int, error: InvalidEvent) -> bytes:
    return orjson.dumps({"record_type": "dead_letter", "line": line, "reason": error.reason, "message": error.message})


def _decode_line(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaMismatch(f"not a JSON object: {exc}") from None


def classify_stream(
    lines: Iterable[bytes], out: IO[bytes], *, as_of: datetime | None = None, engine: Classifier | None = None
) -> ClassifyCounts:
    """Classify a stream of JSON lines into `out`; never stops on a bad line."""
    engine = engine or Classifier(transactional=False)
    counts = ClassifyCounts()
    clock: datetime | None = None
    buf: list[bytes] = []
    size = 0

    def emit(records: list[OutputRecord]) -> None:
        nonlocal size
        for r in records:
            b = record_to_json(r)
            buf.append(b)
            size += len(b) + 1
        counts.records += len(records)

    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        counts.lines += 1
        try:
            obj = _decode_line(raw)
            if not isinstance(obj, dict):
                raise SchemaMismatch(f"a line must hold a JSON object, not {type(obj).__name__}")
            event = parse_event(obj)
        except InvalidEvent as error:
            counts.dead_letters += 1
            b = dead_letter_json(number, error)
            buf.append(b)
            size += len(b) + 1
        else:
            if clock is None or event.occurred_at > clock:
                clock = event.occurred_at
                emit(engine.fire_due(clock))
            records = engine.apply(event, clock)
            if records is None:
                counts.duplicates += 1
            else:
                counts.applied += 1
                emit(records)
        if number % _FREEZE_EVERY == 0:
            freeze_survivors()
        if size >= _FLUSH_BYTES:
            out.write(b"\n".join(buf) + b"\n")
            buf.clear()
            size = 0
    if as_of is not None and (clock is None or as_of > clock):
        emit(engine.fire_due(as_of))
    if buf:
        out.write(b"\n".join(buf) + b"\n")
    out.flush()
    return counts
