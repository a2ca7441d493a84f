"""Typed unlearning configs: the schema (`UnlearnConfig` and its sections); YAML in, validated
dataclasses out, with dotted overrides (`config_loading`, `config_checks`, `config_search`).

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
import reprlib
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "sophiag")  # built by `simu_bench.unlearning.optimizers.build_optimizer`
TOP_LEVEL = ("method", "optimizer", "train", "options", "reference", "search", "tuned")
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


def show(value) -> str:
    """`repr(value)`, shortened to a few dozen characters however large or deep the value is."""
    return _REPR.repr(value)


def setting(default, *, ge=None, gt=None, lt=None, le=None, choices=None, doc=""):
    """A dataclass field with its valid range, checked by `config_checks`."""
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
    stop_at_step: int | None = setting(
        None, ge=0, doc="stop after this many optimizer steps, the schedule still spanning the whole run: the model "
        "is the full run's checkpoint at that step (a frontier candidate's step)")
    stop_at_forget: float | None = setting(
        None, gt=0.0, lt=1.0, doc="stop at the first evaluation point (run --eval-every/--eval-at) whose forget "
        "score (mean of the 6 raw forget components) is <= this level")
    dtype: str = setting(
        "float32", choices=DTYPES,
        doc="the model's dtype while unlearning (and evaluating, unless told otherwise); auto: the checkpoint's",
    )


STOP_KEYS = ("stop_at_step", "stop_at_forget")


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
        for key in STOP_KEYS:  # only when set: configs made before them keep their run identity
            if data["train"][key] is None:
                data["train"].pop(key)
        data["optimizer"]["betas"] = list(self.optimizer.betas)
        return data
