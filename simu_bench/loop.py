"""The one unlearning loop: every method runs through `run`, customised only by hooks.

Epochs over the forget examples, each paired with a seeded random retain example
(`simu_bench.pairing`); micro-batches of ``train.batch_size`` accumulated
``train.grad_accum_steps`` times per optimizer step; gradient-norm clipping; a linear schedule
with warm-up. Hook objects (the unlearner first, then optimizer hooks such as Sophia-G's
curvature refresh, then the caller's callbacks) are called at the points named in `HOOKS`.

Divergence guard: a NaN/Inf loss or gradient norm stops the run before the optimizer steps on
it; the result says ``status="diverged"`` with a message and the model is left as it is (the
caller decides what to do with it). Nothing is raised for that case.

    from simu_bench import registry, loop
    result = loop.run(registry.create("fo_graddiff"), model, tokenizer, data, seed=0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from simu_bench import losses, pairing
from simu_bench.unlearner import Unlearner

HOOKS = ("on_train_start", "before_step", "after_step", "on_train_end")


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
    batch: pairing.PairedBatch | None = None  # the last micro-batch
    loss: float | None = None  # the loss of the current / last optimizer step


@dataclass
class UnlearnResult:
    """The outcome of one run; ``losses[i]`` is the mean loss of optimizer step i."""

    method: str
    status: str  # "ok" | "diverged"
    message: str
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class CurvatureRefresh:
    """Sophia-G's Gauss-Newton-Bartlett curvature, refreshed every ``optimizer.hessian_interval`` steps.

    After an optimizer step it samples labels from the model's own logits on the answer
    positions of the last micro-batch (forget and retain), back-propagates their
    cross-entropy and folds the squared gradient into the optimizer's curvature.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.every = optimizer.hessian_interval

    def after_step(self, state: LoopState) -> None:
        if state.step % self.every != 0:  # after steps k, 2k, ... as in Sophia's reference loop
            return
        parts = state.batch.parts()
        for part in parts:
            (losses.sampled_label_loss(state.model, part, state.generator) / len(parts)).backward()
        self.optimizer.update_hessian()
        self.optimizer.zero_grad(set_to_none=True)


def _call(hooks: list, name: str, state: LoopState) -> None:
    for hook in hooks:
        method = getattr(hook, name, None)
        if method is not None:
            method(state)


def count_steps(n_forget: int, train) -> int:
    """Optimizer steps of a run: epochs x ceil(micro-batches / accumulation), capped by max_steps."""
    micro = math.ceil(n_forget / train.batch_size)
    total = train.epochs * math.ceil(micro / train.grad_accum_steps)
    return min(total, train.max_steps) if train.max_steps else total


def run(
    unlearner: Unlearner,
    model: torch.nn.Module,
    tokenizer,
    data,
    *,
    seed: int = 0,
    progress: bool = True,
    callbacks: tuple = (),
) -> UnlearnResult:
    """Unlearn ``data.forget`` from ``model`` in place, keeping ``data.retain``; see the module doc."""
    cfg = unlearner.config
    train = cfg.train
    started = time.perf_counter()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        unlearner.prepare(model, tokenizer, data)
        named = [(n, p) for n, p in unlearner.parameters_to_train(model)]
        trained = {id(p) for _, p in named}
        flags = {name: p.requires_grad for name, p in model.named_parameters()}
        for _, p in model.named_parameters():
            p.requires_grad_(id(p) in trained)
        params = [p for _, p in named]
        optimizer = unlearner.build_optimizer(named)
        total = count_steps(len(data.forget), train)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(train.warmup_ratio * total), total)
        state = LoopState(model, tokenizer, optimizer, scheduler, generator, total)
        hooks = [unlearner]
        if getattr(optimizer, "hessian_interval", None):
            hooks.append(CurvatureRefresh(optimizer))
        hooks.extend(callbacks)
        was_training = model.training
        model.train()
        status, message, step_losses = "ok", "", []
        try:
            status, message = _train(unlearner, state, data, hooks, params, step_losses, device, progress)
        finally:
            model.train(was_training)
            for name, p in model.named_parameters():
                p.requires_grad_(flags[name])
            optimizer.zero_grad(set_to_none=True)
    return UnlearnResult(
        method=unlearner.name,
        status=status,
        message=message,
        losses=step_losses,
        steps=state.step,
        seconds=time.perf_counter() - started,
        summary=unlearner.summary(),
    )


def _train(unlearner, state: LoopState, data, hooks, params, step_losses, device, progress) -> tuple[str, str]:
    train = unlearner.config.train
    name = unlearner.name
    _call(hooks, "on_train_start", state)
    bar = tqdm(total=state.total_steps, desc=name, disable=not progress, leave=False)
    try:
        for epoch in range(train.epochs):
            state.epoch = epoch
            stream = pairing.batches(
                state.tokenizer, data.forget, data.retain,
                batch_size=train.batch_size, max_length=train.max_length, generator=state.generator,
            )
            group: list = []
            for batch in stream:
                group.append(batch)
                if len(group) < train.grad_accum_steps:
                    continue
                outcome = _step(unlearner, state, group, hooks, params, step_losses, device, bar)
                group = []
                if outcome:
                    return "diverged", f"{name}: {outcome}"
                if state.step >= state.total_steps:
                    return "ok", ""
            if group:  # the epoch's last, shorter accumulation group
                outcome = _step(unlearner, state, group, hooks, params, step_losses, device, bar)
                if outcome:
                    return "diverged", f"{name}: {outcome}"
                if state.step >= state.total_steps:
                    return "ok", ""
        return "ok", ""
    finally:
        bar.close()
        _call(hooks, "on_train_end", state)


def _step(unlearner, state: LoopState, group, hooks, params, step_losses, device, bar) -> str:
    """One optimizer step over the micro-batches in ``group``; return a divergence message or ''."""
    total = 0.0
    where = f"step {state.step + 1} (epoch {state.epoch + 1})"
    advice = "the model is left as after the previous step; lower optimizer.lr or gamma"
    for batch in group:
        batch = pairing.PairedBatch(batch.forget.to(device), batch.retain.to(device),
                                    batch.forget_examples, batch.retain_examples)
        state.batch = batch
        loss = unlearner.loss(state.model, batch) / len(group)
        value = loss.item()
        if not math.isfinite(value):
            state.optimizer.zero_grad(set_to_none=True)
            return f"non-finite loss ({value}) at {where}; {advice}"
        loss.backward()
        total += value
    state.loss = total
    _call(hooks, "before_step", state)
    norm = torch.nn.utils.clip_grad_norm_(params, unlearner.config.train.max_grad_norm)
    if not math.isfinite(norm.item()):
        state.optimizer.zero_grad(set_to_none=True)
        return f"non-finite gradient norm ({norm.item()}) at {where}; {advice}"
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    step_losses.append(total)
    bar.update(1)
    bar.set_postfix(loss=f"{total:.4f}")
    _call(hooks, "after_step", state)
    return ""
