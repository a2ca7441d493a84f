"""Loading a method's config: YAML (or a mapping) -> ``--set`` overrides -> the ``reference``
block -> checks -> `UnlearnConfig`, with every problem in one `UserError`.

    registry.load_config("fo_graddiff", ["optimizer.lr=1e-5", "train.epochs=2"])

Overrides are ``key.path=value`` strings whose value is read with ``yaml.safe_load``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Callable

import yaml

from simu_bench.errors import UserError
from simu_bench.files import read_text
from simu_bench.unlearning.config import NoOptions, UnlearnConfig, show
from simu_bench.unlearning.config_checks import build_config, moved_keys
from simu_bench.unlearning.config_overrides import apply_overrides
from simu_bench.unlearning.config_search import check_search


def load_config(
    source: Path | dict,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    reference: bool = False,
    options_of: Callable[[str], type] = lambda method: NoOptions,
) -> UnlearnConfig:
    """Load, override and validate a config; raise one `UserError` listing every problem.

    ``source`` is a YAML path or a mapping. ``reference=True`` applies the file's ``reference``
    block (settings for real 1B-7B models). ``options_of(method)`` gives the options dataclass
    of a method name, or raises `UserError` for an unknown one.
    """
    raw, where = read_raw(source)
    problems: list[str] = []
    raw = apply_overrides(raw, overrides, where, problems)
    search, tuned = raw.pop("search", None), raw.pop("tuned", None)
    if tuned is not None and not isinstance(tuned, dict):
        problems.append(f"{where}: tuned: expected a mapping (written by simu-bench tune), got {show(tuned)}")
        tuned = None
    ref = raw.pop("reference", None)
    if ref is not None and not isinstance(ref, dict):
        problems.append(f"{where}: reference: expected a mapping, got {show(ref)}")
        ref = None
    ref = dict(ref or {})
    ref.pop("source", None)  # where the reference settings come from: text only
    problems += moved_keys(raw, where, "") + moved_keys(ref, where, "reference.")
    config = build_config(raw, where, "", problems, options_of)
    # The reference block is validated even when unused so that it cannot rot.
    merged = _deep_merge(raw, ref)
    ref_problems: list[str] = []
    ref_config = build_config(merged, where, "reference.", ref_problems, options_of) if ref else config
    # A bad key outside the reference block would be reported twice; keep the first.
    problems += [p for p in ref_problems if p.replace("reference.", "", 1) not in problems]
    if reference and not ref:
        problems.append(f"{where}: reference: missing; this config has no reference settings to apply")
    if search is not None:
        search = check_search(search, raw, where, problems, options_of)
    if problems:
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise UserError(f"{head} in config: " + "; ".join(problems))
    chosen = ref_config if reference else config
    chosen.search, chosen.tuned = dict(search or {}), tuned
    return chosen


def read_raw(source: Path | dict) -> tuple[dict, str]:
    """The raw mapping of a YAML path (or a copy of a mapping) and where it came from, for messages."""
    if isinstance(source, dict):
        return copy.deepcopy(source), "<config>"
    path = Path(source)
    where = str(path)
    if not path.exists():
        raise UserError(f"config {where} not found; give a method name or a YAML file")
    text = read_text(path, "a UTF-8 YAML config")  # a folder, a pipe, an unreadable file: one line
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"config {where} is not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise UserError(f"config {where}: YAML nested too deeply (over ~{sys.getrecursionlimit()} levels); "
                        "expected the sections method, optimizer, train, options: fix the file") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping of keys to values at the top, got {type(raw).__name__}")
    return raw, where


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
