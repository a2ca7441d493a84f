"""Per-sequence answer log-probabilities: hand-worked on a model whose logits are fixed."""

import math

import pytest
import torch

from simu_bench.data.pairing import IGNORE, Encoded, attention_mask, pad_right
from simu_bench.unlearning import losses


class FixedLogits(torch.nn.Module):
    """Every position predicts token 0 with logit log(3) and tokens 1, 2 with logit 0:
    p(0) = 3/5, p(1) = p(2) = 1/5, whatever the input. A scale parameter carries gradients."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, input_ids, attention_mask):
        logits = torch.tensor([math.log(3.0), 0.0, 0.0]).expand(*input_ids.shape, 3)
        return type("Out", (), {"logits": logits * self.scale})


def test_sequence_log_prob_and_nll_by_hand():
    """Row 0: prompt [1], answer [0, 2] -> log(3/5) + log(1/5) = -0.5108 - 1.6094 = -2.1203.
    Row 1: prompt [1, 1], answer [0], padded -> log(3/5) = -0.5108. Mean NLL: 1.0601 and 0.5108."""
    ids = [[1, 0, 2], [1, 1, 0]]
    labels = [[IGNORE, 0, 2], [IGNORE, IGNORE, 0]]
    batch = Encoded(pad_right(ids, 0), attention_mask(ids), pad_right(labels, IGNORE))
    model = FixedLogits()
    log_prob = losses.sequence_log_prob(model, batch)
    assert log_prob.tolist() == pytest.approx([math.log(0.6) + math.log(0.2), math.log(0.6)], abs=1e-6)
    assert losses.sequence_nll(model, batch).tolist() == pytest.approx([1.0601, 0.5108], abs=1e-4)
    log_prob.sum().backward()
    assert model.scale.grad is not None and model.scale.grad != 0  # gradients flow for NPO-style losses


def test_pad_right_pads_each_row_with_the_value():
    assert pad_right([[5, 6, 7], [8]], -1).tolist() == [[5, 6, 7], [8, -1, -1]]
    assert attention_mask([[5, 6, 7], [8]]).tolist() == [[1, 1, 1], [1, 0, 0]]
