"""Dotted overrides of a raw config: ``--set optimizer.lr=1e-5`` and the values of a search trial."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from simu_bench.errors import UserError


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


def apply_overrides(raw: dict, overrides, where: str, problems: list[str]) -> dict:
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
