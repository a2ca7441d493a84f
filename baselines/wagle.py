"""WAGLE: SO-GradDiff restricted to the weights that weight attribution ties to the forget set.

Paper: WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in Large
Language Models (Jia, Liu, Zhang, Ram, Baracaldo, Liu; NeurIPS 2024, arXiv 2410.17509;
code OPTML-Group/WAGLE).
1. `prepare`: g_f and g_r, the gradients of the forget and the retain answer NLL (the mean
   over batches of `attribution_batch_size` examples), at the model before unlearning; each
   weight's score is |(theta - g_r / mu) * g_f| (theta - g_r / mu: the weight after one
   retain-descent step of size 1/mu, WAGLE's bi-level approximation; ``mu: null`` takes
   mu = 1 / optimizer.lr). Candidates: every weight matrix of the decoder layers (attention
   and MLP projections); embeddings, the output layer and norms stay frozen. The global top
   ``fraction`` of the candidates' scores is the mask (ties at the cut all kept).
2. Training: SIMU's recipe with only the mask changed, so the comparison isolates the mask:
   loss -CE(forget) + gamma * CE(retain) with SophiaG (SOUL's step); the mask is applied to
   the gradients before clipping (WAGLE masks them after clipping; the clipped norm is then
   the norm of what trains, as in SIMU) and to SophiaG's momentum, curvature and weights, so
   masked-out weights keep their values exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from simu_bench.data import pairing
from simu_bench.errors import UserError
from simu_bench.simu import attribution
from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner


@dataclass
class WagleOptions:
    """WAGLE's settings (the ``options`` block of wagle.yaml)."""

    gamma: float = setting(1.0, ge=0.0, doc="GradDiff: weight of the retain loss")
    fraction: float = setting(0.2, gt=0.0, le=1.0, doc="share of the candidate weights kept (global top-p)")
    mu: float | None = setting(None, gt=0.0, doc="retain-Hessian scale; null: 1 / optimizer.lr")
    attribution_batch_size: int = setting(8, ge=1, doc="examples per gradient pass")


def set_gradient(model, tokenizer, examples, params, batch_size: int, max_length: int) -> list[torch.Tensor]:
    """Gradients of the answer NLL with respect to ``params``, averaged over batches of ``examples``."""
    total = [torch.zeros_like(p) for p in params]
    device = params[0].device
    starts = range(0, len(examples), batch_size)
    with torch.enable_grad():
        for start in starts:
            batch = pairing.collate(tokenizer, examples[start : start + batch_size], max_length).to(device)
            grads = torch.autograd.grad(losses.answer_nll(model, batch), params)
            for into, grad in zip(total, grads):
                into.add_(grad, alpha=1.0 / len(starts))
    return total


class Wagle(Unlearner):
    """WAGLE: GradDiff + SophiaG on the global top-p weights by |(theta - g_r/mu) * g_f|."""

    paper = "WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in LLMs (arXiv 2410.17509)"
    Options = WagleOptions
    retain_weight = "gamma"

    def __init__(self, config):
        super().__init__(config)
        if config.optimizer.name != "sophiag":
            raise UserError(
                f"{config.source or 'wagle config'}: optimizer.name: got {config.optimizer.name!r}, "
                f"expected 'sophiag' (WAGLE's mask is applied to SophiaG's momentum, curvature and weights)"
            )
        self.masks: dict[str, torch.Tensor] = {}

    def prepare(self, model, tokenizer, data) -> None:
        family = attribution.model_family(model)
        if family not in attribution.FAMILIES:
            attribution.down_projections(model)  # raises the UserError naming the supported families
        layers_path = attribution.FAMILIES[family][0]
        layers = model.get_submodule(layers_path)
        named = [(f"{layers_path}.{n}", p) for n, p in layers.named_parameters() if p.ndim >= 2]
        params = [p for _, p in named]
        was_training = model.training
        model.eval()
        try:
            size, length = self.options.attribution_batch_size, self.config.train.max_length
            forget = set_gradient(model, tokenizer, list(data.forget), params, size, length)
            retain = set_gradient(model, tokenizer, list(data.retain), params, size, length)
        finally:
            model.train(was_training)
        mu = self.options.mu or 1.0 / self.config.optimizer.lr
        scores = [((p.detach() - g_r / mu) * g_f).abs().float() for p, g_f, g_r in zip(params, forget, retain)]
        flat = torch.cat([s.flatten() for s in scores])
        keep = math.ceil(self.options.fraction * flat.numel())
        cut = torch.kthvalue(flat.cpu(), flat.numel() - keep + 1).values.item()  # the keep-th largest score
        self.masks = {name: score >= cut for (name, _), score in zip(named, scores)}
        self._params = dict(named)

    def parameters_to_train(self, model):
        return [(name, self._params[name]) for name, mask in self.masks.items() if mask.any()]

    def loss(self, model, batch):
        return losses.graddiff(model, batch, self.options.gamma)

    def on_train_start(self, state) -> None:
        for name, mask in self.masks.items():
            if mask.any():
                state.optimizer.set_mask(self._params[name], mask)

    def before_step(self, state) -> None:
        for name, mask in self.masks.items():
            grad = self._params[name].grad
            if grad is not None:
                grad.mul_(mask)

    def summary(self) -> dict:
        kept = sum(int(m.sum()) for m in self.masks.values())
        total = sum(m.numel() for m in self.masks.values())
        return {"mask": {"selected": kept, "candidates": total, "fraction_selected": kept / max(total, 1),
                         "per_parameter": {name: int(m.sum()) for name, m in self.masks.items()}}}
