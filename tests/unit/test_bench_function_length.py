"""No function of the benchmark harness is longer than 80 lines: each measurement reads as a few steps."""

from __future__ import annotations

import ast
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
LIMIT = 80


def _long_functions(path: Path) -> list[str]:
    """`file:line name (n lines)` for every function or method of `path` longer than LIMIT, nested ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > LIMIT:
                found.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_benchmark_function_is_over_80_lines() -> None:
    """Every function in benchmarks/, decorators and docstring included, has at most 80 lines."""
    files = sorted(BENCHMARKS.glob("**/*.py"))
    assert len(files) > 10, f"benchmarks/ not found at {BENCHMARKS}"
    too_long = [entry for path in files for entry in _long_functions(path)]
    assert too_long == []


def test_the_length_check_finds_a_long_function(tmp_path: Path) -> None:
    """The check itself: an 81-line function is reported, an 80-line one is not."""
    body = "".join(f"    x{i} = {i}\n" for i in range(79))
    (tmp_path / "ok.py").write_text(f"def fits():\n{body}")
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}    x = 0\n")
    assert _long_functions(tmp_path / "ok.py") == []
    assert _long_functions(tmp_path / "long.py") == ["long.py:1 too_long (81 lines)"]
