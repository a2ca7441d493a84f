"""The one unlearning loop: every method runs through `run`, customised only by hooks.

Epochs over the forget examples, each paired with a seeded random retain example
(`simu_bench.data.pairing`); micro-batches of ``train.batch_size`` accumulated
``train.grad_accum_steps`` times per optimizer step; gradient-norm clipping; a linear schedule
with warm-up. Hook objects (the unlearner first, then optimizer hooks such as Sophia-G's
curvature refresh, then the caller's callbacks) are called at the points named in `HOOKS`.

A method that needs a retain set refuses a run without one, and a method with a frozen reference
model refuses a model whose copy would not fit in the device's free memory (`check_copy_fits`),
both with a `UserError` before anything changes. A method with ``trains = False`` changes the
model in ``prepare`` and runs no step.

Divergence guard: a NaN/Inf loss or gradient norm stops the run before the optimizer steps on
it; the result says ``status="diverged"`` with a message and the model is left as it is (the
caller decides what to do with it). Nothing is raised for that case.

    from simu_bench.unlearning import loop, registry
    result = loop.run(registry.create("fo_graddiff"), model, tokenizer, data, seed=0)
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from simu_bench.data import pairing
from simu_bench.errors import UserError
from simu_bench.unlearning import distributed, registry
from simu_bench.unlearning.optimizers import optimizer_hooks
from simu_bench.unlearning.unlearner import LoopState, Unlearner

HOOKS = ("on_train_start", "before_step", "after_step", "on_train_end")


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


def _call(hooks: list, name: str, state: LoopState) -> None:
    for hook in hooks:
        method = getattr(hook, name, None)
        if method is not None:
            method(state)


# Why float16 training fails here, whatever the learning rate: there is no loss scaling, and
# AdamW's eps (1e-8) rounds to 0 in float16, so a parameter whose gradient is zero (an unused
# token's embedding) gets 0 / 0 = NaN at the first step and the loss is NaN at the second.
FLOAT16 = ("float16 has no loss scaling here and AdamW's eps (1e-8) rounds to 0 in it, so a weight whose gradient is "
           "zero becomes 0/0 = NaN at the first step, whatever the learning rate")


def check_precision(config, device: str) -> None:
    """Refuse training in float16 on a CPU before anything runs (see FLOAT16)."""
    if config.train.dtype == "float16" and torch.device(device).type == "cpu":
        raise UserError(f"{config.method}: train.dtype float16 on {device}: {FLOAT16}; train in bfloat16 (--dtype "
                        "bfloat16: float32's range, half the memory) or float32")


def check_retain(configs, retain_rows: int, where: str) -> None:
    """Refuse, before anything runs, every method of ``configs`` whose loss has a retain term when
    the data (at ``where``) has no retain rows; methods without one (grad_ascent) run on it."""
    if retain_rows:
        return
    needing = [config.method for config in configs if registry.get(config.method).uses_retain]
    if needing:
        free = [name for name in registry.names() if not registry.get(name).uses_retain]
        also = f" (so do {', '.join(needing[1:])})" if needing[1:] else ""
        raise UserError(f"{needing[0]} needs a retain set (its loss has a retain term){also}, and {where} has no "
                        f"retain rows (retain.jsonl empty or absent); add retain rows, or run only methods without a "
                        f"retain term ({', '.join(free) or 'none is registered'})")


def cast(model: torch.nn.Module, dtype: str) -> None:
    """Cast ``model``'s floating-point weights to ``dtype`` ("float32", "bfloat16", "float16"); "auto" keeps them."""
    if dtype != "auto":
        model.to(getattr(torch, dtype))


def count_steps(n_forget: int, train) -> int:
    """Optimizer steps of a run: epochs x ceil(micro-batches / accumulation), capped by max_steps."""
    micro = math.ceil(n_forget / train.batch_size)
    total = train.epochs * math.ceil(micro / train.grad_accum_steps)
    return min(total, train.max_steps) if train.max_steps else total


def available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device``: CUDA's free memory, or the OS's MemAvailable; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_copy_fits(model: torch.nn.Module, name: str) -> None:
    """Raise `UserError` when a frozen copy of ``model`` would not fit in its device's free memory."""
    device = next(model.parameters()).device
    needed = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    free = available_memory(device)
    if free is not None and needed > free:
        gib = 2**30
        raise UserError(
            f"{name} keeps a frozen copy of the model as its reference: it needs {needed / gib:.2f} GiB more "
            f"on {device}, and {free / gib:.2f} GiB is free; free memory, use a smaller model or a larger "
            f"device, or choose a method without a reference model"
        )


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
    """Unlearn ``data.forget`` from ``model`` in place, keeping ``data.retain``; see the module doc.

    The model is first cast to ``train.dtype`` (unless "auto") and stays in it afterwards.
    """
    started = time.perf_counter()
    cast(model, unlearner.config.train.dtype)
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        session = Session(unlearner, model, tokenizer, data, seed=seed, callbacks=callbacks)
        try:
            status, message = session.train(progress)
        finally:
            session.close()
    return UnlearnResult(
        method=unlearner.name,
        status=status,
        message=message,
        losses=session.losses,
        steps=session.state.step,
        seconds=time.perf_counter() - started,
        summary=unlearner.summary(),
    )


class Session:
    """The set-up and the steps of one run; `run` is the way to use it.

    Creating a session calls ``prepare``, freezes what the unlearner does not train, builds the
    optimizer and schedule and calls ``on_train_start``; `close` restores ``requires_grad`` and
    the train/eval mode and calls ``on_train_end``.
    """

    def __init__(self, unlearner: Unlearner, model, tokenizer, data, *, seed: int = 0, callbacks=()):
        self.unlearner, self.data = unlearner, data
        self.train_cfg = unlearner.config.train
        self.device = next(model.parameters()).device
        self.losses: list[float] = []
        if unlearner.uses_retain and not data.retain:
            raise UserError(
                f"{unlearner.name} needs a retain set (its loss has a retain term) and the data has "
                f"{len(data.retain)} retain examples; add retain rows to the data, or choose a method "
                f"without a retain term (grad_ascent)"
            )
        if unlearner.uses_reference:
            # The model as it was before unlearning, frozen: created only for methods that ask.
            check_copy_fits(model, unlearner.name)
            unlearner.reference = copy.deepcopy(model).eval().requires_grad_(False)
        self.rank, self.world = distributed.world()  # (0, 1) in one process
        if self.world > 1:
            distributed.check_supported(unlearner)
        unlearner.prepare(model, tokenizer, data)
        if self.world > 1:  # after prepare: SIMU's attribution runs on the whole model
            distributed.shard_model(model)
        named = list(unlearner.parameters_to_train(model))
        trained = {id(p) for _, p in named}
        self._flags = {name: p.requires_grad for name, p in model.named_parameters()}
        for _, p in model.named_parameters():
            p.requires_grad_(id(p) in trained)
        self.params = [p for _, p in named]
        optimizer = unlearner.build_optimizer(named)
        total = count_steps(len(data.forget), self.train_cfg)
        scheduler = get_linear_schedule_with_warmup(optimizer, round(self.train_cfg.warmup_ratio * total), total)
        generator = torch.Generator().manual_seed(seed)
        self.state = LoopState(model, tokenizer, optimizer, scheduler, generator, total)
        self.hooks = [unlearner, *optimizer_hooks(optimizer), *callbacks]
        self._was_training = model.training
        model.train()
        _call(self.hooks, "on_train_start", self.state)

    def train(self, progress: bool = True) -> tuple[str, str]:
        """All epochs; return (status, message)."""
        train, state = self.train_cfg, self.state
        name = self.unlearner.name
        if not self.unlearner.trains or state.stop or train.stop_at_step == 0:  # nothing (more) to train
            return "ok", ""
        with tqdm(total=state.total_steps, desc=name, disable=not progress, leave=False) as bar:
            for epoch in range(train.epochs):
                state.epoch = epoch
                group: list = []
                stream = pairing.batches(
                    state.tokenizer, self.data.forget, self.data.retain,
                    batch_size=train.batch_size, max_length=train.max_length, generator=state.generator,
                    need_retain=self.unlearner.uses_retain,
                )
                for index, batch in enumerate(stream):
                    if self.world > 1:  # this process's slice of the micro-batch
                        batch = distributed.shard_batch(batch, state.tokenizer, train.max_length)
                    group.append(batch)
                    last = (index + 1) * train.batch_size >= len(self.data.forget)
                    if len(group) < train.grad_accum_steps and not last:
                        continue
                    problem = self.step(group)
                    group = []
                    if problem:
                        return "diverged", f"{name}: {problem}"
                    bar.update(1)
                    bar.set_postfix(loss=f"{state.loss:.4f}")
                    if state.step >= state.total_steps or state.stop or state.step == train.stop_at_step:
                        return "ok", ""
        return "ok", ""

    def step(self, group: list) -> str:
        """One optimizer step over the micro-batches in ``group``; a divergence message or ''."""
        state, unlearner = self.state, self.unlearner
        total = 0.0
        where = f"step {state.step + 1} (epoch {state.epoch + 1})"
        advice = "the model is left as after the previous step; lower optimizer.lr or gamma"
        if any(p.dtype == torch.float16 for p in self.params):  # the learning rate is not to blame (FLOAT16)
            advice = f"the model is left as after the previous step; {FLOAT16}: train in bfloat16 or float32"
        for batch in group:
            if self.device.type != "cpu":
                retain = None if batch.retain is None else batch.retain.to(self.device)
                batch = pairing.PairedBatch(batch.forget.to(self.device), retain,
                                            batch.forget_examples, batch.retain_examples)
            state.batch = batch
            loss = unlearner.loss(state.model, batch) / len(group)
            value = loss.item() if self.world == 1 else distributed.total(loss.item(), self.device)
            if not math.isfinite(value):
                state.optimizer.zero_grad(set_to_none=True)
                return f"non-finite loss ({value}) at {where}; {advice}"
            loss.backward()
            total += value
        state.loss = total
        state.group = group
        _call(self.hooks, "before_step", state)
        norm = distributed.full_norm(torch.nn.utils.clip_grad_norm_(self.params, self.train_cfg.max_grad_norm))
        if not math.isfinite(norm):
            state.optimizer.zero_grad(set_to_none=True)
            return f"non-finite gradient norm ({norm}) at {where}; {advice}"
        state.optimizer.step()
        state.scheduler.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        self.losses.append(total)
        _call(self.hooks, "after_step", state)
        return ""

    def close(self) -> None:
        """Call ``on_train_end`` and give the model back as it was set up (weights aside)."""
        state = self.state
        try:
            _call(self.hooks, "on_train_end", state)
        finally:
            self.unlearner.reference = None  # free the frozen copy with the run
            state.optimizer.zero_grad(set_to_none=True)
            state.model.train(self._was_training)
            for name, p in state.model.named_parameters():
                p.requires_grad_(self._flags[name])
