"""Dead letters as operators select and re-drive them: the record read back from the dead-letter topic,
the selection (reason, source topic, time, offsets), counts by reason, the re-drive group's progress and
the audit entry of a re-driven record. No Kafka and no clock here: the adapters read and write.

The re-drive group's committed offset on a dead-letter partition means "every dead letter below it has
been re-driven"; a dead letter that is passed over (not selected, or cut to fit) holds the offset where
it is, so a later re-drive with another selection still finds it. The audit, written in the same
transaction as the re-driven records, is what says which dead letters at or past that offset were
re-driven already, so a re-run never re-drives one twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

OWN_HEADER_PREFIXES = ("error.", "source.")
"""Headers the service adds to a dead letter; the rest are the input record's own."""


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One record of the dead-letter topic: where it is, its key, value and headers as stored."""

    partition: int
    offset: int
    timestamp_ms: int
    """When it was dead-lettered (the record's timestamp), -1 when it has none."""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def header(self, name: str) -> str | None:
        """The last header of that name, as text (dead-letter headers are UTF-8)."""
        found: str | None = None
        for key, value in self.headers:
            if key == name:
                found = None if value is None else value.decode("utf-8", "replace")
        return found

    @property
    def coordinate(self) -> str:
        """`partition:offset` in the dead-letter topic, as the commands print and take it."""
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return self.header("error.reason") or "UNKNOWN"

    @property
    def message(self) -> str:
        return self.header("error.message") or ""

    @property
    def source_topic(self) -> str:
        return self.header("source.topic") or ""

    @property
    def source_partition(self) -> int:
        return _int(self.header("source.partition"))

    @property
    def source_offset(self) -> int:
        return _int(self.header("source.offset"))

    @property
    def source_timestamp_ms(self) -> int:
        return _int(self.header("source.timestamp"))

    @property
    def truncated(self) -> str | None:
        """What was cut to fit the dead-letter topic (`key`, `headers`, `value`), or None when it is whole."""
        return self.header("error.truncated")

    @property
    def own_headers(self) -> list[tuple[str, bytes | None]]:
        """The input record's own headers, which a re-driven record carries again."""
        return [(k, v) for k, v in self.headers if not k.startswith(OWN_HEADER_PREFIXES)]


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else -1
    except ValueError:
        return -1


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Dead-letter offsets `first` to `last` (inclusive; None: to the end) of one partition."""

    partition: int
    first: int
    last: int | None = None

    def holds(self, partition: int, offset: int) -> bool:
        return partition == self.partition and offset >= self.first and (self.last is None or offset <= self.last)


def parse_coordinate(text: str) -> OffsetRange:
    """`P:O` (one dead letter), `P:A-B` (A to B inclusive) or `P:A-` (from A on); ValueError says what is wrong."""
    partition, sep, offsets = text.partition(":")
    first, dash, last = offsets.partition("-")
    try:
        p, a = int(partition), int(first)
        b = (None if last == "" else int(last)) if dash else a
    except ValueError:
        raise ValueError(f"{text!r} is not PARTITION:OFFSET, PARTITION:FIRST-LAST or PARTITION:FIRST-") from None
    if not sep or p < 0 or a < 0 or (b is not None and b < a):
        raise ValueError(f"{text!r} is not PARTITION:OFFSET, PARTITION:FIRST-LAST or PARTITION:FIRST-")
    return OffsetRange(p, a, b)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command takes; an empty field takes all. Times are the dead letters' own
    timestamps (when they were dead-lettered), in epoch milliseconds, `since` inclusive, `until` exclusive."""

    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    ranges: tuple[OffsetRange, ...] = ()

    def accepts(self, record: DeadLetterRecord) -> bool:
        return (
            (not self.reasons or record.reason in self.reasons)
            and (not self.source_topics or record.source_topic in self.source_topics)
            and (self.since_ms is None or record.timestamp_ms >= self.since_ms)
            and (self.until_ms is None or record.timestamp_ms < self.until_ms)
            and (not self.ranges or any(r.holds(record.partition, record.offset) for r in self.ranges))
        )

    def first_offset(self, partition: int) -> int | None:
        """The lowest offset of `partition` the offset ranges can take (0 without ranges); None: none of it."""
        if not self.ranges:
            return 0
        firsts = [r.first for r in self.ranges if r.partition == partition]
        return min(firsts) if firsts else None

    def end_offset(self, partition: int) -> int | None:
        """One past the highest offset of `partition` the ranges can take; None: no bound from the ranges."""
        lasts = [r.last for r in self.ranges if r.partition == partition]
        if not lasts or any(last is None for last in lasts):
            return None
        return max(last for last in lasts if last is not None) + 1


def count_by_reason(records: Iterable[DeadLetterRecord]) -> dict[str, int]:
    """Reason → number of dead letters, the most frequent first (ties by reason)."""
    counts = Counter(r.reason for r in records)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True, slots=True)
class ScanWindow:
    """The offsets of one dead-letter partition a command reads: `start` to `end` (exclusive)."""

    partition: int
    start: int
    end: int
    from_committed: bool
    """The window starts at the re-drive group's committed offset, so the group's progress can move on."""


def scan_window(
    partition: int,
    low: int,
    high: int,
    selection: Selection,
    time_offset: int | None = None,
    *,
    redrive: bool = False,
    committed: int | None = None,
) -> ScanWindow:
    """Where to read a partition: from its low watermark, or for a re-drive (`redrive`) from the re-drive
    group's committed offset (the low watermark when it has committed none), moved on to the first offset
    the selection's offset ranges and `time_offset` (the first record at or after `since`) allow; to the
    high watermark as it was when the command started, or the ranges' end."""
    base = max(low, committed) if redrive and committed is not None else low
    first = selection.first_offset(partition)
    bound = selection.end_offset(partition)
    end = high if bound is None else min(high, bound)
    if first is None:
        return ScanWindow(partition, base, base, from_committed=False)
    start = max(base, first, base if time_offset is None else time_offset)
    return ScanWindow(partition, start, max(start, end), from_committed=redrive and start == base)


@dataclass
class GroupProgress:
    """The offsets the re-drive group may commit: per partition whose window started at its committed
    offset, one past the last dead letter of an unbroken run of re-driven ones (or already re-driven, by
    the audit). The first dead letter passed over stops the partition's run for the rest of the command."""

    next_offsets: dict[int, int] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)
    _stopped: set[int] = field(default_factory=set)

    def start(self, window: ScanWindow) -> None:
        if window.from_committed:
            self.next_offsets[window.partition] = window.start
        else:
            self._stopped.add(window.partition)

    def redriven(self, record: DeadLetterRecord) -> None:
        """The record is re-driven in this command's open transaction, or was re-driven before."""
        if record.partition not in self._stopped and record.partition in self.next_offsets:
            self.next_offsets[record.partition] = record.offset + 1
            self.moved.add(record.partition)

    def passed_over(self, record: DeadLetterRecord) -> None:
        self._stopped.add(record.partition)

    def take_moved(self) -> dict[int, int]:
        """The partitions whose offset moved since the last call, with their next offsets."""
        out = {p: self.next_offsets[p] for p in sorted(self.moved)}
        self.moved.clear()
        return out


def audit_key(dead_letter_topic: str, record: DeadLetterRecord) -> str:
    """One audit entry per dead letter: `<dead-letter topic>:<partition>:<offset>` (topic names hold no colon)."""
    return f"{dead_letter_topic}:{record.partition}:{record.offset}"


def parse_audit_key(key: str) -> tuple[str, int, int] | None:
    """(dead-letter topic, partition, offset) of an audit key, or None for a key of another form."""
    topic, _, rest = key.partition(":")
    partition, _, offset = rest.partition(":")
    try:
        return topic, int(partition), int(offset)
    except ValueError:
        return None


def audit_entry(
    record: DeadLetterRecord,
    *,
    dead_letter_topic: str,
    target_topic: str,
    target_key: bytes | None,
    edited: bool,
    event_id: str | None,
    run_id: str,
    group: str,
    redriven_at: str,
) -> dict[str, Any]:
    """What the audit keeps of one re-driven dead letter: where it was, why, where it went and when."""
    return {
        "dead_letter": {"topic": dead_letter_topic, "partition": record.partition, "offset": record.offset},
        "reason": record.reason,
        "source": {
            "topic": record.source_topic,
            "partition": record.source_partition,
            "offset": record.source_offset,
            "timestamp_ms": record.source_timestamp_ms,
        },
        "redriven_to": target_topic,
        "key": None if target_key is None else target_key.decode("utf-8", "replace"),
        "edited": edited,
        "event_id": event_id,
        "run_id": run_id,
        "group": group,
        "redriven_at": redriven_at,
    }
