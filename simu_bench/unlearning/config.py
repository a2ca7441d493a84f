"""Typed unlearning configs: YAML in, validated dataclasses out, with dotted overrides.

A method's YAML (``baselines/fo_graddiff.yaml`` and friends) has the keys ``method``,
``optimizer``, ``train``, ``options`` (the method's own typed options, e.g. GradDiff's
``gamma``; see `Unlearner.Options`), ``reference`` (settings published for real 1B-7B
models, in the same shape, applied with ``reference=True``), ``search`` (the space
`simu-bench tune` samples: dotted key -> ``{log_uniform: [low, high]}``, ``{uniform: [low,
high]}``, ``{int: [low, high]}`` or ``{choice: [a, b, ...]}``) and ``tuned`` (the provenance
block `simu-bench tune` writes into a tuned config). ``search`` and ``tuned`` describe how a
config was found, not what it runs: they stay out of `UnlearnConfig.to_dict` and so out of a
run's identity. Unknown keys and bad values are
all collected and reported in one `UserError`, each naming the file and the key, before any
model loads. Overrides are ``key.path=value`` strings whose value is read with
``yaml.safe_load``. This module knows no method: the caller says which options type a method
name has (``options_of``); `simu_bench.unlearning.registry.load_config` is the usual entry:

    registry.load_config("fo_graddiff", ["optimizer.lr=1e-5", "train.epochs=2"])
"""

from __future__ import annotations

import copy
import dataclasses
import math
import reprlib
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from simu_bench.errors import UserError, did_you_mean
from simu_bench.files import read_text
from simu_bench.unlearning.optimizers import OPTIMIZERS

TOP_LEVEL = ("method", "optimizer", "train", "options", "reference", "search", "tuned")
# Kinds of a search dimension (`simu-bench tune`); each takes a list of values.
SEARCH_KINDS = ("log_uniform", "uniform", "int", "choice")
# Sections a search dimension may set: the ones a run's behaviour depends on.
SEARCHABLE = ("optimizer", "train", "options")
# Keys of older configs: a config that still uses one is told its new place.
MOVED = {
    ("gamma",): "options.gamma (the retain weight belongs to the method that uses it)",
    ("optimizer", "bs"): "optimizer.curvature_scale",
}
_BAD = object()  # a value that failed validation (already reported)
# `train.dtype`: float32 by default (exact on CPU, where bfloat16 is slow); the `reference`
# blocks train in bfloat16, as SOUL does. `optimizer.state_dtype`: SophiaG's state precision.
DTYPES = ("float32", "bfloat16", "float16", "auto")
STATE_DTYPES = ("param", "float32")
# Values in messages are shown shortened: a YAML of nested aliases ("billion laughs") is small on
# disk but expands to a value whose full repr would not fit in memory.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 80
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def _show(value) -> str:
    """`repr(value)`, shortened to a few dozen characters however large or deep the value is."""
    return _REPR.repr(value)


def setting(default, *, ge=None, gt=None, lt=None, le=None, choices=None, doc=""):
    """A dataclass field with its valid range, checked by `validate`."""
    meta = dict(ge=ge, gt=gt, lt=lt, le=le, choices=choices, doc=doc)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class OptimizerConfig:
    """Which optimizer and its settings (the optimizer is configuration, not a method)."""

    name: str = setting("adamw", choices=OPTIMIZERS, doc="adamw | sophiag")
    lr: float = setting(5e-6, ge=0.0, doc="peak learning rate")
    weight_decay: float = setting(0.1, ge=0.0, doc="decoupled; never applied to 1-d weights")
    betas: tuple[float, float] = setting((0.9, 0.999), ge=0.0, lt=1.0, doc="(beta1, beta2)")
    eps: float = setting(1e-8, gt=0.0, doc="adamw only")
    rho: float = setting(0.04, gt=0.0, doc="sophiag only")
    variant: str = setting("soul", choices=("soul", "gnb"), doc="sophiag only")
    curvature_scale: float = setting(5120.0, gt=0.0, doc="sophiag only: multiplies the curvature (SOUL's bs)")
    hessian_interval: int = setting(10, ge=1, doc="sophiag gnb only: steps between refreshes")
    state_dtype: str = setting(
        "param", choices=STATE_DTYPES,
        doc="sophiag only: momentum and curvature in the parameters' dtype (param, as SOUL) or in float32",
    )


@dataclass
class TrainConfig:
    """The unlearning loop: epochs over the forget set, each example paired with a retain one."""

    epochs: int = setting(5, ge=1)
    batch_size: int = setting(1, ge=1, doc="forget examples per micro-batch")
    grad_accum_steps: int = setting(4, ge=1, doc="micro-batches per optimizer step")
    max_grad_norm: float = setting(1.0, gt=0.0, doc="gradient-norm clip")
    warmup_ratio: float = setting(0.1, ge=0.0, le=1.0, doc="share of steps of linear warm-up")
    max_length: int = setting(512, ge=2, doc="tokens per example (prompt + answer + eos)")
    max_steps: int | None = setting(None, ge=1, doc="stop after this many optimizer steps; the schedule spans them")
    dtype: str = setting(
        "float32", choices=DTYPES,
        doc="the model's dtype while unlearning (and evaluating, unless told otherwise); auto: the checkpoint's",
    )


@dataclass
class NoOptions:
    """A method without options of its own."""


@dataclass
class UnlearnConfig:
    """Everything one unlearning run needs besides the model, the data and the seed."""

    method: str
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: Any = field(default_factory=NoOptions)
    source: str = field(default="", compare=False)  # the YAML it came from
    # How the config was found, not what it runs: left out of `to_dict` (and run identity).
    search: dict = field(default_factory=dict, compare=False)  # dotted key -> {kind: values}
    tuned: dict | None = field(default=None, compare=False)  # provenance written by `simu-bench tune`

    def to_dict(self) -> dict:
        """A plain dict (for result files and run identity); ``options`` as its fields."""
        data = dataclasses.asdict(self)
        for key in ("source", "search", "tuned"):
            data.pop(key)
        data["optimizer"]["betas"] = list(self.optimizer.betas)
        return data


# -- loading ---------------------------------------------------------------------------------


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
    if isinstance(source, dict):
        raw, where = copy.deepcopy(source), "<config>"
    else:
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
    problems: list[str] = []
    raw = _apply_overrides(raw, overrides, where, problems)
    search, tuned = raw.pop("search", None), raw.pop("tuned", None)
    if tuned is not None and not isinstance(tuned, dict):
        problems.append(f"{where}: tuned: expected a mapping (written by simu-bench tune), got {_show(tuned)}")
        tuned = None
    ref = raw.pop("reference", None)
    if ref is not None and not isinstance(ref, dict):
        problems.append(f"{where}: reference: expected a mapping, got {_show(ref)}")
        ref = None
    ref = dict(ref or {})
    ref.pop("source", None)  # where the reference settings come from: text only
    problems += _moved_keys(raw, where, "") + _moved_keys(ref, where, "reference.")
    config = _build_config(raw, where, "", problems, options_of)
    # The reference block is validated even when unused so that it cannot rot.
    merged = _deep_merge(raw, ref)
    ref_problems: list[str] = []
    ref_config = _build_config(merged, where, "reference.", ref_problems, options_of) if ref else config
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


def set_path(raw: dict, dotted: str, value) -> dict:
    """A copy of ``raw`` with ``value`` at the dotted key (sections created as needed)."""
    raw = copy.deepcopy(raw)
    node = raw
    *sections, last = dotted.split(".")
    for key in sections:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value
    return raw


def check_search(search: Any, raw: dict, where: str, problems: list[str], options_of) -> dict:
    """Check a ``search:`` block against the config ``raw`` it belongs to; record problems.

    Each key must be a dotted key of `SEARCHABLE` sections that the method's config really has,
    and every end of its range (each value of a ``choice``) must be a valid value there: both
    are checked by building the config with that value, through the same validation as
    ``--set``. Returns the block as ``{key: {kind: [values]}}`` in the file's order.
    """
    if not isinstance(search, dict) or not search:
        problems.append(f"{where}: search: expected a mapping of dotted keys to ranges, e.g. "
                        f"optimizer.lr: {{log_uniform: [1.0e-5, 1.0e-2]}}; got {_show(search)}")
        return {}
    checked = {}
    base: list[str] = []  # problems of the config itself, reported once, not once per dimension
    _build_config(raw, where, "", base, options_of)
    for key, spec in search.items():
        label = f"{where}: search.{key}"
        values = _search_values(key, spec, label, problems)
        if values is None:
            continue
        kind = next(iter(spec))
        for value in values:
            found: list[str] = []
            _build_config(set_path(raw, str(key), value), where, "", found, options_of)
            found = [problem for problem in found if problem not in base]
            for problem in found:
                problems.append(f"{label}: {_show(value)} is not a valid value: {problem.removeprefix(where + ': ')}")
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
        problems.append(f"{label}: expected one of {kinds}, got {_show(spec)}")
        return None
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list) or not values:
            problems.append(f"{label}: choice: expected a non-empty list of values, got {_show(values)}")
            return None
        return values
    if not isinstance(values, list) or len(values) != 2:
        problems.append(f"{label}: {kind}: expected [low, high], got {_show(values)}")
        return None
    number = int if kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, number) for v in values):
        expected = "whole numbers" if kind == "int" else "numbers (write 1.0e-5, with a dot, for YAML to read a float)"
        problems.append(f"{label}: {kind}: expected [low, high] as {expected}, got {_show(values)}")
        return None
    low, high = values
    if low > high:
        problems.append(f"{label}: {kind}: low {_show(low)} > high {_show(high)}; write [low, high] with low <= high")
        return None
    if kind == "log_uniform" and low <= 0:
        problems.append(f"{label}: log_uniform: low {_show(low)} must be > 0; use uniform for a range that includes 0")
        return None
    return [low, high]


def parse_override(text: str, where: str = "--set") -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], yaml.safe_load(value))."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise UserError(f"{where}: {text!r} is not KEY=VALUE; write e.g. optimizer.lr=1e-5")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def _apply_overrides(raw: dict, overrides, where: str, problems: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                problems.append(f"--set {text}: {key} is a value, not a section of keys")
                break
            node = child
        else:
            node[keys[-1]] = value
    return raw


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _moved_keys(raw: dict, where: str, prefix: str) -> list[str]:
    """One problem per key of an older config, naming where it lives now; the keys are removed."""
    problems = []
    for keys, new in MOVED.items():
        node = raw
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            del node[keys[-1]]
            problems.append(f"{where}: {prefix}{'.'.join(keys)}: moved; write it as {prefix}{new}")
    return problems


def _build_config(raw: dict, where: str, prefix: str, problems: list[str], options_of) -> UnlearnConfig:
    unknown = [key for key in raw if key not in TOP_LEVEL]
    for key in unknown:
        problems.append(f"{where}: {prefix}{key}: unknown key; expected one of {', '.join(TOP_LEVEL)}")
    method = raw.get("method")
    options_type: type = NoOptions
    if not isinstance(method, str) or not method:
        problems.append(f"{where}: {prefix}method: missing; expected a method name, e.g. fo_graddiff")
        method = ""
    else:
        try:
            options_type = options_of(method)
        except UserError as error:
            problems.append(f"{where}: {prefix}method: {error}")
    values: dict[str, Any] = {"method": method}
    values["optimizer"] = _build(OptimizerConfig, raw.get("optimizer", {}), where, prefix + "optimizer.", problems)
    values["train"] = _build(TrainConfig, raw.get("train", {}), where, prefix + "train.", problems)
    values["options"] = _build(options_type, raw.get("options", {}), where, prefix + "options.", problems)
    return UnlearnConfig(**{k: v for k, v in values.items() if v is not _BAD}, source=where)


def _build(cls: type, raw: Any, where: str, prefix: str, problems: list[str]):
    """Instantiate dataclass ``cls`` from mapping ``raw``; record problems, fall back to defaults."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: {prefix.rstrip('.')}: expected a mapping, got {_show(raw)}")
        raw = {}
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            problems.append(f"{where}: {prefix}{key}: unknown key{did_you_mean(str(key), names)}")
    values = {}
    for name in names:
        if name in raw:
            value = _check_value(cls, name, raw[name], where, prefix, problems)
            if value is not _BAD:
                values[name] = value
    try:
        return cls(**values)
    except TypeError as error:  # a required option without default
        problems.append(f"{where}: {prefix.rstrip('.')}: {error}")
        return None


def _check_value(cls: type, name: str, value: Any, where: str, prefix: str, problems: list[str]):
    """Coerce ``value`` to the declared type of ``cls.name`` and check its range."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    key = f"{where}: {prefix}{name}"
    meta = f.metadata
    try:
        coerced = _coerce(hint, value)
    except (TypeError, ValueError) as error:
        problems.append(f"{key}: got {_show(value)}, expected {error}")
        return _BAD
    for item in coerced if isinstance(coerced, tuple) else (coerced,):
        expectation = _out_of_range(item, meta)
        if expectation:
            problems.append(f"{key}: got {_show(value)}, expected {expectation}")
            return _BAD
    return coerced


def _coerce(hint, value):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise TypeError(f"a list of {len(args)} values")
        return tuple(_coerce(a, v) for a, v in zip(args, value))
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("an integer")
        return value
    if hint is float:
        # PyYAML reads "1e-5" (no dot) as a string; accept any text float() understands.
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError("a number")
        try:
            number = float(value)
        except ValueError:
            raise TypeError("a number") from None
        if not math.isfinite(number):
            raise ValueError("a finite number")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise TypeError("a string")
        return value
    return value  # untyped (Any): taken as is


_BOUNDS = (
    ("ge", ">=", lambda v, b: v >= b),
    ("gt", ">", lambda v, b: v > b),
    ("le", "<=", lambda v, b: v <= b),
    ("lt", "<", lambda v, b: v < b),
)


def _out_of_range(value, meta) -> str:
    """'' when ``value`` satisfies the field's choices and bounds, else what was expected."""
    if value is None:
        return ""
    choices = meta.get("choices")
    if choices and value not in choices:
        return f"one of {', '.join(map(str, choices))}"
    bounds = [(text, meta[op], test) for op, text, test in _BOUNDS if meta.get(op) is not None]
    if all(test(value, bound) for _, bound, test in bounds):
        return ""
    return "a value " + " and ".join(f"{text} {bound}" for text, bound, _ in bounds)
