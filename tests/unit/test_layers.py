"""The package layers point one way (README, Folders): every import in a product package, at module level or
inside a function, names its own package or one its layer may use; none names `tests`."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"multichannel", "config", "schemas", "deploy"}
SERVICES = {"consumers", "producers", "dashboard"}
ALLOWED: dict[str, set[str]] = {
    "multichannel": set(),  # the pure core
    "config": {"multichannel"},  # shared adapters, side by side: they do not import each other
    "schemas": {"multichannel"},
    "deploy": {"multichannel", "config", "schemas"},
    **dict.fromkeys(SERVICES, SHARED),  # side by side: never each other
    "benchmarks": SHARED | SERVICES,
    "cli": SHARED | SERVICES | {"benchmarks"},
}
PROJECT = set(ALLOWED) | {"tests"}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def test_every_top_level_package_has_a_layer() -> None:
    """A new package cannot slip past the check: every package at the root is in the layer table."""
    unplaced = {p.parent.name for p in ROOT.glob("*/__init__.py")} - PROJECT
    assert not unplaced, f"packages without a layer in ALLOWED: {sorted(unplaced)}"


def test_every_import_points_down_the_layers() -> None:
    """No product module imports a package beside or above its own layer, or the tests."""
    wrong = [
        f"{path.relative_to(ROOT)}:{line} ({package}) imports {target}"
        for package, allowed in ALLOWED.items()
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, target in imports(path)
        if target in PROJECT and target != package and target not in allowed
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_core_imports_only_the_standard_library() -> None:
    """Beyond the libraries ruff's banned-api names (pyproject.toml), no third-party module enters `multichannel/`."""
    foreign = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sorted((ROOT / "multichannel").rglob("*.py"))
        for line, target in imports(path)
        if target != "multichannel" and target not in sys.stdlib_module_names
    ]
    assert not foreign, "the pure core imports outside the standard library:\n" + "\n".join(foreign)
