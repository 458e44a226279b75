"""The project's own docs explain every code on the wire and stand alone, without files outside the repo."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from multichannel.model import CustomerStatus, Decision, NextAction, Reason, Rule

ROOT = Path(__file__).resolve().parents[2]
RULES_DOC = ROOT / "docs" / "rules.md"
WIRE_ENUMS: tuple[type[StrEnum], ...] = (Rule, Reason, Decision, NextAction, CustomerStatus)
OUTSIDE_REFERENCES = ("../shared", "shared/domain")


def _undocumented(text: str, enum: type[StrEnum]) -> list[str]:
    """The values of `enum` that `text` does not mention as a whole code (R1 is not found inside R10)."""
    return [m.value for m in enum if re.search(rf"(?<![A-Za-z0-9_]){re.escape(m.value)}(?![A-Za-z0-9_])", text) is None]


@pytest.mark.parametrize("enum", WIRE_ENUMS, ids=lambda e: e.__name__)
def test_rules_doc_names_every_code_of_the_enum(enum: type[StrEnum]) -> None:
    """docs/rules.md mentions every member of the enum by its value as it appears on the wire."""
    assert _undocumented(RULES_DOC.read_text(), enum) == []


def test_a_code_inside_a_longer_code_does_not_count_as_documented() -> None:
    """A rule id that only appears inside a longer one (R1 in R10) is reported as missing."""
    text = "only R10 and R2 to R9 here: R2 R3 R4 R5 R6 R7 R8 R9, and T1 T2 T3 E1 E2"
    assert _undocumented(text, Rule) == ["R1"]


def test_no_doc_refers_to_files_outside_the_repository() -> None:
    """README.md and docs/*.md never mention the shared rule book or contract outside the repository."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [f"{doc.relative_to(ROOT)}: {ref}" for doc in docs for ref in OUTSIDE_REFERENCES if ref in doc.read_text()]
    assert found == []
