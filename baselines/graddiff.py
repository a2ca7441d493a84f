"""GradDiff, the loss of FO-GradDiff and SO-GradDiff: ascend on the forget set, descend on the retain set.

Paper: SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning (Jia et al.,
EMNLP 2024, arXiv 2404.18239), where FO-GradDiff (AdamW) and SO-GradDiff (SophiaG) are the
first- and second-order baselines.
Loss: -CE(forget) + gamma * CE(retain), CE the mean next-token cross-entropy over answer tokens.
One class, two registered names: the optimizer is configuration, chosen by the YAML
(`fo_graddiff.yaml`: AdamW; `so_graddiff.yaml`: SophiaG with SOUL's step).
"""

from __future__ import annotations

from dataclasses import dataclass

from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner


@dataclass
class GradDiffOptions:
    """GradDiff's settings (the ``options`` block of fo_graddiff.yaml / so_graddiff.yaml)."""

    gamma: float = setting(1.0, ge=0.0, doc="weight of the retain loss")


class GradDiff(Unlearner):
    """GradDiff: -CE(forget) + gamma * CE(retain), with the optimizer its YAML names."""

    paper = "SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning (arXiv 2404.18239)"
    Options = GradDiffOptions
    retain_weight = "gamma"
    supports_distributed = True  # both CE terms are answer_nll: normalised by the global token count

    def loss(self, model, batch):
        return losses.graddiff(model, batch, self.options.gamma)
