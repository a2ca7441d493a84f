"""The `Unlearner` interface every method implements.

A method is one small class that inherits from `Unlearner` (and from nothing else: methods never
subclass each other) plus one line in `simu_bench.unlearning.registry`. The one training loop
(`simu_bench.unlearning.loop.run`) drives it through these hooks, in this order:

1. ``prepare(model, tokenizer, data)``: once, before anything trains (e.g. compute a mask);
2. ``parameters_to_train(model)``: the (name, parameter) pairs the optimizer may change;
   every other parameter is frozen for the run;
3. ``build_optimizer(named_params)``: from ``config.optimizer`` (AdamW or SophiaG);
4. ``on_train_start(state)``: the optimizer exists (e.g. set SophiaG masks);
5. per micro-batch ``loss(model, batch)``: a scalar tensor to minimise, ``batch.forget`` and
   ``batch.retain`` being the paired, tokenised examples (`simu_bench.data.pairing.Encoded`);
6. ``before_step(state)``: gradients are accumulated, not yet clipped;
7. ``after_step(state)``: the optimizer and schedule have stepped, gradients are cleared;
8. ``on_train_end(state)``; ``summary()``: extra facts for the result file (e.g. mask sizes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Iterable

import torch

from simu_bench.unlearning.config import NoOptions, OptimizerConfig, UnlearnConfig

if TYPE_CHECKING:
    from simu_bench.data.lume import LumeData
    from simu_bench.data.pairing import PairedBatch
    from simu_bench.unlearning.loop import LoopState


class Unlearner:
    """Base class of unlearning methods; override `loss` and any hook you need.

    Class attributes:
        name: the registry key (also the file name and the leaderboard row).
        paper: title and arXiv id of the method's paper.
        Options: a dataclass of the method's own settings (the ``options`` block of its YAML).
        config_resource: (package, file) of the shipped YAML config.
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    config_resource: ClassVar[tuple[str, str] | None] = None

    def __init__(self, config: UnlearnConfig):
        self.config = config
        self.options = config.options

    # -- setup -------------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, tokenizer, data: "LumeData") -> None:
        """Called once before training, with the model in its original state."""

    def parameters_to_train(self, model: torch.nn.Module) -> Iterable[tuple[str, torch.nn.Parameter]]:
        """The parameters the optimizer may change; by default every trainable one."""
        return [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def build_optimizer(self, named_params: list[tuple[str, torch.nn.Parameter]]) -> torch.optim.Optimizer:
        """Build the optimizer of ``config.optimizer``; see `build_optimizer`."""
        return build_optimizer(self.config.optimizer, named_params)

    # -- training ----------------------------------------------------------------------------

    def loss(self, model: torch.nn.Module, batch: "PairedBatch") -> torch.Tensor:
        """The scalar to minimise on one micro-batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss(model, batch)")

    def on_train_start(self, state: "LoopState") -> None:
        """The optimizer and schedule exist; nothing has trained yet."""

    def before_step(self, state: "LoopState") -> None:
        """Gradients of the accumulated micro-batches are in ``.grad``, not yet clipped."""

    def after_step(self, state: "LoopState") -> None:
        """The optimizer and schedule have stepped and gradients are cleared."""

    def on_train_end(self, state: "LoopState") -> None:
        """Training finished (normally or by divergence)."""

    def summary(self) -> dict:
        """Facts about the run to store with the result (JSON-serialisable)."""
        return {}


def build_optimizer(config: OptimizerConfig, named_params) -> torch.optim.Optimizer:
    """AdamW or SophiaG over ``named_params``; 1-d weights (biases, norms) get no weight decay.

    The decay split follows SOUL's optimizer set-up (no decay on biases and layer norms).
    """
    from simu_bench.unlearning.sophia import SophiaG

    decay = [p for _, p in named_params if p.ndim >= 2]
    no_decay = [p for _, p in named_params if p.ndim < 2]
    groups = [g for g in (
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ) if g["params"]]
    if not groups:
        raise ValueError("no parameters to train: parameters_to_train returned nothing")
    if config.name == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
    return SophiaG(
        groups,
        lr=config.lr,
        betas=tuple(config.betas),
        rho=config.rho,
        bs=config.bs,
        variant=config.variant,
        hessian_interval=config.hessian_interval,
    )
