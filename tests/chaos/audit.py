"""The fault suite's audit, independent of the service's counters: a `read_committed` reader of every output
topic, compared with what the offline engine (`multichannel classify`'s logic) says for the input the broker
actually holds.

Each input record is looked up by its bytes in the publisher's ledger, so the audit knows whether it is a
good event or a bad record without decoding it the service's way. Per subscription (decisions) and per
account (statuses), the committed sequence is matched in order against the expected one (their longest
common subsequence): an expected record not matched is lost, a committed record not matched is a repeat. Every
bad record must have one dead letter carrying its original key and value (at least one in at-least-once mode),
and no good record any.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producers.generator import BadRecord
from tests.chaos.harness import ChaosResult, Item
from tests.integration.pipeline import by_account, by_subscription, expected_outputs, read_outputs, read_topic


@dataclass
class SequenceCheck:
    """Committed against expected sequences, key by key."""

    expected: int = 0
    committed: int = 0
    lost: int = 0
    repeated: int = 0
    keys_differing: int = 0
    example: str = ""

    def add(self, key: Hashable, want: Sequence[Any], got: Sequence[Any]) -> None:
        matched = _common_subsequence(want, got)
        self.expected += len(want)
        self.committed += len(got)
        self.lost += len(want) - matched
        self.repeated += len(got) - matched
        if list(got) != list(want):
            self.keys_differing += 1
            if not self.example:
                at = next(
                    (i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w), min(len(got), len(want))
                )
                self.example = (
                    f"{key} from record {at}: committed {list(got)[at : at + 2]} expected {list(want)[at : at + 2]}"
                )


def _common_subsequence(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Length of the longest common subsequence: the records of `a` found in `b` in order."""
    if list(a) == list(b):
        return len(a)
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


@dataclass
class AuditReport:
    mode: str
    input_records: int = 0
    applied: int = 0
    duplicates: int = 0
    bad_records: int = 0
    partner_records: int = 0
    not_in_ledger: int = 0
    decisions: SequenceCheck = field(default_factory=SequenceCheck)
    statuses: SequenceCheck = field(default_factory=SequenceCheck)
    dead_letters: int = 0
    dead_letters_missing: int = 0
    dead_letters_repeated: int = 0
    dead_letters_of_good_records: int = 0
    dead_letters_bytes_differ: int = 0
    dead_letters_reason_differs: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return self.mode == "exactly_once_v2"

    @property
    def lost(self) -> int:
        return self.decisions.lost + self.statuses.lost + self.dead_letters_missing

    @property
    def duplicated(self) -> int:
        return self.decisions.repeated + self.statuses.repeated + self.dead_letters_repeated

    def failures(self) -> list[str]:
        """What breaks the guarantee of the mode (empty when the run passes)."""
        out: list[str] = []
        if self.lost:
            out.append(
                f"lost {self.lost}: decisions {self.decisions.lost}, statuses {self.statuses.lost}, "
                f"dead letters {self.dead_letters_missing}; e.g. {self.decisions.example or self.statuses.example}"
            )
        if self.exactly_once and self.duplicated:
            out.append(
                f"duplicated {self.duplicated}: decisions {self.decisions.repeated}, statuses "
                f"{self.statuses.repeated}, dead letters {self.dead_letters_repeated}; e.g. "
                f"{self.decisions.example or self.statuses.example}"
            )
        for name, count in (
            ("input records not published by the harness", self.not_in_ledger),
            ("dead letters of good records", self.dead_letters_of_good_records),
            ("dead letters whose bytes differ from the input record", self.dead_letters_bytes_differ),
            ("dead letters with another reason than the bad record's", self.dead_letters_reason_differs),
        ):
            if count:
                out.append(f"{count} {name}")
        if self.decisions.expected < 100:
            out.append(f"only {self.decisions.expected} decisions expected: the workload did not run")
        return out


def audit(result: ChaosResult) -> AuditReport:
    """Read the input and every output topic back and compare; see the module docstring."""
    s = result.settings
    report = AuditReport(result.plan.guarantee)
    inputs = read_topic(s, s.subscription_topic)
    report.input_records = len(inputs)
    report.partner_records = len(result.partners)
    good: list[Item] = []
    bad: dict[tuple[int, int], tuple[BadRecord, Any]] = {}
    good_positions: set[tuple[int, int]] = set()
    seen_ids: set[tuple[str, str, str]] = set()
    for msg in inputs:
        item = result.ledger.get(msg.value())
        position = (msg.partition(), msg.offset())
        if item is None:
            report.not_in_ledger += 1
        elif isinstance(item, BadRecord):
            bad[position] = (item, msg)
        else:
            good.append(item)
            good_positions.add(position)
            event_key = (str(item["partner_id"]), str(item["customer_id"]), str(item["event_id"]))
            if event_key in seen_ids:
                report.duplicates += 1
            else:
                seen_ids.add(event_key)
                report.applied += 1
    report.bad_records = len(bad)

    decisions, statuses, dead_letters = read_outputs(s)
    want_decisions, want_statuses = expected_outputs([*result.partners, *good])
    _compare(report.decisions, by_subscription(decisions), by_subscription(want_decisions))
    _compare(report.statuses, by_account(statuses), by_account(want_statuses))

    report.dead_letters = len(dead_letters)
    per_source: Counter[tuple[int, int]] = Counter()
    reasons: Counter[str] = Counter()
    for dl in dead_letters:
        headers = {k: v for k, v in dl.headers() or [] if v is not None}
        reason = headers.get("error.reason", b"").decode()
        reasons[reason] += 1
        source = (int(headers["source.partition"]), int(headers["source.offset"]))
        if headers.get("source.topic", b"").decode() != s.subscription_topic or source in good_positions:
            report.dead_letters_of_good_records += 1
            continue
        per_source[source] += 1
        if source in bad:
            record, msg = bad[source]
            if (dl.key(), dl.value()) != (msg.key(), msg.value()):
                report.dead_letters_bytes_differ += 1
            if reason != record.reason:
                report.dead_letters_reason_differs += 1
    report.dead_letters_by_reason = dict(sorted(reasons.items()))
    report.dead_letters_missing = sum(1 for position in bad if per_source[position] == 0)
    report.dead_letters_repeated = sum(max(0, n - 1) for n in per_source.values())
    return report


def _compare(check: SequenceCheck, got: Mapping[Any, list[Any]], want: Mapping[Any, list[Any]]) -> None:
    for key in sorted(set(got) | set(want)):
        check.add(key, want.get(key, []), got.get(key, []))
