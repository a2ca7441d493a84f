"""Modules and functions stay small enough to read: no module over 350 lines (Sophia, one
algorithm written down whole, is the exception) and no function over 60 lines."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = [ROOT / "simu_bench", ROOT / "baselines", ROOT / "tasks"]
MODULE_LINES, FUNCTION_LINES = 350, 60
LONGER_MODULES = {"simu_bench/unlearning/sophia.py"}  # SophiaG's update as torch's adam.py writes Adam's


def sources() -> list[Path]:
    return sorted(path for folder in FOLDERS for path in folder.rglob("*.py"))


def long_functions(path: Path, limit: int = FUNCTION_LINES) -> list[str]:
    """`name (N lines)` of every function or method in `path` longer than `limit` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= limit]


def test_the_function_measure_counts_from_def_to_last_line(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def short():\n" + "    x = 1\n" * 59 + "def long():\n" + "    x = 1\n" * 60)
    assert long_functions(path) == ["long (61 lines)"]


@pytest.mark.parametrize("path", sources(), ids=lambda path: str(path.relative_to(ROOT)))
def test_modules_and_functions_are_small(path):
    name = str(path.relative_to(ROOT))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert name in LONGER_MODULES or lines <= MODULE_LINES, f"{name}: {lines} lines; split it along its seams"
    assert not long_functions(path), f"{name}: functions over {FUNCTION_LINES} lines: {long_functions(path)}"
