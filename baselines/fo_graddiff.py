"""FO-GradDiff: gradient difference with a first-order optimizer (AdamW).

Paper: SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning (Jia et al.,
EMNLP 2024, arXiv 2404.18239), where FO-GradDiff is the first-order baseline.
Loss: -CE(forget) + gamma * CE(retain), CE the mean next-token cross-entropy over answer tokens.
The optimizer (AdamW) comes from the config (`fo_graddiff.yaml`).
"""

from __future__ import annotations

from simu_bench.unlearning import losses
from simu_bench.unlearning.unlearner import Unlearner


class FOGradDiff(Unlearner):
    """GradDiff with AdamW: ascend on the forget answers, descend on the paired retain answers."""

    name = "fo_graddiff"
    paper = "SOUL: Unlocking the Power of Second-Order Optimization for LLM Unlearning (arXiv 2404.18239)"
    config_resource = ("simu_bench.baselines", "fo_graddiff.yaml")

    def loss(self, model, batch):
        return losses.graddiff(model, batch, self.config.gamma)
