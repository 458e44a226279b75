"""The fault suite's own arithmetic: what counts as lost or repeated, when a fault has recovered, and how the
soak's section replaces its old one."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.audit import SequenceCheck
from tests.chaos.harness import Fault, Sample
from tests.chaos.report import first_commit_s, recovery_s
from tests.chaos.soak import read_section, write_section


def test_an_identical_sequence_has_nothing_lost_or_repeated() -> None:
    """Committed equal to expected: no loss, no repeat, no differing key."""
    check = SequenceCheck()
    check.add("k", ["a", "b"], ["a", "b"])
    assert (check.lost, check.repeated, check.keys_differing) == (0, 0, 0)


def test_a_repeat_and_a_gap_are_counted_apart() -> None:
    """A record committed twice is a repeat; an expected record missing is lost; a changed record is both."""
    check = SequenceCheck()
    check.add("repeat", ["a", "b"], ["a", "a", "b"])
    check.add("gap", ["a", "b", "c"], ["a", "c"])
    check.add("changed", ["a", "b"], ["a", "x"])
    assert (check.lost, check.repeated, check.keys_differing) == (2, 2, 3)
    assert check.example.startswith("repeat from record 1")


def test_recovery_is_when_the_stopped_partitions_reach_the_end_seen_at_the_faults_end() -> None:
    """Only the fault's partitions count, against the input's end offsets of the first sample after it ended."""
    fault = Fault("instance SIGKILL", started=9.0, ended=10.0, wall="", partitions=[0])
    samples = [
        Sample(8.5, {0: 0, 1: 0}, {0: 5, 1: 5}),
        Sample(10.5, {0: 3, 1: 0}, {0: 8, 1: 9}),
        Sample(11.0, {0: 7, 1: 0}, {0: 9, 1: 9}),
        Sample(12.0, {0: 8, 1: 0}, {0: 9, 1: 9}),
    ]
    assert recovery_s(fault, samples) == 2.0
    assert first_commit_s(fault, samples) == 0.5, "partition 0 committed past its offset at the fault's start"


def test_the_soak_section_replaces_its_old_text_and_keeps_the_rest(tmp_path: Path) -> None:
    """A second soak run leaves one Soak section, and the sections around it unchanged."""
    doc = tmp_path / "reliability.md"
    doc.write_text("# Reliability\n\n## Result\n\nkept\n")
    write_section(doc, "## Soak\n\nfirst\n")
    doc.write_text(doc.read_text() + "\n## Fault log\n\nkept too\n")
    write_section(doc, "## Soak\n\nsecond\n")
    text = doc.read_text()
    assert text.count("## Soak") == 1 and "second" in text and "first" not in text
    assert "## Result\n\nkept" in text and "## Fault log\n\nkept too" in text
    assert read_section(doc) == "## Soak\n\nsecond\n"
