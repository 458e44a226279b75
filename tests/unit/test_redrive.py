"""The dead-letter core of `multichannel dead-letters`: reading a dead letter's headers, the selection, the
counts by reason, the window a command reads and how far the re-drive group's offsets may move."""

from __future__ import annotations

import pytest

from multichannel.redrive import (
    DeadLetterRecord,
    GroupProgress,
    OffsetRange,
    Selection,
    audit_key,
    count_by_reason,
    parse_audit_key,
    parse_coordinate,
    scan_window,
)


def letter(
    offset: int, reason: str = "SCHEMA_MISMATCH", topic: str = "in", ts: int = 0, p: int = 0
) -> DeadLetterRecord:
    headers = (
        ("trace", b"t"),
        ("error.reason", reason.encode()),
        ("error.message", b"why"),
        ("source.topic", topic.encode()),
        ("source.partition", b"2"),
        ("source.offset", b"41"),
        ("source.timestamp", b"-1"),
    )
    return DeadLetterRecord(p, offset, ts, b"k", b"v", headers)


def test_a_dead_letter_reads_its_headers_and_keeps_only_its_own_for_a_re_drive() -> None:
    """Reason, message and source come from the headers; the re-driven record carries only the input's own."""
    r = letter(7)
    assert (r.coordinate, r.reason, r.message, r.source_topic) == ("0:7", "SCHEMA_MISMATCH", "why", "in")
    assert (r.source_partition, r.source_offset, r.source_timestamp_ms, r.truncated) == (2, 41, -1, None)
    assert r.own_headers == [("trace", b"t")]
    bare = DeadLetterRecord(1, 0, -1, None, None)
    assert (bare.reason, bare.source_topic, bare.source_offset) == ("UNKNOWN", "", -1)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("3:17", OffsetRange(3, 17, 17)), ("0:5-9", OffsetRange(0, 5, 9)), ("2:4-", OffsetRange(2, 4, None))],
)
def test_coordinates_and_ranges_parse(text: str, parsed: OffsetRange) -> None:
    """P:O is one dead letter, P:A-B a closed range, P:A- open to the end."""
    assert parse_coordinate(text) == parsed


@pytest.mark.parametrize("text", ["17", "a:1", "1:x", "1:9-3", "-1:2", "1:"])
def test_a_malformed_coordinate_is_refused(text: str) -> None:
    """Anything else is a ValueError naming the three accepted forms."""
    with pytest.raises(ValueError, match="PARTITION:OFFSET"):
        parse_coordinate(text)


def test_a_selection_takes_what_every_given_filter_takes() -> None:
    """Reasons, source topics, the time window (since inclusive, until exclusive) and ranges all apply."""
    records = [letter(i, "A" if i % 2 else "B", "in" if i < 4 else "other", ts=i * 10) for i in range(6)]

    def picked(selection: Selection) -> list[int]:
        return [r.offset for r in records if selection.accepts(r)]

    assert picked(Selection()) == [0, 1, 2, 3, 4, 5]
    assert picked(Selection(reasons=frozenset({"A"}))) == [1, 3, 5]
    assert picked(Selection(source_topics=frozenset({"other"}))) == [4, 5]
    assert picked(Selection(since_ms=10, until_ms=30)) == [1, 2]
    assert picked(Selection(ranges=(OffsetRange(0, 2, 3), OffsetRange(0, 5)))) == [2, 3, 5]
    assert picked(Selection(reasons=frozenset({"B"}), since_ms=10, ranges=(OffsetRange(0, 0, None),))) == [2, 4]


def test_counts_by_reason_put_the_most_frequent_first() -> None:
    """Ties are ordered by reason."""
    records = [letter(0, "B"), letter(1, "A"), letter(2, "C"), letter(3, "C")]
    assert list(count_by_reason(records).items()) == [("C", 2), ("A", 1), ("B", 1)]


def test_the_window_starts_at_the_group_offset_only_for_a_re_drive() -> None:
    """`list` reads from the low watermark; a replay from the committed offset (the low watermark without
    one), and only a window that starts there lets the group's offset move; ranges and time bound it."""
    none = Selection()
    assert scan_window(0, 5, 20, none) == scan_window(0, 5, 20, none, committed=12)
    assert (scan_window(0, 5, 20, none).start, scan_window(0, 5, 20, none).from_committed) == (5, False)
    w = scan_window(0, 5, 20, none, redrive=True, committed=12)
    assert (w.start, w.end, w.from_committed) == (12, 20, True)
    w = scan_window(0, 5, 20, none, redrive=True)
    assert (w.start, w.from_committed) == (5, True)
    w = scan_window(0, 5, 20, none, 15, redrive=True, committed=12)
    assert (w.start, w.from_committed) == (15, False)
    ranged = Selection(ranges=(OffsetRange(0, 8, 14), OffsetRange(1, 0)))
    w = scan_window(0, 5, 20, ranged, redrive=True, committed=12)
    assert (w.start, w.end, w.from_committed) == (12, 15, True)
    assert scan_window(1, 0, 9, ranged).end == 9
    assert scan_window(2, 0, 9, ranged).start == scan_window(2, 0, 9, ranged).end, "no range on partition 2"


def test_the_group_offset_moves_over_an_unbroken_run_of_re_driven_dead_letters_only() -> None:
    """Re-driven (or already re-driven) dead letters move it; the first one passed over stops that partition's
    offset for the rest of the run; a window that did not start at the committed offset never moves it."""
    progress = GroupProgress()
    progress.start(scan_window(0, 0, 10, Selection(), redrive=True, committed=3))
    progress.start(scan_window(1, 0, 10, Selection(), 6, redrive=True, committed=3))
    progress.redriven(letter(3))
    progress.redriven(letter(5))  # offset 4 is a transaction marker
    progress.redriven(letter(6, p=1))
    assert progress.take_moved() == {0: 6}
    assert progress.take_moved() == {}
    progress.passed_over(letter(6))
    progress.redriven(letter(7))
    assert progress.take_moved() == {}


def test_audit_keys_round_trip() -> None:
    """One key per dead letter; a key of another form reads as None."""
    key = audit_key("multichannel.dead-letters.v1", letter(9, p=4))
    assert key == "multichannel.dead-letters.v1:4:9"
    assert parse_audit_key(key) == ("multichannel.dead-letters.v1", 4, 9)
    assert parse_audit_key("nonsense") is None
