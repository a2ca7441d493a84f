"""The unlearning methods by name: registry key -> (class, shipped YAML config).

A method in this project is one line in `METHODS`: ``"name": ("module:Class", "package:file.yaml")``.
One class may serve several names (FO- and SO-GradDiff are one GradDiff class with two YAMLs).
A method in another package registers itself through the entry-point group
``simu_bench.methods`` (in its pyproject.toml: ``[project.entry-points."simu_bench.methods"]
my_method = "my_package.my_method:MyMethod"``); its class names its YAML in
``config_resource = ("my_package", "my_method.yaml")``. Modules are imported only when a method
is asked for, so a broken method cannot break the others: a plugin that cannot be imported, names
no class or a class that is not an `Unlearner` is refused with one line naming its entry point and
package, and `loadable` (``--methods all``, ``ls``) leaves it out with that line as a warning.
Method names become folder names in the run store, so only names of ``[a-z0-9_]`` are registered.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import inspect
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from simu_bench.errors import UserError, did_you_mean
from simu_bench.unlearning.config import UnlearnConfig
from simu_bench.unlearning.config_loading import load_config as _load_config

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
NAME = re.compile(r"[a-z0-9_]+")  # a method name is a folder name of the run store: nothing else gets in


@dataclass(frozen=True)
class Plugin:
    """One entry point of the group: ``name = value`` ("module:Class") declared by ``package``."""

    name: str
    value: str
    package: str

    def error(self, problem: str) -> UserError:
        return UserError(
            f"method plugin {self.name!r} (entry point `{self.name} = {self.value}` of package {self.package}, "
            f"group {ENTRY_POINT_GROUP}): {problem}; fix the package or uninstall it (pip uninstall {self.package})"
        )


@lru_cache(maxsize=1)
def _plugins() -> dict[str, Plugin]:
    """Entry points other installed packages declare, by name (without importing anything)."""
    found = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in METHODS:  # a plugin never shadows a method of this project
            package = getattr(getattr(entry, "dist", None), "name", None) or "of unknown name"
            found[entry.name] = Plugin(entry.name, entry.value, package)
    return found


def names() -> list[str]:
    """Registered method names (this project's and installed plugins' with a valid name), sorted."""
    return sorted({*METHODS, *(name for name in _plugins() if NAME.fullmatch(name))})


def _check_known(name: str) -> None:
    plugin = _plugins().get(name)
    if plugin is not None and not NAME.fullmatch(name):
        raise plugin.error("its name is not made of a-z, 0-9 and _ only, and method names become folder names of "
                           "the run store; rename the entry point")
    if name not in METHODS and plugin is None:
        raise UserError(f"unknown method {name!r}{did_you_mean(name, names())}")


def _load_plugin(plugin: Plugin) -> type:
    """The class a plugin's entry point names, checked to be an `Unlearner`; its one-line error otherwise."""
    # Here, not at the top: the registry is read by `--help` (method names), and `unlearner` loads torch.
    from simu_bench.unlearning.unlearner import Unlearner

    module_name, _, class_name = plugin.value.partition(":")
    try:
        module = importlib.import_module(module_name.strip())
    except (Exception, SystemExit) as error:  # whatever its import raises is the plugin's fault, not the run's
        text = (str(error).strip().splitlines() or [""])[0]
        raise plugin.error(f"importing {module_name.strip()} failed ({type(error).__name__}: {text})") from None
    cls = getattr(module, class_name.strip(), None) if class_name.strip() else None
    if cls is None:
        raise plugin.error(f"module {module_name.strip()} has no class {class_name.strip()!r}"
                           if class_name.strip() else "it names a module, expected module:Class")
    if not (isinstance(cls, type) and issubclass(cls, Unlearner)):
        raise plugin.error(f"{plugin.value} is not an Unlearner (a subclass of "
                           "simu_bench.unlearning.unlearner.Unlearner)")
    resource = getattr(cls, "config_resource", None)
    if resource is not None and not (isinstance(resource, tuple) and len(resource) == 2
                                     and all(isinstance(part, str) for part in resource)):
        raise plugin.error("its config_resource is not a (package, file name) pair of strings")
    return cls


def get(name: str) -> type:
    """The `Unlearner` class registered as ``name``; `UserError` with suggestions otherwise."""
    _check_known(name)
    if name in METHODS:
        module_name, _, class_name = METHODS[name][0].partition(":")
        return getattr(importlib.import_module(module_name), class_name)
    return _load_plugin(_plugins()[name])


def loadable(warn=None) -> list[str]:
    """Every registered method that loads (`--methods all`); each plugin that does not is left out
    with its one line passed to ``warn`` (default: printed on stderr as a warning)."""
    warn = warn or (lambda line: print(f"warning: {line}; left out", file=sys.stderr))
    usable = []
    for name in sorted({*METHODS, *_plugins()}):
        try:
            get(name)
        except UserError as error:
            warn(str(error))
            continue
        usable.append(name)
    return usable


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
            raise UserError(f"method {name!r} ships no config file (its class sets no config_resource); "
                            "pass a YAML path instead")
        package, filename = resource
        try:
            return Path(str(importlib.resources.files(package) / filename))
        except (ImportError, TypeError) as error:
            raise _plugins()[name].error(f"its config_resource names package {package!r}, which cannot be "
                                         f"imported ({type(error).__name__})") from None
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


def check_fit(configs, model: str) -> None:
    """Refuse, before the target is evaluated, every config whose options do not fit the model
    ``model`` (read from its config.json: layer count, widths), one line for all problems."""
    from simu_bench.unlearning.unlearner import ModelShape  # torch: not at the top (see `_load_plugin`)

    shape = ModelShape.of(model)
    if shape is None:
        return
    problems = []
    for config in configs:
        check = get(config.method).check_config
        if "model" in inspect.signature(check).parameters:  # a plugin's older check_config takes the config only
            problems += [f"{config.method}: {problem}" for problem in check(config, model=shape)]
    if problems:
        head = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
        where = f"{shape.model_type} model {model} ({shape.layers} layers, MLP width {shape.units})"
        raise UserError(f"{head} with the {where}: " + "; ".join(problems))


def create(name_or_config, overrides=(), *, reference: bool = False):
    """Build an unlearner from a method name, a YAML path or an `UnlearnConfig`."""
    config = name_or_config
    if not isinstance(config, UnlearnConfig):
        config = load_config(name_or_config, overrides, reference=reference)
    return get(config.method)(config)
