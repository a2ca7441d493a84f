"""The package's shape: no import cycles, a stage never imports a later one, and no module is
handed to another as a value.

Every ``import`` and ``from ... import`` statement counts, at module level or inside a function,
because a function-level import is a cycle that only waits for the call. A module object passed
as an argument (``f(sys.modules[__name__])``, ``f(runner)`` for an imported module ``runner``) is
an import the graph cannot see, so it is refused too.
"""

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Folders installed inside the package (pyproject.toml's package-dir) and their package names.
SOURCES = {
    "simu_bench": ROOT / "simu_bench",
    "simu_bench.tasks": ROOT / "tasks",
    "simu_bench.baselines": ROOT / "baselines",
}
# The flow of the data; methods (baselines, simu) sit with the unlearning stage they plug into.
STAGES = ["data", "target_model", "unlearning", "evaluation", "store", "leaderboard", "pipeline"]
STAGE_OF_PACKAGE = {"baselines": "unlearning", "simu": "unlearning", "tasks": "evaluation"}


@functools.cache
def modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from pkg import mod`` counts as importing pkg.mod)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
            if not any(target in known for target in targets):
                targets = [base]  # names imported from a module, not submodules
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "simu_bench":
                found.add(target)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def stage(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    name = STAGE_OF_PACKAGE.get(parts[1], parts[1])
    return STAGES.index(name) if name in STAGES else None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_walk_sees_function_level_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from simu_bench.unlearning import registry\n")
    known = {"simu_bench.unlearning", "simu_bench.unlearning.registry"}
    assert imports_of("simu_bench.x", path, known) == {"simu_bench.unlearning.registry"}


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(name for name in modules() if stage(name) is not None))
def test_a_stage_never_imports_a_later_one(module):
    own = stage(module)
    later = sorted(t for t in graph()[module] if (s := stage(t)) is not None and s > own)
    assert not later, f"{module} (stage {STAGES[own]}) imports later stages: {later}"


INTROSPECTION = {"getattr", "hasattr", "setattr", "isinstance", "vars", "dir"}  # read a module, not hand it on


def module_arguments(path: Path) -> list[str]:
    """Calls in `path` that pass a module object: ``sys.modules[...]``, or a name bound by
    ``import x`` / ``from pkg import module`` (a project module), as an argument."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = set(modules())
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            bound |= {alias.asname or alias.name for alias in node.names if f"{node.module}.{alias.name}" in known}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or ast.unparse(node.func) in INTROSPECTION:
            continue
        for arg in [*node.args, *(keyword.value for keyword in node.keywords)]:
            is_sys_modules = isinstance(arg, ast.Subscript) and ast.unparse(arg.value) == "sys.modules"
            if is_sys_modules or (isinstance(arg, ast.Name) and arg.id in bound):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_the_module_argument_finder_finds_both_forms(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import sys\nimport numpy as np\nfrom simu_bench.pipeline import steps\nfrom x import y\n"
                    "f(sys.modules[__name__])\ng(1, how=steps)\nh(np)\nk(y, sys.argv)\ngetattr(steps, 'x')\n")
    assert [line.split(":")[0] for line in module_arguments(path)] == ["line 5", "line 6", "line 7"]


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_passed_as_an_argument(module):
    found = module_arguments(modules()[module])
    assert not found, f"{module} passes a module object, an import the graph cannot see: {found}"


def test_every_stage_is_a_package():
    for name in STAGES:
        assert (ROOT / "simu_bench" / name / "__init__.py").is_file(), name
