"""The `Unlearner` interface every method implements, and `LoopState`, what its hooks see.

A method is one small class that inherits from `Unlearner` (and from nothing else: methods never
subclass each other), one YAML config, and one registry entry (`simu_bench.unlearning.registry`,
or an entry point of the group ``simu_bench.methods`` for a method in another package). The one
training loop (`simu_bench.unlearning.loop.run`) drives it through these hooks, in this order:

1. ``prepare(model, tokenizer, data)``: once, before anything trains (e.g. compute a mask);
   ``self.reference`` is the frozen model before unlearning when ``uses_reference`` is True;
2. ``parameters_to_train(model)``: the (name, parameter) pairs the optimizer may change;
   every other parameter is frozen for the run;
3. ``build_optimizer(named_params)``: from ``config.optimizer`` (AdamW or SophiaG);
4. ``on_train_start(state)``: the optimizer exists (e.g. set SophiaG masks);
5. per micro-batch ``loss(model, batch)``: a scalar tensor to minimise, ``batch.forget`` and
   ``batch.retain`` being the paired, tokenised examples (`simu_bench.data.pairing.Encoded`);
6. ``before_step(state)``: gradients are accumulated, not yet clipped;
7. ``after_step(state)``: the optimizer and schedule have stepped, gradients are cleared;
8. ``on_train_end(state)``; ``summary()``: extra facts for the result file (e.g. mask sizes);
   ``save_artifacts(run_dir)``: files for the run store (e.g. a mask), after training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from transformers import AutoConfig

from simu_bench.data.pairing import PairedBatch
from simu_bench.unlearning.config import NoOptions, UnlearnConfig
from simu_bench.unlearning.optimizers import build_optimizer


@dataclass(frozen=True)
class ModelShape:
    """A model's shape as its config.json states it (no weights loaded), for `Unlearner.check_config`.

    ``units`` is the MLP width (d_ff): the units of SIMU's and selective pruning's masks.
    """

    name: str  # the model folder or hub id, for messages
    model_type: str
    layers: int
    hidden: int
    units: int

    @classmethod
    def of(cls, model: str) -> "ModelShape | None":
        """The shape of the model folder or hub id ``model``; None when its config cannot be read
        without loading weights or a network (each method's ``prepare`` then checks the loaded model)."""
        try:
            config = AutoConfig.from_pretrained(str(model))
        except Exception:  # a hub id not in the local cache, offline: nothing to check against yet
            return None
        config = getattr(config, "get_text_config", lambda: config)()
        hidden = getattr(config, "hidden_size", None)
        units = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or (
            4 * hidden if config.model_type == "gpt2" and hidden else None)
        layers = getattr(config, "num_hidden_layers", None)
        if not all(isinstance(v, int) for v in (hidden, units, layers)):
            return None
        return cls(str(model), config.model_type, layers, hidden, units)


@dataclass
class LoopState:
    """What hooks see: the live objects of the run and where it is."""

    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator  # the run's only source of randomness besides torch's seed
    total_steps: int
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch: PairedBatch | None = None  # the last micro-batch
    group: list = field(default_factory=list)  # the micro-batches of the current / last optimizer step
    loss: float | None = None  # the loss of the current / last optimizer step
    stop: bool = False  # a hook sets it to end the run after the current step (e.g. `--stop-at-forget`)


class Unlearner:
    """Base class of unlearning methods; override `loss` and any hook you need.

    Class attributes:
        paper: title and arXiv id of the method's paper.
        Options: a dataclass of the method's own settings (the ``options`` block of its YAML).
        uses_reference: True makes the loop keep a frozen copy of the model before unlearning
            in ``self.reference`` (NPO-style losses); it costs one more model in memory.
        supports_distributed: True when the method can run across processes (`torchrun`, FSDP2;
            `simu_bench.unlearning.distributed`): its loss is a sum of `losses.answer_nll` terms,
            which divide by the whole micro-batch's answer-token count on each process's slice.
        uses_retain: False lets the method run on an empty retain set (its batches then have
            ``retain=None``); True (the default) makes the loop refuse a run without one.
        trains: False for a method that changes the model in ``prepare`` only (pruning): the
            loop then runs no optimizer step; ``parameters_to_train`` names what it changed.
        retain_weight: the option (a field of ``Options``) that multiplies the loss's retain
            term, e.g. ``"gamma"`` or ``"alpha"``; None when the loss has none. At 0 the loss is
            its forget term alone (the contract tests train that to check the forget term's sign).

    ``name`` is the registry key the method runs under (``config.method``): one class may be
    registered under several names with different YAMLs (FO- and SO-GradDiff).
    """

    paper: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    uses_reference: ClassVar[bool] = False
    supports_distributed: ClassVar[bool] = False
    uses_retain: ClassVar[bool] = True
    trains: ClassVar[bool] = True
    retain_weight: ClassVar[str | None] = None

    def __init__(self, config: UnlearnConfig):
        self.config = config
        self.options = config.options
        self.reference: torch.nn.Module | None = None  # set by the loop when uses_reference
        # a folder for results that do not depend on the seed (SIMU's attribution), shared by the
        # runs of one run store; set by the pipeline, None computes everything afresh
        self.cache_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.config.method

    @classmethod
    def check_config(cls, config: UnlearnConfig, model: ModelShape | None = None) -> list[str]:
        """Problems of ``config`` that only this method knows (an optimizer it cannot use, a
        file an option names), one line each; [] when none. `registry.load_config` reports them
        with the config's other problems, so `validate` and `run` refuse them before any model loads.
        With ``model`` (the target's shape from its config.json), also what does not fit it (a
        layer beyond its depth, a mask of another width): `registry.check_fit` asks before the
        target is evaluated and before anything is written."""
        return []

    # -- setup -------------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, tokenizer, data) -> None:
        """Called once before training, with the model in its original state."""

    def parameters_to_train(self, model: torch.nn.Module) -> Iterable[tuple[str, torch.nn.Parameter]]:
        """The parameters the optimizer may change; by default every trainable one."""
        return [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def build_optimizer(self, named_params: list[tuple[str, torch.nn.Parameter]]) -> torch.optim.Optimizer:
        """Build the optimizer of ``config.optimizer``; see `optimizers.build_optimizer`."""
        return build_optimizer(self.config.optimizer, named_params)

    # -- training ----------------------------------------------------------------------------

    def loss(self, model: torch.nn.Module, batch: PairedBatch) -> torch.Tensor:
        """The scalar to minimise on one micro-batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, batch)")

    def on_train_start(self, state: LoopState) -> None:
        """The optimizer and schedule exist; nothing has trained yet."""

    def before_step(self, state: LoopState) -> None:
        """Gradients of the accumulated micro-batches are in ``.grad``, not yet clipped."""

    def after_step(self, state: LoopState) -> None:
        """The optimizer and schedule have stepped and gradients are cleared."""

    def on_train_end(self, state: LoopState) -> None:
        """Training finished (normally or by divergence)."""

    # -- results -----------------------------------------------------------------------------

    def summary(self) -> dict:
        """Facts about the run to store with the result (JSON-serialisable)."""
        return {}

    def save_artifacts(self, run_dir: Path) -> list[Path]:
        """Write method-specific files into the run's folder; return what was written."""
        return []
