"""WAGLE: GradDiff restricted to the weights that weight attribution ties to the forget set.

Paper: WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in Large
Language Models (Jia, Liu, Zhang, Ram, Baracaldo, Liu; NeurIPS 2024, arXiv 2410.17509;
code OPTML-Group/WAGLE, `src/unlearn/generate_mask.py` and `configs/unlearn/*/GradDiff+WAGLE.json`).
1. `prepare`: g_f and g_r, the gradients of the forget and the retain answer NLL at the model
   before unlearning, each summed over batches of ``attribution_batch_size`` examples (the
   batch's mean NLL per batch, as the authors' code accumulates ``.grad`` over its loader);
   each weight's score is |(theta - g_r / mu) * g_f| (theta - g_r / mu: the weight after one
   retain-descent step of size 1/mu, WAGLE's bi-level approximation). ``mu`` is 1e-6 as in
   the authors' TOFU and WMDP GradDiff+WAGLE configs (their script's own default is 1e-3); so
   small a mu makes the retain term g_r * g_f / mu decide the ranking. The global top
   ``fraction`` of the candidates' scores is the mask (ties at the cut all kept).
   ``candidates``: ``all`` ranks every parameter, as the authors' code; ``decoder`` (the
   default) ranks the weight matrices of the decoder layers only (attention and MLP
   projections), the weights SIMU's mask chooses from; embeddings, the output layer and norms
   then stay frozen.
2. Training: loss -CE(forget) + gamma * CE(retain) with the optimizer the config names. The
   mask is applied to the gradients before clipping (WAGLE masks them after clipping; the
   clipped norm is then the norm of what trains, as in SIMU). With SophiaG (the default, so
   that only the mask differs from SIMU's recipe) it is also applied to the momentum,
   curvature and weights, so masked-out weights keep their values exactly; with AdamW (the
   authors' configs: lr 7e-6 on TOFU) only the gradients are masked, as the authors' code
   does, and AdamW's decoupled weight decay still shrinks masked-out weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from simu_bench.data import pairing
from simu_bench.simu import attribution
from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner

CANDIDATES = ("decoder", "all")


@dataclass
class WagleOptions:
    """WAGLE's settings (the ``options`` block of wagle.yaml)."""

    gamma: float = setting(1.0, ge=0.0, doc="GradDiff: weight of the retain loss")
    fraction: float = setting(0.2, gt=0.0, le=1.0, doc="share of the candidate weights kept (global top-p)")
    mu: float = setting(1e-6, gt=0.0, doc="retain-Hessian scale: 1e-6 as the authors' configs (their script: 1e-3)")
    candidates: str = setting(
        "decoder", choices=CANDIDATES,
        doc="weights ranked: decoder (the decoder layers' matrices) | all (every parameter, as the authors)",
    )
    attribution_batch_size: int = setting(8, ge=1, doc="examples per gradient pass")


def summed_gradient(model, tokenizer, examples, params, batch_size: int, max_length: int) -> list[torch.Tensor]:
    """Gradients of the answer NLL with respect to ``params``, summed over batches of ``examples``."""
    total = [torch.zeros_like(p) for p in params]
    device = params[0].device
    with torch.enable_grad():
        for start in range(0, len(examples), batch_size):
            batch = pairing.collate(tokenizer, examples[start : start + batch_size], max_length).to(device)
            grads = torch.autograd.grad(losses.answer_nll(model, batch), params)
            for into, grad in zip(total, grads):
                into.add_(grad)
    return total


def weight_scores(params, forget, retain, mu: float) -> list[torch.Tensor]:
    """|(theta - g_r / mu) * g_f| per weight, shaped like each parameter."""
    return [((p.detach() - g_r / mu) * g_f).abs().float() for p, g_f, g_r in zip(params, forget, retain)]


def global_top(scores: list[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """Boolean masks keeping the ceil(fraction * n) highest of all n scores (ties at the cut kept)."""
    flat = torch.cat([s.flatten() for s in scores])
    keep = math.ceil(fraction * flat.numel())
    cut = torch.kthvalue(flat.cpu(), flat.numel() - keep + 1).values.item()  # the keep-th largest score
    return [score >= cut for score in scores]


class Wagle(Unlearner):
    """WAGLE: GradDiff on the global top-p weights by |(theta - g_r/mu) * g_f|."""

    paper = "WAGLE: Strategic Weight Attribution for Effective and Modular Unlearning in LLMs (arXiv 2410.17509)"
    Options = WagleOptions
    retain_weight = "gamma"

    @classmethod
    def check_config(cls, config, model=None) -> list[str]:
        """With the target's shape: candidates by layer need a model family the attribution maps."""
        if model is None or config.options.candidates == "all":
            return []
        return attribution.unsupported(model.model_type)

    def __init__(self, config):
        super().__init__(config)
        self.masks: dict[str, torch.Tensor] = {}

    def candidates(self, model) -> list[tuple[str, torch.nn.Parameter]]:
        """The (name, parameter) pairs the mask ranks (``options.candidates``)."""
        if self.options.candidates == "all":
            return list(model.named_parameters())
        family = attribution.model_family(model)
        if family not in attribution.FAMILIES:
            attribution.down_projections(model)  # raises the UserError naming the supported families
        layers_path = attribution.FAMILIES[family][0]
        layers = model.get_submodule(layers_path)
        return [(f"{layers_path}.{n}", p) for n, p in layers.named_parameters() if p.ndim >= 2]

    def prepare(self, model, tokenizer, data) -> None:
        named = self.candidates(model)
        params = [p for _, p in named]
        was_training = model.training
        model.eval()
        try:
            size, length = self.options.attribution_batch_size, self.config.train.max_length
            forget = summed_gradient(model, tokenizer, list(data.forget), params, size, length)
            retain = summed_gradient(model, tokenizer, list(data.retain), params, size, length)
        finally:
            model.train(was_training)
        masks = global_top(weight_scores(params, forget, retain, self.options.mu), self.options.fraction)
        self.masks = {name: mask for (name, _), mask in zip(named, masks)}
        self._params = dict(named)

    def parameters_to_train(self, model):
        return [(name, self._params[name]) for name, mask in self.masks.items() if mask.any()]

    def loss(self, model, batch):
        return losses.graddiff(model, batch, self.options.gamma)

    def on_train_start(self, state) -> None:
        if not hasattr(state.optimizer, "set_mask"):  # AdamW: the gradients alone are masked
            return
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
                         "mu": self.options.mu, "candidate_set": self.options.candidates,
                         "per_parameter": {name: int(m.sum()) for name, m in self.masks.items()}}}
