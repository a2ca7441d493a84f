"""SIMU step 1: integrated-gradients attribution of the MLP units (simu_bench.simu.attribution)."""

from __future__ import annotations

import pytest
import torch
import transformers

from simu_bench.data.pairing import IGNORE, collate
from simu_bench.errors import UserError
from simu_bench.simu.attribution import POSITIONS, answer_log_prob, attribute, down_projections, predicting_positions

from simu_helpers import FAMILIES, LAYERS, UNITS, family_model
from unlearn_helpers import tiny_data, tiny_model


def encoded(tokenizer, examples):
    batch = collate(tokenizer, examples, 512)
    return batch.input_ids, batch.attention_mask, batch.labels != IGNORE


def chosen_positions(answer, positions):
    """(batch, seq, 1) 0/1: where attribution scales. predicting: p with token p + 1 in the answer."""
    if positions == "all":
        return torch.ones(*answer.shape, 1, dtype=torch.float64)
    where = torch.zeros(answer.shape, dtype=torch.float64)
    where[:, :-1] = answer[:, 1:].double()
    return where[..., None]


def test_predicting_positions_are_the_ones_before_each_answer_token():
    """Tokens [p p a a eos pad] with answer mask [0 0 1 1 1 0]: positions 1, 2, 3 predict a, a, eos."""
    answer = torch.tensor([[False, False, True, True, True, False]])
    assert predicting_positions(answer).tolist() == [[False, True, True, True, False, False]]


def reference_scores(model, tokenizer, examples, m, positions="predicting"):
    """Integrated gradients the slow, obvious way: one forward + backward per (layer, step)."""
    ids, attention, answer = encoded(tokenizer, examples)
    where = chosen_positions(answer, positions)
    projections = down_projections(model)
    scores = torch.zeros(len(projections), projections[0].units, dtype=torch.float64)
    for projection in projections:
        for k in range(1, m + 1):
            seen = {}

            def scale(module, args, alpha=k / m):
                seen["a"] = args[0].detach()  # (batch, seq, d_ff), unscaled
                seen["scaled"] = (args[0] * (1 + (alpha - 1) * where.to(args[0].dtype))).detach().requires_grad_(True)
                return (seen["scaled"],)

            handle = projection.module.register_forward_pre_hook(scale)
            try:
                target = answer_log_prob(model, ids, attention, answer)
                (grad,) = torch.autograd.grad(target, seen["scaled"])
            finally:
                handle.remove()
            scores[projection.layer] += (seen["a"] * grad * where).sum(dim=(0, 1)).double() / m
    return scores


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_matches_the_one_step_at_a_time_reference(family, tokenizer):
    model = family_model(family, tokenizer).double()
    examples = tiny_data().forget[:2]
    projections = down_projections(model)
    assert [p.layer for p in projections] == list(range(LAYERS))
    assert all(p.units == UNITS for p in projections)
    # GPT-2's Conv1D stores (in=d_ff, out=d_model): its units are rows, everyone else's columns.
    assert all(p.unit_dim == (0 if family == "gpt2" else 1) for p in projections)
    assert POSITIONS[0] == "predicting"  # the default: the knowledge-neuron line of work
    for positions in POSITIONS:
        scores = attribute(model, tokenizer, examples, m=3, positions=positions)
        assert scores.shape == (LAYERS, UNITS) and scores.dtype == torch.float32
        expected = reference_scores(model, tokenizer, examples, m=3, positions=positions)
        assert expected.abs().max() > 0
        torch.testing.assert_close(scores.double(), expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(attribute(model, tokenizer, examples, m=3),
                               attribute(model, tokenizer, examples, m=3, positions="predicting"))


def test_the_two_position_settings_give_different_scores(tokenizer):
    """Scaling the prompt too changes what a unit is credited with: the scores differ."""
    model = tiny_model(tokenizer).double()
    examples = tiny_data().forget
    every = attribute(model, tokenizer, examples, m=3, positions="all")
    predicting = attribute(model, tokenizer, examples, m=3, positions="predicting")
    assert not torch.allclose(every, predicting, rtol=1e-2, atol=0)


@pytest.mark.parametrize("positions", POSITIONS)
def test_scores_add_up_to_the_effect_of_zeroing_the_layer(tokenizer, positions):
    """Completeness: per layer, sum_j score[l, j] ~= target(x) - target(layer l's units = 0 at
    the scaled positions: the predicting ones, or all)."""
    model = tiny_model(tokenizer).double()
    examples = tiny_data().forget
    scores = attribute(model, tokenizer, examples, m=24, positions=positions).double()
    ids, attention, answer = encoded(tokenizer, examples)
    keep = 1 - chosen_positions(answer, positions)
    with torch.no_grad():
        full = answer_log_prob(model, ids, attention, answer)
        for projection in down_projections(model):
            handle = projection.module.register_forward_pre_hook(lambda module, args: (args[0] * keep,))
            try:
                zeroed = answer_log_prob(model, ids, attention, answer)
            finally:
                handle.remove()
            effect = (full - zeroed).item()
            assert abs(effect) > 1e-4
            assert scores[projection.layer].sum().item() == pytest.approx(effect, rel=0.02, abs=1e-6)


def test_batching_is_invisible_and_one_pass_per_batch(tokenizer):
    model = tiny_model(tokenizer).double()
    examples = tiny_data().forget
    calls = []
    handle = model.base_model.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        together = attribute(model, tokenizer, examples, m=3, batch_size=4)
    finally:
        handle.remove()
    assert len(calls) == 1  # all m steps of all layers in one forward pass (not m x L of them)
    split = attribute(model, tokenizer, examples, m=3, batch_size=3, copies_per_pass=2)  # 2 + 3 passes
    torch.testing.assert_close(together, split, rtol=1e-6, atol=1e-9)


def test_planted_neuron_ranks_first(tokenizer):
    """Unit 17 of layer 1 is made to fire everywhere and to write the answers' output directions."""
    examples = tiny_data().forget
    model = tiny_model(tokenizer)
    layer, unit = 1, 17
    with torch.no_grad():
        direction = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
        direction = (direction - direction.mean()) / direction.std()  # survives OLMo's mean-centring norm
        model.model.embed_tokens.weight += 3 * direction  # every position carries it
        mlp = model.model.layers[layer].mlp
        mlp.gate_proj.weight[unit] = 3 * direction / direction.dot(direction)
        mlp.up_proj.weight[unit] = 3 * direction / direction.dot(direction)  # activation ~ silu(3) * 3
        _, _, answer = encoded(tokenizer, examples)
        ids = encoded(tokenizer, examples)[0]
        answer_tokens = ids[answer].unique()
        writes = model.lm_head.weight[answer_tokens].sum(dim=0)
        mlp.down_proj.weight[:, unit] = 0.5 * writes / writes.norm()
    scores = attribute(model, tokenizer, examples, m=5)
    assert divmod(int(scores.argmax()), scores.shape[1]) == (layer, unit)
    runner_up = scores.flatten().topk(2).values[1]
    assert scores[layer, unit] > 5 * runner_up.abs()


def test_attribution_leaves_the_model_as_it_was(tokenizer):
    model = tiny_model(tokenizer)
    model.train()
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    attribute(model, tokenizer, tiny_data().forget, m=2)
    assert model.training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
    assert not any(p.module._forward_pre_hooks for p in down_projections(model))


def test_unsupported_family_names_the_supported_ones(tokenizer):
    config = transformers.BloomConfig(vocab_size=len(tokenizer), hidden_size=32, n_layer=2, n_head=4)
    model = transformers.BloomForCausalLM(config)
    with pytest.raises(UserError, match=r"'bloom'.*gpt2, gpt_neox, llama, olmo, olmo2, qwen2"):
        down_projections(model)
    with pytest.raises(UserError, match="not supported"):
        attribute(model, tokenizer, tiny_data().forget, m=3)


@pytest.mark.parametrize("kwargs, message", [
    ({"m": 0}, "m=0"), ({"m": 2.5}, "m=2.5"), ({"batch_size": 0}, "batch_size=0"),
    ({"copies_per_pass": 0}, "copies_per_pass=0"), ({"positions": "prompt"}, "positions 'prompt'"),
])
def test_bad_settings_are_user_errors(tokenizer, kwargs, message):
    with pytest.raises(UserError, match=message):
        attribute(tiny_model(tokenizer), tokenizer, tiny_data().forget, **kwargs)


def test_empty_set_is_a_user_error(tokenizer):
    with pytest.raises(UserError, match="empty"):
        attribute(tiny_model(tokenizer), tokenizer, (), m=3)


def test_zeroing_the_top_attributed_units_hurts_the_forget_answers_far_more_than_random_ones(
        tiny_model_and_tokenizer, tiny_target):
    from simu_bench.unlearning.losses import answer_nll

    model, tokenizer = tiny_model_and_tokenizer
    forget = tiny_target.data.forget
    scores = attribute(model, tokenizer, forget, m=3)
    layers, units = scores.shape
    count = -(-layers * units // 20)  # 5% of all units
    batch = collate(tokenizer, forget, 512)

    def forget_nll_without(zeroed):  # zeroed: bool (layers * units,)
        keep = (~zeroed).view(layers, units).float()
        handles = [p.module.register_forward_pre_hook(lambda module, args, k=keep[p.layer]: (args[0] * k,))
                   for p in down_projections(model)]
        try:
            with torch.no_grad():
                return answer_nll(model, batch).item()
        finally:
            for handle in handles:
                handle.remove()

    def chosen(indices):
        zeroed = torch.zeros(layers * units, dtype=torch.bool)
        zeroed[indices] = True
        return zeroed

    base = forget_nll_without(chosen([]))
    top = forget_nll_without(chosen(scores.flatten().topk(count).indices)) - base
    generator = torch.Generator().manual_seed(0)
    random = [forget_nll_without(chosen(torch.randperm(layers * units, generator=generator)[:count])) - base
              for _ in range(5)]
    assert top > 10 * max(max(random), 1e-6), (top, random)
