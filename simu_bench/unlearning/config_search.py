"""The ``search:`` block of a method's YAML: the space `simu-bench tune` samples, checked against
the config it belongs to (every end of a range must be a valid value there)."""

from __future__ import annotations

from typing import Any

from simu_bench.unlearning.config import show
from simu_bench.unlearning.config_checks import build_config
from simu_bench.unlearning.config_overrides import set_path

# Kinds of a search dimension (`simu-bench tune`); each takes a list of values.
SEARCH_KINDS = ("log_uniform", "uniform", "int", "choice")
# Sections a search dimension may set: the ones a run's behaviour depends on.
SEARCHABLE = ("optimizer", "train", "options")


def check_search(search: Any, raw: dict, where: str, problems: list[str], options_of) -> dict:
    """Check a ``search:`` block against the config ``raw`` it belongs to; record problems.

    Each key must be a dotted key of `SEARCHABLE` sections that the method's config really has,
    and every end of its range (each value of a ``choice``) must be a valid value there: both
    are checked by building the config with that value, through the same validation as
    ``--set``. Returns the block as ``{key: {kind: [values]}}`` in the file's order.
    """
    if not isinstance(search, dict) or not search:
        problems.append(f"{where}: search: expected a mapping of dotted keys to ranges, e.g. "
                        f"optimizer.lr: {{log_uniform: [1.0e-5, 1.0e-2]}}; got {show(search)}")
        return {}
    checked = {}
    base: list[str] = []  # problems of the config itself, reported once, not once per dimension
    build_config(raw, where, "", base, options_of)
    for key, spec in search.items():
        label = f"{where}: search.{key}"
        values = _search_values(key, spec, label, problems)
        if values is None:
            continue
        kind = next(iter(spec))
        for value in values:
            found: list[str] = []
            build_config(set_path(raw, str(key), value), where, "", found, options_of)
            found = [problem for problem in found if problem not in base]
            for problem in found:
                problems.append(f"{label}: {show(value)} is not a valid value: {problem.removeprefix(where + ': ')}")
            if found:
                break
        else:
            checked[str(key)] = {kind: list(values) if kind == "choice" else list(spec[kind])}
    return checked


def _search_values(key: Any, spec: Any, label: str, problems: list[str]) -> list | None:
    """The values of one dimension that must each be valid (ends of a range, every choice)."""
    parts = str(key).split(".")
    if not isinstance(key, str) or len(parts) < 2 or parts[0] not in SEARCHABLE or not all(parts):
        problems.append(f"{label}: expected a dotted key in one of {', '.join(SEARCHABLE)}, e.g. optimizer.lr")
        return None
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SEARCH_KINDS:
        kinds = ", ".join(f"{{{kind}: [...]}}" for kind in SEARCH_KINDS)
        problems.append(f"{label}: expected one of {kinds}, got {show(spec)}")
        return None
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list) or not values:
            problems.append(f"{label}: choice: expected a non-empty list of values, got {show(values)}")
            return None
        return values
    if not isinstance(values, list) or len(values) != 2:
        problems.append(f"{label}: {kind}: expected [low, high], got {show(values)}")
        return None
    number = int if kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, number) for v in values):
        expected = "whole numbers" if kind == "int" else "numbers (write 1.0e-5, with a dot, for YAML to read a float)"
        problems.append(f"{label}: {kind}: expected [low, high] as {expected}, got {show(values)}")
        return None
    low, high = values
    if low > high:
        problems.append(f"{label}: {kind}: low {show(low)} > high {show(high)}; write [low, high] with low <= high")
        return None
    if kind == "log_uniform" and low <= 0:
        problems.append(f"{label}: log_uniform: low {show(low)} must be > 0; use uniform for a range that includes 0")
        return None
    return [low, high]
