"""Mask diagnostics (`simu_bench.simu.diagnostics`): counts, coverage, stability, causal check."""

import json

import pytest
import torch

from simu_bench.data import pairing
from simu_bench.simu import diagnostics
from simu_bench.simu.masks import CriticalMask
from simu_bench.unlearning import loop, losses, registry

from unlearn_helpers import tiny_model

TWO_STEPS = ["train.max_steps=2", "train.batch_size=2", "train.grad_accum_steps=1", "train.warmup_ratio=0"]
PLANTED_LAYER, PLANTED_UNIT = 1, 5


def test_jaccard_and_counts_hand_worked():
    """C_f = {0, 1} and C_r = {1, 2} in layer 0: overlap 1, union 3, Jaccard 1/3; layer 1 is empty (None)."""
    mask = CriticalMask(
        selected=torch.tensor([[True, True, False, False], [False] * 4]),
        forget_critical=torch.tensor([[True, True, False, False], [False] * 4]),
        retain_critical=torch.tensor([[False, True, True, False], [False] * 4]),
        strategy="dual", mode="threshold", t=0.5, m=3, family="olmo",
    )
    found = diagnostics.counts(mask)
    assert (found["forget_critical"], found["retain_critical"], found["dual"], found["selected"]) == (2, 2, 1, 2)
    assert found["forget_retain_jaccard"] == pytest.approx(1 / 3)
    assert [row["forget_retain_jaccard"] for row in found["per_layer"]] == [pytest.approx(1 / 3), None]
    assert diagnostics.coverage(64, 256) == 0.25 and diagnostics.coverage(0, 0) is None


@pytest.fixture(scope="module")
def planted(tokenizer, data):
    """A model in which one MLP unit carries the forget answers: every down projection is zero
    except unit PLANTED_UNIT of layer PLANTED_LAYER, which alone (its gate, up and down weights)
    is trained on the forget rows. Zeroing any other unit changes nothing."""
    model = tiny_model(tokenizer, seed=1)
    for layer in model.model.layers:
        layer.mlp.down_proj.weight.data.zero_()
    mlp = model.model.layers[PLANTED_LAYER].mlp
    trained = [mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight]
    for p in model.parameters():
        p.requires_grad_(any(p is q for q in trained))
    rows = torch.zeros(mlp.up_proj.weight.shape[0], 1)
    rows[PLANTED_UNIT] = 1  # (d_ff, 1): only the planted unit's rows / column move
    optimizer = torch.optim.Adam(trained, lr=0.05)
    batch = pairing.collate(tokenizer, data.forget, 64)
    for _ in range(60):
        optimizer.zero_grad()
        losses.answer_nll(model, batch).backward()
        mlp.gate_proj.weight.grad.mul_(rows)
        mlp.up_proj.weight.grad.mul_(rows)
        mlp.down_proj.weight.grad.mul_(rows.T)
        optimizer.step()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return model


def test_the_causal_check_finds_the_planted_unit(planted, tokenizer, data):
    unit = torch.zeros(2, planted.config.intermediate_size, dtype=torch.bool)
    unit[PLANTED_LAYER, PLANTED_UNIT] = True
    found = diagnostics.causal_check(planted, tokenizer, data, unit, batch_size=4, max_length=64)
    other = unit.roll(1, dims=1)
    elsewhere = diagnostics.causal_check(planted, tokenizer, data, other, batch_size=4, max_length=64)
    assert found["forget_nll_increase"] > 0.1  # training the unit lowered the forget NLL by ~0.17
    assert elsewhere["forget_nll_increase"] == 0.0  # a unit whose down-projection column is zero
    # Random single units of the planted layer: 0 unless a draw hits the planted unit.
    assert found["random_forget_nll_increase"] <= found["forget_nll_increase"] * 2 / found["random_draws"]
    assert found["ratio_to_random"] is None or found["ratio_to_random"] >= found["random_draws"] / 2
    assert found["forget_nll_increase"] > found["retain_nll_increase"]


def test_simu_attribution_selects_the_planted_unit_and_writes_mask_json(planted, tokenizer, data, tmp_path):
    unlearner = registry.create("simu", TWO_STEPS)
    result = loop.run(unlearner, planted, tokenizer, data, seed=0, progress=False)
    assert result.status == "ok", result.message
    assert unlearner.mask.selected.nonzero().tolist() == [[PLANTED_LAYER, PLANTED_UNIT]]
    _, path = unlearner.save_artifacts(tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "mask.json" and record["counts"]["selected"] == 1
    assert record["causal_check"]["forget_nll_increase"] > 0.1
    # Trained: q, k, v, o of both layers (4 x 32 x 32 each) and the unit's down-projection column (32).
    attention, column = 2 * 4 * 32 * 32, 32
    assert (record["trained_weights"], record["mask_weights"]) == (attention + column, column)
    assert record["mask_share_of_trained"] == pytest.approx(column / (attention + column))
    assert record["stability"]["rows"] == [2, 2]
    assert record["stability"]["per_layer"] == [None, 1.0]  # no unit in layer 0; both halves pick the unit


def test_simu_mlp_only_mask_covers_all_it_trains(tokenizer, data, tmp_path):
    unlearner = registry.create("simu_mlp_only", TWO_STEPS)
    loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=0, progress=False)
    record = json.loads(unlearner.save_artifacts(tmp_path)[1].read_text())
    assert record["mask_share_of_trained"] == 1.0 and record["parts"] == "units"
    assert record["trained_weights"] == 32 * record["counts"]["selected"]


def test_diagnostics_can_be_turned_off(tokenizer, data, tmp_path):
    unlearner = registry.create("simu", [*TWO_STEPS, "options.diagnostics=false"])
    loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=0, progress=False)
    assert [p.name for p in unlearner.save_artifacts(tmp_path)] == ["mask.safetensors"]
