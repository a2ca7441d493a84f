"""The baselines' losses, hand-worked on a model whose probabilities are written down.

`Fixed` is a "language model" whose next-token distribution is the same at every position
(logits = log of the given probabilities), so each loss can be computed on paper:
the policy puts p = 1/2 on both tokens of a 2-token vocabulary, the reference p(0) = 1/4,
p(1) = 3/4. A forget row answers "0 0" (2 answer tokens), a retain row "1" (1 answer token):

    log pi(forget)  = 2 ln(1/2) = -2 ln 2      log pi_ref(forget) = 2 ln(1/4) = -4 ln 2
    log ratio       = 2 ln 2                   NLL(retain) = mean NLL(forget) = ln 2
"""

import math
from types import SimpleNamespace

import pytest
import torch

from simu_bench.data.pairing import IGNORE, Encoded, PairedBatch
from simu_bench.unlearning import losses, registry


class Fixed(torch.nn.Module):
    """Logits log(probs) at every position, whatever the input."""

    def __init__(self, probs):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(probs).log())

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def rows(answer):
    """One row: a prompt token (1) and the answer tokens; the prompt is masked out of the labels."""
    ids = torch.tensor([[1, *answer]])
    return Encoded(ids, torch.ones_like(ids), torch.tensor([[IGNORE, *answer]]))


FORGET, RETAIN = rows([0, 0]), rows([1])
BATCH = PairedBatch(FORGET, RETAIN)
POLICY, REFERENCE = Fixed([0.5, 0.5]), Fixed([0.25, 0.75])
LN2 = math.log(2)


def method(name, *overrides):
    unlearner = registry.create(name, list(overrides))
    unlearner.reference = REFERENCE
    return unlearner


def test_grad_ascent_is_minus_the_forget_nll():
    """-NLL(forget) = -ln 2; the retain side is never read (it may be absent)."""
    loss = method("grad_ascent").loss(POLICY, PairedBatch(FORGET, None))
    assert loss.item() == pytest.approx(-LN2)


def test_npo_hand_worked():
    """beta = 0.1: -(2/beta) ln sigmoid(-beta * 2 ln 2) = 20 ln(1 + 2^0.2); + alpha ln 2, alpha = 2."""
    loss = method("npo", "options.beta=0.1", "options.alpha=2.0").loss(POLICY, BATCH)
    assert loss.item() == pytest.approx(20 * math.log(1 + 2**0.2) + 2 * LN2, rel=1e-6)


def test_npo_equals_its_start_value_when_the_policy_is_the_reference():
    """pi = pi_ref: the forget term is (2/beta) ln 2 whatever the answers."""
    assert losses.npo(POLICY, POLICY, FORGET, 0.5).item() == pytest.approx(4 * LN2)


def test_simnpo_hand_worked():
    """beta 4.5, delta 0: the argument is beta * NLL = 4.5 ln 2, so the forget term is
    (2/4.5) ln(1 + 2^-4.5); weighted 0.125, + alpha ln 2 with alpha 1. No reference is read."""
    unlearner = method("simnpo", "options.beta=4.5", "options.delta=0", "options.forget_weight=0.125",
                       "options.alpha=1")
    unlearner.reference = None
    expected = 0.125 * (2 / 4.5) * math.log(1 + 2**-4.5) + LN2
    assert unlearner.loss(POLICY, BATCH).item() == pytest.approx(expected, rel=1e-6)


def test_simnpo_delta_shifts_the_margin():
    """delta = 4.5 ln 2 cancels the argument: -(2/beta) ln sigmoid(0) = (2/beta) ln 2."""
    assert losses.simnpo(POLICY, FORGET, 4.5, 4.5 * LN2).item() == pytest.approx((2 / 4.5) * LN2, rel=1e-6)


def test_dpo_hand_worked():
    """Preferred "1": r_w = ln(1/2) - ln(3/4) = ln(2/3); rejected "0 0": r_l = 2 ln 2.
    beta (r_w - r_l) = 0.1 ln(1/6), so the loss is -20 ln sigmoid(0.1 ln(1/6)) = 20 ln(1 + 6^0.1)."""
    loss = losses.dpo(POLICY, REFERENCE, rows([1]), FORGET, 0.1)
    assert loss.item() == pytest.approx(20 * math.log(1 + 6**0.1), rel=1e-6)


def test_idk_dpo_refusals_are_fixed_per_example(data):
    """Each forget row always gets the same refusal of the fixed set (a CRC-32 of its id)."""
    from simu_bench.baselines.idk_dpo import REFUSALS, refusal_for

    picks = [refusal_for(example) for example in data.forget]
    assert set(picks) <= set(REFUSALS)
    assert picks == [refusal_for(example) for example in data.forget]


def test_idk_dpo_loss_at_the_start_is_the_dpo_constant_plus_retain(tokenizer, data):
    from simu_bench.data import pairing

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer)
    unlearner = registry.create("idk_dpo", ["options.beta=0.1", "options.alpha=3.0"])
    unlearner.reference = model
    unlearner.prepare(model, tokenizer, data)
    batch = next(pairing.batches(tokenizer, data.forget, data.retain, batch_size=2, max_length=64,
                                 generator=torch.Generator().manual_seed(0)))
    expected = 20 * LN2 + 3.0 * losses.answer_nll(model, batch.retain).item()
    assert unlearner.loss(model, batch).item() == pytest.approx(expected, rel=1e-5)
