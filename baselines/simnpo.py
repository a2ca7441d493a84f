"""SimNPO: NPO without a reference model, length-normalised.

Paper: Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning
(Fan, Liu, Lin, Jia, Zhang, Mei, Liu; arXiv 2410.07163).
Loss: forget_weight * -(2/beta) * mean over forget examples of
      log sigmoid(beta * (NLL - delta))  + alpha * NLL(retain),
NLL = -(1/|y|) log pi(y|x), the mean answer-token NLL of the example. The margin delta sits
inside the temperature as in the authors' code (OPTML-Group/Unlearn-Simple; open-unlearning's
`simnpo.py`); the paper writes log sigmoid(-(beta/|y|) log pi - delta). Both agree at delta = 0,
the published TOFU setting and every shipped YAML's value.
The paper's TOFU settings: beta 4.5, delta 0, forget weight 0.125, alpha 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner


@dataclass
class SimNpoOptions:
    """SimNPO's settings (the ``options`` block of simnpo.yaml)."""

    beta: float = setting(4.5, gt=0.0, doc="inverse temperature on the length-normalised log-prob")
    delta: float = setting(0.0, doc="reward margin, in NLL units: log sigmoid(beta * (NLL - delta))")
    forget_weight: float = setting(0.125, gt=0.0, doc="weight of the forget term")
    alpha: float = setting(1.0, ge=0.0, doc="weight of the retain NLL")


class SimNpo(Unlearner):
    """SimNPO: -(2/beta) E log sigmoid(beta (NLL - delta)), weighted, + alpha NLL(retain)."""

    paper = "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning (arXiv 2410.07163)"
    Options = SimNpoOptions
    retain_weight = "alpha"

    def loss(self, model, batch):
        options = self.options
        forget, retain = losses.joint_nll(model, batch.forget, batch.retain)  # one forward for both
        term = losses.simnpo_of(forget.per_example(), options.beta, options.delta)
        return options.forget_weight * term + options.alpha * retain.mean()
