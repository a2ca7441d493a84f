"""The names of the unlearning methods: registry key -> class.

Adding a method is one file and one line here, ``"name": "module:Class"``. Modules are imported
only when a method is asked for, so a broken method cannot break the others.
"""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path

from simu_bench.errors import UserError, did_you_mean

METHODS: dict[str, str] = {
    "fo_graddiff": "simu_bench.baselines.fo_graddiff:FOGradDiff",
    "so_graddiff": "simu_bench.baselines.so_graddiff:SOGradDiff",
    "simu": "simu_bench.simu.method:Simu",
}


def names() -> list[str]:
    """Registered method names, sorted."""
    return sorted(METHODS)


def get(name: str):
    """The `Unlearner` class registered as ``name``; `UserError` with suggestions otherwise."""
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}{did_you_mean(name, names())}")
    module_name, _, class_name = METHODS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.name != name:
        raise RuntimeError(f"registry entry {name!r} points to a class named {cls.name!r}")
    return cls


def config_path(name: str) -> Path:
    """The shipped YAML config of method ``name``."""
    cls = get(name)
    if cls.config_resource is None:
        raise UserError(f"method {name!r} ships no config file; pass a YAML path instead")
    package, filename = cls.config_resource
    return Path(str(importlib.resources.files(package) / filename))


def create(name_or_config, overrides=(), *, reference: bool = False):
    """Build an unlearner from a method name, a YAML path or an `UnlearnConfig`."""
    from simu_bench.unlearning.config import UnlearnConfig, load_config

    config = name_or_config
    if not isinstance(config, UnlearnConfig):
        config = load_config(name_or_config, overrides, reference=reference)
    return get(config.method)(config)
