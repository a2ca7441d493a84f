"""The `simu` unlearner: config, masked training on every family, frozen weights, mask reuse."""

from __future__ import annotations

import copy

import pytest
import torch

from simu_bench.data.pairing import collate
from simu_bench.errors import UserError
from simu_bench.simu import attribution
from simu_bench.simu.method import Simu
from simu_bench.unlearning import loop, registry
from simu_bench.unlearning.losses import answer_nll
from simu_bench.unlearning.registry import load_config

from simu_helpers import FAMILIES, family_model
from unlearn_helpers import tiny_data, tiny_model

STEPS = ["train.max_steps=2", "train.epochs=1", "train.grad_accum_steps=2", "optimizer.lr=1e-2", "options.t=0.4"]

class KeepOptimizer:
    """A loop callback that keeps the optimizer so the test can read its state."""

    def on_train_start(self, state):
        self.optimizer = state.optimizer


def unlearn(model, tokenizer, overrides=(), seed=0):
    unlearner = registry.create("simu", [*STEPS, *overrides])
    keep = KeepOptimizer()
    result = loop.run(unlearner, model, tokenizer, tiny_data(), seed=seed, progress=False, callbacks=(keep,))
    assert result.status == "ok", result.message
    return unlearner, result, keep.optimizer


def test_shipped_config_loads_and_is_registered():
    assert registry.get("simu") is Simu
    config = load_config("simu")
    assert config.optimizer.name == "sophiag" and config.optimizer.variant == "soul"
    assert (config.options.strategy, config.options.mode) == ("dual", "threshold")
    assert config.options.m == 3 and 0 < config.options.t <= 1  # m: the paper's 3, not searched; t: tuned
    reference = load_config("simu", reference=True)
    assert reference.optimizer.lr == 5e-6 and (reference.options.m, reference.options.t) == (3, 0.2)


@pytest.mark.parametrize("overrides, message", [
    (["options.t=0"], "options.t"), (["options.strategy=dual_neurons"], "options.strategy"),
    (["options.m=0"], "options.m"), (["options.topk=3"], "options.topk: unknown key"),
])
def test_bad_options_are_reported_before_any_model_loads(overrides, message):
    with pytest.raises(UserError, match=message):
        registry.create("simu", overrides)


def test_simu_needs_sophiag():
    with pytest.raises(UserError, match="optimizer.name: got 'adamw', expected 'sophiag'"):
        registry.create("simu", ["optimizer.name=adamw"])


@pytest.mark.parametrize("family", FAMILIES)
def test_only_attention_and_critical_units_move_and_frozen_weights_stay_bit_identical(family, tokenizer):
    model = family_model(family, tokenizer)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    unlearner, result, optimizer = unlearn(model, tokenizer)
    projections = {p.weight_name: p for p in attribution.down_projections(model)}
    selected = unlearner.mask.selected
    assert 0 < int(selected.sum()) < selected.numel()
    attention = attribution.ATTENTION[family]
    moved_units = 0
    for name, p in model.named_parameters():
        changed = p.detach() != before[name]
        if name in projections:
            projection = projections[name]
            units = selected[projection.layer]
            # (units, d_model) view: columns of a Linear, rows of GPT-2's Conv1D.
            per_unit = changed.T if projection.unit_dim == 1 else changed
            assert not per_unit[~units].any(), f"{name}: a frozen unit moved"
            moved_units += int(per_unit[units].any(dim=1).sum())
            state = optimizer.state[p]
            for key in ("exp_avg", "hessian"):
                frozen = state[key].T[~units] if projection.unit_dim == 1 else state[key][~units]
                assert not frozen.any(), f"{name}: {key} of a frozen unit is not zero"
        elif f".{attention}." in name and "norm" not in name:
            assert changed.any(), f"{name}: attention projections train in full"
        else:
            assert not changed.any(), f"{name} should be frozen"
    assert moved_units == int(selected.sum())
    summary = result.summary["mask"]
    assert summary["selected"] == int(selected.sum()) and len(summary["per_layer"]) == selected.shape[0]


def test_unlearning_raises_the_forget_loss(tokenizer):
    """With gamma = 0 the loss is pure ascent on the forget answers, through the masked weights."""
    model = tiny_model(tokenizer)
    forget = collate(tokenizer, tiny_data().forget, 512)
    with torch.no_grad():
        before = answer_nll(model, forget).item()
    unlearn(model, tokenizer, ["options.gamma=0", "train.max_steps=3", "train.epochs=3"])
    with torch.no_grad():
        assert answer_nll(model, forget).item() > before + 0.05


def test_a_saved_mask_repeats_the_run_without_attribution(tokenizer, tmp_path, monkeypatch):
    first = tiny_model(tokenizer)
    second = copy.deepcopy(first)
    unlearner, _, _ = unlearn(first, tokenizer, ["options.strategy=forget_only"])
    path, _ = unlearner.save_artifacts(tmp_path)
    assert path == tmp_path / "mask.safetensors"

    def no_attribution(*args, **kwargs):
        raise AssertionError("a loaded mask must not be recomputed")

    monkeypatch.setattr(attribution, "attribute", no_attribution)
    again, _, _ = unlearn(second, tokenizer, [f"options.mask_path={path}"])
    assert torch.equal(again.mask.selected, unlearner.mask.selected) and again.mask.strategy == "forget_only"
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters()):
        assert torch.equal(a, b), name


def test_a_mask_of_another_model_is_a_user_error(tokenizer, tmp_path):
    unlearner, _, _ = unlearn(family_model("gpt2", tokenizer), tokenizer)
    unlearner.save_artifacts(tmp_path)
    with pytest.raises(UserError, match="mask of a 'gpt2' model"):
        unlearn(tiny_model(tokenizer), tokenizer, [f"options.mask_path={tmp_path / 'mask.safetensors'}"])
