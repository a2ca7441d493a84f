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


def test_graddiff_by_hand_means_over_each_split_not_the_joint_batch():
    """FixedLogits: NLL(0) = -log(3/5) = 0.5108, NLL(2) = -log(1/5) = 1.6094.
    Forget: one row, answer [0, 2] -> CE 1.0601 (2 tokens). Retain: one row, answer [2, 2, 2, 2]
    -> CE 1.6094 (4 tokens). GradDiff with gamma 2: -1.0601 + 3.2189 = 2.1587. A mean over the
    joint batch's 6 tokens would give -(0.5108 + 1.6094 + 4 * 1.6094) / 6 ... a different number."""
    from simu_bench.data.pairing import PairedBatch

    def encoded(ids, labels):
        return Encoded(pad_right(ids, 0), attention_mask(ids), pad_right(labels, IGNORE))

    forget = encoded([[1, 0, 2]], [[IGNORE, 0, 2]])
    retain = encoded([[1, 2, 2, 2, 2]], [[IGNORE, 2, 2, 2, 2]])
    model = FixedLogits()
    first, second = losses.joint_nll(model, forget, retain)
    assert first.mean().item() == pytest.approx(1.0601, abs=1e-4)
    assert second.mean().item() == pytest.approx(1.6094, abs=1e-4)
    assert first.nll.shape == (1, 2) and second.nll.shape == (1, 4)  # each split's own width
    value = losses.graddiff(model, PairedBatch(forget, retain), gamma=2.0).item()
    assert value == pytest.approx(-1.0601 + 2 * 1.6094, abs=1e-4)


METHODS_WITH_JOINT_PASS = ["fo_graddiff", "npo", "simnpo", "idk_dpo", "simu_npo", "simu_simnpo"]


def _separate_loss(unlearner, model, batch):
    """The same losses as the methods compute them, one forward per split (the code before the joint pass)."""
    from dataclasses import replace

    from simu_bench.baselines.idk_dpo import refusal_for
    from simu_bench.data import pairing

    options, name = unlearner.options, unlearner.name
    if name == "fo_graddiff":
        return -losses.answer_nll(model, batch.forget) + options.gamma * losses.answer_nll(model, batch.retain)
    if name == "npo":
        return losses.npo(model, unlearner.reference, batch.forget, options.beta) + options.alpha * losses.answer_nll(
            model, batch.retain)
    if name == "simnpo":
        forget = losses.simnpo(model, batch.forget, options.beta, options.delta)
        return options.forget_weight * forget + options.alpha * losses.answer_nll(model, batch.retain)
    if name == "idk_dpo":
        refusals = [replace(e, output=refusal_for(e)) for e in batch.forget_examples]
        preferred = pairing.collate(unlearner.tokenizer, refusals, unlearner.config.train.max_length)
        forget = losses.dpo(model, unlearner.reference, preferred, batch.forget, options.beta)
        return forget + options.alpha * losses.answer_nll(model, batch.retain)
    if options.loss == "npo":
        forget = losses.npo(model, unlearner.reference, batch.forget, options.beta)
    else:
        forget = losses.simnpo(model, batch.forget, options.beta, options.delta)
    return options.forget_weight * forget + options.gamma * losses.answer_nll(model, batch.retain)


@pytest.mark.parametrize("method", METHODS_WITH_JOINT_PASS)
def test_one_joint_forward_gives_the_separate_passes_loss_and_gradient(method, tokenizer, data):
    """One padded forward over forget and retain: the loss and every gradient within float
    rounding of one forward per split (forget and retain answers of different lengths)."""
    import copy

    from simu_bench.data import pairing
    from simu_bench.unlearning import registry

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer)
    unlearner = registry.create(method)
    unlearner.reference = copy.deepcopy(model).eval().requires_grad_(False)
    unlearner.prepare(model, tokenizer, data)
    forget, retain = pairing.collate(tokenizer, data.forget, 64), pairing.collate(tokenizer, data.retain, 64)
    assert forget.input_ids.shape[1] != retain.input_ids.shape[1]  # padding to a common width is exercised
    batch = pairing.PairedBatch(forget, retain, data.forget, data.retain)
    results = []
    for compute in (unlearner.loss, lambda m, b: _separate_loss(unlearner, m, b)):
        model.zero_grad()
        loss = compute(model, batch)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (joint, joint_grads), (separate, separate_grads) = results
    assert joint == pytest.approx(separate, rel=1e-5, abs=1e-6)
    scale = max(g.abs().max().item() for g in separate_grads)
    assert max((a - b).abs().max().item() for a, b in zip(joint_grads, separate_grads)) <= 1e-4 * scale
