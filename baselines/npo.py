"""NPO: negative preference optimisation on the forget set, against a frozen reference model.

Paper: Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning
(Zhang, Lin, Bai, Mei; COLM 2024, arXiv 2404.05868).
Loss: -(2/beta) * mean over forget examples of log sigmoid(-beta * (log pi(y|x) - log pi_ref(y|x)))
      + alpha * NLL(retain),
log pi(y|x) the summed answer-token log-probability, pi_ref the model before unlearning (kept
frozen by the loop: one more copy of the model in memory and one more forward per step).
"""

from __future__ import annotations

from dataclasses import dataclass

from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner


@dataclass
class NpoOptions:
    """NPO's settings (the ``options`` block of npo.yaml)."""

    beta: float = setting(0.1, gt=0.0, doc="inverse temperature of the preference loss")
    alpha: float = setting(1.0, ge=0.0, doc="weight of the retain NLL")


class Npo(Unlearner):
    """NPO: -(2/beta) E log sigmoid(-beta log(pi/pi_ref)) on forget + alpha NLL(retain)."""

    paper = "Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning (arXiv 2404.05868)"
    Options = NpoOptions
    retain_weight = "alpha"
    uses_reference = True

    def loss(self, model, batch):
        forget, retain = losses.joint_nll(model, batch.forget, batch.retain)  # one forward for both
        reference = losses.reference_log_prob(self.reference, batch.forget)
        return losses.npo_of(forget.log_prob(), reference, self.options.beta) + self.options.alpha * retain.mean()
