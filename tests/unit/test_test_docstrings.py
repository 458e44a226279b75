"""Every test says, in its docstring, the behaviour it checks: a reader can follow tests/ as a list of
what the software does without reading the assertions."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
NOT_A_BEHAVIOUR = re.compile(r"(tests?|checks?|verif(y|ies)|ensures?)\b", re.IGNORECASE)
"""A docstring that opens like this names the test, not the behaviour ("Tests X")."""


def undescribed(source: str) -> list[str]:
    """The `test_*` functions (and methods) of `source` without a docstring that states a behaviour."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            doc = (ast.get_docstring(node) or "").strip()
            if not doc or NOT_A_BEHAVIOUR.match(doc):
                found.append(f"{node.name} (line {node.lineno})")
    return found


def test_every_test_in_tests_has_a_docstring_stating_its_behaviour() -> None:
    """Each `def test_...` under tests/ (unit, integration, chaos) has a docstring that says what it checks."""
    missing = {
        str(path.relative_to(TESTS)): names
        for path in sorted(TESTS.rglob("*.py"))
        if (names := undescribed(path.read_text(encoding="utf-8")))
    }
    assert missing == {}


def test_a_test_without_a_docstring_or_with_a_test_x_docstring_is_found() -> None:
    """A test with no docstring, or one that only says "Tests …", is reported; a behaviour is not."""
    source = '''
def test_a() -> None:
    assert True

class TestGroup:
    def test_b(self) -> None:
        """Tests b."""

async def test_c() -> None:
    """A purchase from Microsoft directly is M1."""

def helper_test_d() -> None:
    pass
'''
    assert undescribed(source) == ["test_a (line 2)", "test_b (line 6)"]
