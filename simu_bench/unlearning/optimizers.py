"""The optimizers a method config can name, built from its ``optimizer`` block.

The optimizer is configuration, not a method: FO-GradDiff and SO-GradDiff are one loss with
two optimizer blocks. This module owns the table of names, the factory, and the hooks an
optimizer needs from the loop (Sophia-G's curvature refresh).
"""

from __future__ import annotations

import torch

from simu_bench.data.pairing import IGNORE
from simu_bench.unlearning import losses
from simu_bench.unlearning.config import OPTIMIZERS
from simu_bench.unlearning.sophia import SophiaG


def build_optimizer(config, named_params) -> torch.optim.Optimizer:
    """AdamW or SophiaG (``config``: an `OptimizerConfig`) over ``named_params``.

    1-d weights (biases, norms) get no weight decay, as in SOUL's optimizer set-up.
    Raises ValueError when ``named_params`` is empty.
    """
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
    if config.name == "sophiag":
        return SophiaG(
            groups,
            lr=config.lr,
            betas=tuple(config.betas),
            rho=config.rho,
            curvature_scale=config.curvature_scale,
            variant=config.variant,
            hessian_interval=config.hessian_interval,
            state_dtype=torch.float32 if config.state_dtype == "float32" else None,
        )
    raise ValueError(f"unknown optimizer {config.name!r}; expected one of {', '.join(OPTIMIZERS)}")


class CurvatureRefresh:
    """Sophia-G's Gauss-Newton-Bartlett curvature, refreshed every ``optimizer.hessian_interval`` steps.

    After an optimizer step it samples labels from the model's own logits on the answer
    positions of every micro-batch of that step (forget and retain parts), back-propagates the
    mean cross-entropy over all their answer tokens and folds the squared gradient into the
    optimizer's curvature. The gradient of a mean over B tokens is 1/B of their sum, so the
    curvature estimate is scaled by B: as in Sophia's reference code, whose ``bs`` is the
    number of tokens behind one gradient (batch x block size), ``curvature_scale`` is set to B,
    the answer-token count of the refresh's batch (the config's value holds until the first
    refresh, while the curvature is still zero).
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.every = optimizer.hessian_interval

    def after_step(self, state) -> None:
        if state.step % self.every != 0:  # after steps k, 2k, ... as in Sophia's reference loop
            return
        device = next(state.model.parameters()).device
        parts = [part.to(device) for batch in (state.group or [state.batch]) for part in batch.parts()]
        tokens = [int((part.labels[:, 1:] != IGNORE).sum()) for part in parts]  # answer tokens per part
        total = sum(tokens)
        if not total:
            return
        for part, count in zip(parts, tokens):
            if count:  # this part's share of the mean over all `total` answer tokens
                (losses.sampled_label_loss(state.model, part, state.generator) * (count / total)).backward()
        self.optimizer.update_hessian()
        for group in self.optimizer.param_groups:
            group["curvature_scale"] = float(total)
        self.optimizer.zero_grad(set_to_none=True)


def optimizer_hooks(optimizer) -> list:
    """The loop hooks ``optimizer`` needs: the curvature refresh for Sophia-G's ``gnb`` variant."""
    return [CurvatureRefresh(optimizer)] if getattr(optimizer, "hessian_interval", None) else []
