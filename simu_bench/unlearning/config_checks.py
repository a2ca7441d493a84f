"""Building a typed config from a raw mapping: unknown keys, types and ranges, each problem
recorded with its file and key (`simu_bench.unlearning.config_loading` reports them at once)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from simu_bench.errors import UserError, did_you_mean
from simu_bench.unlearning.config import TOP_LEVEL, NoOptions, OptimizerConfig, TrainConfig, UnlearnConfig, show

# Keys of older configs: a config that still uses one is told its new place.
MOVED = {
    ("gamma",): "options.gamma (the retain weight belongs to the method that uses it)",
    ("optimizer", "bs"): "optimizer.curvature_scale",
}
_BAD = object()  # a value that failed validation (already reported)


def moved_keys(raw: dict, where: str, prefix: str) -> list[str]:
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


def build_config(raw: dict, where: str, prefix: str, problems: list[str], options_of) -> UnlearnConfig:
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
        problems.append(f"{where}: {prefix.rstrip('.')}: expected a mapping, got {show(raw)}")
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
        problems.append(f"{key}: got {show(value)}, expected {error}")
        return _BAD
    for item in coerced if isinstance(coerced, tuple) else (coerced,):
        expectation = _out_of_range(item, meta)
        if expectation:
            problems.append(f"{key}: got {show(value)}, expected {expectation}")
            return _BAD
    return coerced


def _coerce(hint, value):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
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
