"""GradAscent: ascend on the forget answers' NLL, with no retain term.

Paper: the gradient-ascent baseline of "Knowledge Unlearning for Mitigating Privacy Risks in
Language Models" (Jang et al., ACL 2023, arXiv 2210.01504) and of TOFU (Maini et al., 2024,
arXiv 2401.06121).
Loss: -NLL(forget), NLL the mean next-token cross-entropy over the answer tokens. The retain
set is not used, so the method also runs on data without one.
"""

from __future__ import annotations

from simu_bench.unlearning import losses
from simu_bench.unlearning.unlearner import Unlearner


class GradAscent(Unlearner):
    """GradAscent: minimise -NLL(forget)."""

    paper = "Knowledge Unlearning for Mitigating Privacy Risks in Language Models (arXiv 2210.01504)"
    uses_retain = False

    def loss(self, model, batch):
        return -losses.answer_nll(model, batch.forget)
