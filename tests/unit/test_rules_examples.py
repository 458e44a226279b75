"""The worked examples of docs/rules.md, run: every block fenced `json example` goes through the core and
the records it documents (after `→`) are checked field by field.

The block format is described in docs/rules.md ("Reading the examples"): an optional first line with the
command (`$ multichannel classify --rulebook current` runs the block under that rule book; without one it
runs under `seed`), event lines in JSON with the left-out fields filled in here, `(timer at …)` lines, and
`→` lines naming a subscription (`S1: …`) or the account's `status` with fields of the records the step
above emitted, or giving one record whole as `multichannel classify` writes it (`→ {"record_type": …}`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consumers.classify_runner import record_to_json
from multichannel.engine import Classifier
from multichannel.model import Decision, Reason
from multichannel.records import OutputRecord
from multichannel.rulebooks import CURRENT, SEED, RuleBook, rulebook
from tests.unit.core_driver import CoreDriver, day, decisions, instant, statuses

RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{2,3} (\S+?):?\s", re.MULTILINE)
COMMAND = ("$", "multichannel", "classify")
FIRST_TIME = "2026-01-01T00:00:00Z"
LICENSE_DEFAULTS = {"quantity": 5, "term_start": "2026-01-01"}
DECISIONS = {d.value for d in Decision}
REASONS = {r.value for r in Reason}
JSON_FIELDS = (
    "next_actions",
    "blocked_until",
    "relationship_via_partner_ids",
    "decided_at",
    "caused_by_event_id",
    "decision_counts",
)


@dataclass
class Step:
    """One event (or one timer instant) and the `→` lines documenting what it emitted."""

    event: dict[str, Any] | None
    timer: str | None = None
    expected: list[str] = field(default_factory=list)


@dataclass
class Example:
    id: str
    steps: list[Step]
    rulebook: RuleBook = SEED
    """The rule book its command line names (`seed` when it has none)."""


def split_top(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside quotes, brackets, braces and parentheses."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "[{(":
            depth += 1
        elif not quoted and ch in "]})":
            depth -= 1
        elif not quoted and depth == 0 and ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def without_comments(text: str) -> str:
    """`text` without its top-level parentheses (comments for the reader)."""
    out, depth, quoted = [], 0, False
    for ch in text:
        if ch == '"' and depth == 0:
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out).strip()


def command_rulebook(line: str) -> RuleBook:
    """The rule book of a block's command line: `$ multichannel classify`, optionally `--rulebook NAME`."""
    words = line.split()
    assert tuple(words[:3]) == COMMAND, f"a command line that is not `multichannel classify`: {line!r}"
    options, book = words[3:], SEED
    while options:
        option = options.pop(0)
        if option == "--rulebook" and options:
            book = rulebook(options.pop(0))
        else:
            raise AssertionError(f"an option the examples do not take: {option!r} in {line!r}")
    return book


def parse_block(body: str) -> tuple[list[Step], RuleBook]:
    """The steps of a block and the rule book its command line (if any, the first line) names."""
    steps: list[Step] = []
    book = SEED
    for number, line in enumerate(body.splitlines()):
        if line.startswith("$"):
            assert number == 0, f"a command line after the first line: {line!r}"
            book = command_rulebook(line)
        elif line.startswith("{"):
            steps.append(Step(json.loads(line)))
        elif line.startswith("(timer at ") and line.endswith(")"):
            steps.append(Step(None, line.removeprefix("(timer at ").removesuffix(")")))
        elif line.startswith("→"):
            assert steps, f"a → line before any event: {line!r}"
            steps[-1].expected.append(line.removeprefix("→").strip())
        elif line.startswith("  ") and steps and steps[-1].expected:
            steps[-1].expected[-1] += " " + line.strip()
        else:
            raise AssertionError(f"a line the example format does not have: {line!r}")
    return steps, book


def examples(text: str) -> list[Example]:
    """Every `json example` block of `text`, named after its section (`R5-2` is R5's second example)."""
    found: list[Example] = []
    seen: dict[str, int] = {}
    for match in FENCE.finditer(text):
        if match.group(1).split() != ["json", "example"]:
            continue
        headings = HEADING.findall(text, 0, match.start())
        section = headings[-1] if headings else "intro"
        seen[section] = seen.get(section, 0) + 1
        steps, book = parse_block(match.group(2))
        found.append(Example(f"{section}-{seen[section]}", steps, book))
    return found


def expectation(part: str) -> tuple[str, dict[str, Any]]:
    """One record of a `→` line: its target (`S1`, `status`, `no status record` or `no records`) and its fields."""
    part = without_comments(part)
    if part in ("no status record", "no records"):
        return part, {}
    if re.match(r"S\d+:", part):
        target, _, rest = part.partition(":")
    else:
        assert part.startswith("status "), f"{part!r} names neither a subscription nor the status"
        target, rest = "status", part
    fields: dict[str, Any] = {}
    for item in split_top(rest, ","):
        name, _, value = item.partition(" ")
        if name in ("rule", "reason", "status") and value:
            fields[name] = value
        elif name in JSON_FIELDS and value:
            fields[name] = json.loads(value)
        elif item in DECISIONS:
            fields["decision"] = item
        elif item in REASONS:
            fields["reason"] = item
        else:
            raise AssertionError(f"{item!r} is not a field the example format knows")
    return target, fields


def filled(event: dict[str, Any], previous: str) -> dict[str, Any]:
    """The event as `classify` needs it: the fields the examples leave out, filled in as the page says."""
    full = {"occurred_at": previous, **event}
    if full["event_type"] == "subscription_purchased":
        full.setdefault("offer_id", "O365-E3")
        if full["billing_model"] == "license":
            full = {**LICENSE_DEFAULTS, **full}
    return full


def expected_value(name: str, value: Any) -> Any:
    if name == "blocked_until":
        return day(value)
    if name == "decided_at":
        return instant(value)
    return value


def check(step_records: list[OutputRecord], target: str, fields: dict[str, Any], where: str) -> None:
    if target == "no status record":
        assert statuses(step_records) == [], where
        return
    if target == "no records":
        assert step_records == [], where
        return
    if target == "status":
        found = [r.to_dict() for r in statuses(step_records)]
    else:
        found = [r.to_dict() for r in decisions(step_records) if r.subscription_id == target]
    assert len(found) == 1, f"{where}: {len(found)} records for {target}"
    got = {name: found[0][name] for name in fields}
    assert got == {name: expected_value(name, value) for name, value in fields.items()}, where


def check_whole(step_records: list[OutputRecord], line: str, where: str) -> None:
    """A `→ {…}` line: exactly one record of the step is written by `multichannel classify` as this object."""
    expected = json.loads(line)
    found = [r for r in step_records if json.loads(record_to_json(r)) == expected]
    assert len(found) == 1, f"{where}: no record written as {line}"


def run_example(example: Example) -> None:
    driver = CoreDriver(Classifier(transactional=False, rulebook=example.rulebook))
    previous = FIRST_TIME
    for step in example.steps:
        if step.event is not None:
            event = filled(step.event, previous)
            previous = event["occurred_at"]
            records = driver.apply(event)
            where = f"{example.id}: after {step.event['event_id']}"
        else:
            assert step.timer is not None
            records = driver.advance(step.timer)
            where = f"{example.id}: timer at {step.timer}"
        for line in step.expected:
            if line.startswith("{"):
                check_whole(records, line, where)
                continue
            for part in split_top(line, ";"):
                target, fields = expectation(part)
                check(records, target, fields, f"{where}: {part}")


EXAMPLES = examples(RULES_DOC.read_text(encoding="utf-8"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_the_documented_example_gives_the_documented_records(example: Example) -> None:
    """Each worked example of docs/rules.md, run through the engine, emits the records it shows."""
    run_example(example)


def test_every_worked_example_is_marked_and_documents_records() -> None:
    """Every fenced block that shows records (`→`) is a `json example`, each one checks at least one
    record, and every rule section's example is among them."""
    text = RULES_DOC.read_text(encoding="utf-8")
    unmarked = [m.group(1) for m in FENCE.finditer(text) if "\n→" in "\n" + m.group(2) and m.group(1) != "json example"]
    assert unmarked == []
    assert all(any(step.expected for step in e.steps) for e in EXAMPLES)
    sections = {e.id.rsplit("-", 1)[0] for e in EXAMPLES}
    assert {f"R{n}" for n in range(1, 11)} | {"M1", "M2", "M3"} | CURRENT_ONLY <= sections
    assert all(e.rulebook is CURRENT for e in EXAMPLES if e.id.rsplit("-", 1)[0] in CURRENT_ONLY)


CURRENT_ONLY = {"T1", "T2", "T3", "E1", "E2"}
"""The rules of the `current` rule book alone: their sections' examples run under it."""


def t2_block(command: str, expected: str) -> str:
    """A page with one T2 example: `command` its first line (none when empty), `expected` its one `→` line."""
    return (
        "## T2: x\n\n```json example\n"
        + (command + "\n" if command else "")
        + '{"event_type": "partner_program_changed", "event_id": "p1", "partner_id": "P1", "program": "csp_direct"}\n'
        + '{"event_type": "partner_program_changed", "event_id": "p2", "partner_id": "P2", "program": "csp_direct"}\n'
        + '{"event_type": "subscription_purchased", "event_id": "e1", "partner_id": "P1", "customer_id": "C1",'
        + ' "subscription_id": "S1", "billing_model": "license", "channel": "csp", "seller_partner_id": "P2",'
        + ' "commerce": "nce", "term_end": "2027-01-01"}\n'
        + f"→ {expected}\n```\n"
    )


def test_an_example_runs_under_the_rule_book_its_command_line_names() -> None:
    """A block that starts with `$ multichannel classify --rulebook current` runs under `current`; the same block
    without that line runs under `seed` and fails where the books differ."""
    expected = "S1: rule T2, TRANSFER_NEEDS_RELATIONSHIP"
    [current] = examples(t2_block("$ multichannel classify --rulebook current", expected))
    assert current.rulebook is CURRENT
    run_example(current)
    [seed] = examples(t2_block("", expected))
    assert seed.rulebook is SEED
    with pytest.raises(AssertionError, match="rule T2"):
        run_example(seed)


def test_a_command_line_the_examples_do_not_take_is_refused() -> None:
    """An unknown option, an unknown rule book or another command on a block's first line fails the block."""
    for command, message in (
        ("$ multichannel classify --as-of 2027-01-01", "an option the examples do not take"),
        ("$ multichannel classify --rulebook newest", "unknown rule book"),
        ("$ multichannel generate", "not `multichannel classify`"),
    ):
        with pytest.raises((AssertionError, ValueError), match=message):
            examples(t2_block(command, "S1: rule T2"))


def test_a_whole_record_line_must_match_the_written_record() -> None:
    """A `→ {…}` line passes when `classify` writes exactly that record, and fails when one field differs."""
    written = (
        '{"record_type": "subscription_decision", "partner_id": "P1", "customer_id": "C1", "subscription_id": "S1",'
        ' "decision": "ELIGIBLE_FOR_RELATIONSHIP_REQUEST", "reason": "TRANSFER_NEEDS_RELATIONSHIP", "rule": "T2",'
        ' "next_actions": ["SEND_RELATIONSHIP_REQUEST", "REQUEST_PARTNER_TRANSFER"], "blocked_until": null,'
        ' "relationship_via_partner_ids": [], "decided_at": "2026-01-01T00:00:00Z", "caused_by_event_id": "e1",'
        ' "rulebook_version": "2026-12.1"}'
    )
    command = "$ multichannel classify --rulebook current"
    run_example(examples(t2_block(command, written))[0])
    wrong = written.replace('"2026-12.1"', '"2026-11.1"')
    with pytest.raises(AssertionError, match="no record written as"):
        run_example(examples(t2_block(command, wrong))[0])


def test_a_wrong_documented_field_fails_the_example() -> None:
    """An example whose documented reason differs from the engine's is reported, not passed over."""
    wrong = examples(
        "## R3: x\n\n```json example\n"
        '{"event_type": "partner_program_changed", "event_id": "p1", "partner_id": "P1", "program": "csp_direct"}\n'
        '{"event_type": "subscription_purchased", "event_id": "e1", "partner_id": "P1", "customer_id": "C1",'
        ' "subscription_id": "S1", "billing_model": "license", "channel": "csp", "seller_partner_id": "P1",'
        ' "term_end": "2027-01-01"}\n'
        "→ S1: rule R3, ALREADY_MANAGED, SOLD_BY_ACCOUNT_PARTNER; status MULTICHANNEL\n"
        "```\n"
    )
    assert [e.id for e in wrong] == ["R3-1"]
    with pytest.raises(AssertionError, match="status MULTICHANNEL"):
        run_example(wrong[0])


def test_an_unknown_word_in_a_documented_record_is_refused() -> None:
    """A `→` line with a word the format does not know fails instead of being ignored."""
    with pytest.raises(AssertionError, match="is not a field"):
        expectation("S1: rule R9, eligible")


def test_no_records_fails_when_the_step_emitted_one() -> None:
    """`→ no records` under an event that emits a decision and a status fails the example."""
    [example] = examples(t2_block("$ multichannel classify --rulebook current", "no records"))
    with pytest.raises(AssertionError, match="no records"):
        run_example(example)
