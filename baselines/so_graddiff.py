"""SO-GradDiff: gradient difference with the second-order SophiaG optimizer, as in SOUL.

Paper: SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning (Jia et al.,
EMNLP 2024, arXiv 2404.18239).
Loss: -CE(forget) + gamma * CE(retain), the same as FO-GradDiff; the optimizer is SophiaG with
SOUL's step (`simu_bench.unlearning.sophia`, variant "soul"), chosen in `so_graddiff.yaml`.
"""

from __future__ import annotations

from simu_bench.unlearning import losses
from simu_bench.unlearning.unlearner import Unlearner


class SOGradDiff(Unlearner):
    """GradDiff with SophiaG: the same loss as FO-GradDiff, a second-order optimizer."""

    name = "so_graddiff"
    paper = "SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning (arXiv 2404.18239)"
    config_resource = ("simu_bench.baselines", "so_graddiff.yaml")

    def loss(self, model, batch):
        return losses.graddiff(model, batch, self.config.gamma)
