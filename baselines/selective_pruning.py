"""Selective Pruning: zero the MLP units that fire far more on the forget text than on the retain text.

Paper: Dissecting Language Models: Machine Unlearning via Selective Pruning (Pochinkov &
Schoots, 2024, arXiv 2403.01267).
Each MLP unit j of layer l (an input of the layer's down projection) gets

    score[l, j] = mean |a[l, j]| over forget tokens / (mean |a[l, j]| over retain tokens + 1e-5)

(means over every real token of the examples, prompt and answer, i.e. the text), and the
``fraction`` of all units with the highest scores (one global ranking over the layers, ties
at the cut kept) is pruned: the unit's weights in the down projection are set to 0 (a Linear's
column, a Conv1D's row), so it no longer contributes. No training: the model changes in
`prepare` and the loop runs no step. The paper prunes in a few rounds of 2% of the units,
rescoring between them; one round of ``fraction`` is used here (a stated simplification).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from simu_bench.data import pairing
from simu_bench.simu import attribution
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner

EPS = 1e-5  # the paper's epsilon in the ratio's denominator


@dataclass
class SelectivePruningOptions:
    """Selective Pruning's settings (the ``options`` block of selective_pruning.yaml)."""

    fraction: float = setting(0.05, gt=0.0, le=1.0, doc="share of all MLP units pruned (global top scores)")
    batch_size: int = setting(8, ge=1, doc="examples per scoring pass")


@torch.no_grad()
def mean_abs_activation(model, tokenizer, examples, projections, batch_size: int, max_length: int) -> torch.Tensor:
    """(layers, d_ff): the mean |activation| of every MLP unit over the real tokens of ``examples``."""
    device = projections[0].weight.device
    total = torch.zeros(len(projections), projections[0].units, device=device)
    tokens = [0]
    current = {}

    def record(projection):
        def hook(module, args):
            (x,) = args  # (batch, seq, d_ff)
            keep = current["mask"]  # (batch, seq)
            total[projection.layer] += x[keep].abs().float().sum(dim=0)
        return hook

    handles = [p.module.register_forward_pre_hook(record(p)) for p in projections]
    try:
        for start in range(0, len(examples), batch_size):
            batch = pairing.collate(tokenizer, examples[start : start + batch_size], max_length).to(device)
            current["mask"] = batch.attention_mask.bool()
            tokens[0] += int(current["mask"].sum())
            model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    finally:
        for handle in handles:
            handle.remove()
    return total / max(tokens[0], 1)


class SelectivePruning(Unlearner):
    """Selective Pruning: zero the top ``fraction`` of MLP units by forget/retain activation ratio."""

    paper = "Dissecting Language Models: Machine Unlearning via Selective Pruning (arXiv 2403.01267)"
    Options = SelectivePruningOptions
    trains = False

    @classmethod
    def check_config(cls, config, model=None) -> list[str]:
        """With the target's shape: its family is mapped and ``fraction`` prunes at least one unit."""
        if model is None:
            return []
        problems = attribution.unsupported(model.model_type)
        units = model.layers * model.units
        if config.options.fraction * units < 1:
            problems.append(f"options.fraction: got {config.options.fraction:g}, less than one of the model's {units} "
                            f"MLP units ({model.layers} layers x {model.units}), which would be rounded up to one; "
                            f"expected at least 1/{units} = {1 / units:.3g}")
        return problems

    def prepare(self, model, tokenizer, data) -> None:
        self._projections = attribution.down_projections(model)
        was_training = model.training
        model.eval()
        try:
            args = (self._projections, self.options.batch_size, self.config.train.max_length)
            forget = mean_abs_activation(model, tokenizer, list(data.forget), *args)
            retain = mean_abs_activation(model, tokenizer, list(data.retain), *args)
        finally:
            model.train(was_training)
        scores = forget / (retain + EPS)  # (layers, d_ff)
        count = math.ceil(self.options.fraction * scores.numel())
        cut = torch.topk(scores.flatten(), count).values.min()
        self.pruned = scores >= cut  # (layers, d_ff) bool
        self.scores = scores.cpu()
        with torch.no_grad():
            for projection in self._projections:
                units = self.pruned[projection.layer].to(projection.weight.device)
                shape = (1, -1) if projection.unit_dim == 1 else (-1, 1)
                projection.weight.mul_(~units.view(shape))

    def parameters_to_train(self, model):
        """The down projections it changed (in `prepare`; nothing trains)."""
        names = {id(p): n for n, p in model.named_parameters()}
        changed = [p.weight for p in self._projections if self.pruned[p.layer].any()]
        return [(names[id(w)], w) for w in changed]

    def loss(self, model, batch):
        raise NotImplementedError("selective_pruning does not train: the loop runs no step for it")

    def summary(self) -> dict:
        per_layer = [int(row.sum()) for row in self.pruned]
        return {"pruned": {"units": sum(per_layer), "of": self.pruned.numel(), "per_layer": per_layer}}
