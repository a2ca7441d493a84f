"""The unlearning methods by name: registry key -> (class, shipped YAML config).

A method in this project is one line in `METHODS`: ``"name": ("module:Class", "package:file.yaml")``.
One class may serve several names (FO- and SO-GradDiff are one GradDiff class with two YAMLs).
A method in another package registers itself through the entry-point group
``simu_bench.methods`` (in its pyproject.toml: ``[project.entry-points."simu_bench.methods"]
my_method = "my_package.my_method:MyMethod"``); its class names its YAML in
``config_resource = ("my_package", "my_method.yaml")``. Modules are imported only when a method
is asked for, so a broken method cannot break the others.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
from functools import lru_cache
from pathlib import Path

from simu_bench.errors import UserError, did_you_mean
from simu_bench.unlearning.config import UnlearnConfig
from simu_bench.unlearning.config import load_config as _load_config

METHODS: dict[str, tuple[str, str]] = {
    "fo_graddiff": ("simu_bench.baselines.graddiff:GradDiff", "simu_bench.baselines:fo_graddiff.yaml"),
    "so_graddiff": ("simu_bench.baselines.graddiff:GradDiff", "simu_bench.baselines:so_graddiff.yaml"),
    "simu": ("simu_bench.simu.method:Simu", "simu_bench.simu:simu.yaml"),
    "grad_ascent": ("simu_bench.baselines.grad_ascent:GradAscent", "simu_bench.baselines:grad_ascent.yaml"),
    "npo": ("simu_bench.baselines.npo:Npo", "simu_bench.baselines:npo.yaml"),
    "simnpo": ("simu_bench.baselines.simnpo:SimNpo", "simu_bench.baselines:simnpo.yaml"),
    "rmu": ("simu_bench.baselines.rmu:Rmu", "simu_bench.baselines:rmu.yaml"),
    "idk_dpo": ("simu_bench.baselines.idk_dpo:IdkDpo", "simu_bench.baselines:idk_dpo.yaml"),
    "wagle": ("simu_bench.baselines.wagle:Wagle", "simu_bench.baselines:wagle.yaml"),
    "selective_pruning": (
        "simu_bench.baselines.selective_pruning:SelectivePruning", "simu_bench.baselines:selective_pruning.yaml"
    ),
    # SIMU's mask with another selection, weighting or loss: one class, one YAML each.
    "random_mask": ("simu_bench.simu.method:Simu", "simu_bench.simu:random_mask.yaml"),
    "simu_soft": ("simu_bench.simu.method:Simu", "simu_bench.simu:simu_soft.yaml"),
    "simu_npo": ("simu_bench.simu.method:Simu", "simu_bench.simu:simu_npo.yaml"),
    "simu_simnpo": ("simu_bench.simu.method:Simu", "simu_bench.simu:simu_simnpo.yaml"),
    # The controls that isolate the mask: what trains (attention alone, units alone), or C_f - C_r.
    "attention_only": ("simu_bench.simu.method:Simu", "simu_bench.simu:attention_only.yaml"),
    "simu_mlp_only": ("simu_bench.simu.method:Simu", "simu_bench.simu:simu_mlp_only.yaml"),
    "simu_forget_only": ("simu_bench.simu.method:Simu", "simu_bench.simu:simu_forget_only.yaml"),
}
ENTRY_POINT_GROUP = "simu_bench.methods"


@lru_cache(maxsize=1)
def _plugins() -> dict[str, str]:
    """Methods other installed packages register: name -> "module:Class"."""
    found = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in METHODS:  # a plugin never shadows a method of this project
            found[entry.name] = entry.value
    return found


def names() -> list[str]:
    """Registered method names (this project's and installed plugins'), sorted."""
    return sorted({*METHODS, *_plugins()})


def _check_known(name: str) -> None:
    if name not in METHODS and name not in _plugins():
        raise UserError(f"unknown method {name!r}{did_you_mean(name, names())}")


def get(name: str) -> type:
    """The `Unlearner` class registered as ``name``; `UserError` with suggestions otherwise."""
    _check_known(name)
    target = METHODS[name][0] if name in METHODS else _plugins()[name]
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def options_type(name: str) -> type:
    """The options dataclass of method ``name`` (what its YAML's ``options:`` block holds)."""
    return get(name).Options


def config_path(name: str) -> Path:
    """The shipped YAML config of method ``name``."""
    _check_known(name)
    if name in METHODS:
        package, _, filename = METHODS[name][1].partition(":")
    else:
        resource = getattr(get(name), "config_resource", None)
        if not resource:
            raise UserError(f"method {name!r} ships no config file; pass a YAML path instead")
        package, filename = resource
    return Path(str(importlib.resources.files(package) / filename))


def load_config(source, overrides=(), *, reference: bool = False) -> UnlearnConfig:
    """Load and validate a method config: a registered name (its shipped YAML), a path or a mapping.

    A bare name (no folder, no suffix) is a method name, even if a file of that name sits in
    the current directory. Every problem is reported at once (see `simu_bench.unlearning.config`).
    """
    name = None
    if not isinstance(source, dict):
        path = Path(source)
        if not path.suffix and len(path.parts) == 1:
            name, source = str(source), config_path(str(source))
        else:
            source = path
    config = _load_config(source, overrides, reference=reference, options_of=options_type)
    if name is not None and config.method != name:  # e.g. --set method=...: results would be filed under `name`
        raise UserError(
            f"{config.source}: method is {config.method!r}, but this is the config of {name!r}, whose results "
            f"would be filed as {name!r}; choose the method by name instead (--methods {config.method})"
        )
    problems = get(config.method).check_config(config)
    if problems:
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        raise UserError(f"{head} in config: " + "; ".join(f"{config.source}: {problem}" for problem in problems))
    return config


def create(name_or_config, overrides=(), *, reference: bool = False):
    """Build an unlearner from a method name, a YAML path or an `UnlearnConfig`."""
    config = name_or_config
    if not isinstance(config, UnlearnConfig):
        config = load_config(name_or_config, overrides, reference=reference)
    return get(config.method)(config)
