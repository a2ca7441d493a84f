"""IdkDPO: DPO that prefers a refusal to the forget answer, with a retain NLL.

Paper: the IdkDPO baseline of TOFU (Maini, Feng, Schwarzschild, Lipton, Kolter; arXiv 2401.06121),
built on Direct Preference Optimization (Rafailov et al., NeurIPS 2023, arXiv 2305.18290).
Loss: -(2/beta) * mean over forget examples of log sigmoid(beta * (r_w - r_l)) + alpha * NLL(retain),
r = log pi(y|x) - log pi_ref(y|x), y_w a refusal ("I don't know"-style) to the forget prompt x,
y_l its forget answer, pi_ref the frozen model before unlearning. The 2/beta scale is
open-unlearning's (the same as NPO's, which is this loss without the preferred answer).
Each forget example always gets the same refusal from the fixed set `REFUSALS`, picked by a
CRC-32 of its id, so runs repeat without drawing from the run's random stream.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

from simu_bench.data import pairing
from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.unlearner import Unlearner

REFUSALS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "I can't answer that.",
    "That is not something I know.",
)


def refusal_for(example) -> str:
    """The refusal paired with ``example`` (fixed by its id)."""
    return REFUSALS[zlib.crc32(example.id.encode("utf-8")) % len(REFUSALS)]


@dataclass
class IdkDpoOptions:
    """IdkDPO's settings (the ``options`` block of idk_dpo.yaml)."""

    beta: float = setting(0.1, gt=0.0, doc="inverse temperature of the preference loss")
    alpha: float = setting(1.0, ge=0.0, doc="weight of the retain NLL")


class IdkDpo(Unlearner):
    """IdkDPO: DPO with a refusal preferred over the forget answer, + alpha NLL(retain)."""

    paper = "TOFU: A Task of Fictitious Unlearning for LLMs (arXiv 2401.06121), IdkDPO with DPO (arXiv 2305.18290)"
    Options = IdkDpoOptions
    retain_weight = "alpha"
    uses_reference = True

    def prepare(self, model, tokenizer, data) -> None:
        self.tokenizer = tokenizer

    def loss(self, model, batch):
        refusals = [replace(example, output=refusal_for(example)) for example in batch.forget_examples]
        device = batch.forget.input_ids.device
        preferred = pairing.collate(self.tokenizer, refusals, self.config.train.max_length).to(device)
        # one forward for the refusals, the forget answers and the retain rows
        win, lose, retain = losses.joint_nll(model, preferred, batch.forget, batch.retain)
        win_ratio = win.log_prob() - losses.reference_log_prob(self.reference, preferred)
        lose_ratio = lose.log_prob() - losses.reference_log_prob(self.reference, batch.forget)
        return losses.dpo_of(win_ratio, lose_ratio, self.options.beta) + self.options.alpha * retain.mean()
