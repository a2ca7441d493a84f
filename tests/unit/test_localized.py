"""The localized methods: WAGLE's weight mask, Selective Pruning, and SIMU's random and soft masks."""

import json
import math

import pytest
import torch

from simu_bench.data import pairing
from simu_bench.errors import UserError
from simu_bench.simu.masks import CriticalMask, soft_weights
from simu_bench.unlearning import loop, losses, registry

from unlearn_helpers import tiny_model

TWO_STEPS = ["train.max_steps=2", "train.batch_size=2", "train.grad_accum_steps=1", "train.warmup_ratio=0"]


def test_soft_weights_hand_worked():
    """Layer scores s_f = [2, 1, -1, 0.5], max 2; selected units 0, 1; unit 1 is dual (also in C_r).
    w = [2/2, (1/2) * 0.5, 0, 0] = [1, 0.25, 0, 0]: unselected units get 0 whatever their score."""
    mask = CriticalMask(
        selected=torch.tensor([[True, True, False, False]]),
        forget_critical=torch.tensor([[True, True, False, False]]),
        retain_critical=torch.tensor([[False, True, True, False]]),
        strategy="dual", mode="threshold", t=0.4, m=3, family="olmo",
        scores={"forget": torch.tensor([[2.0, 1.0, -1.0, 0.5]])},
    )
    assert soft_weights(mask, 0.5).tolist() == [[1.0, 0.25, 0.0, 0.0]]


def simu_t() -> str:
    """simu's threshold as an override: each method's tuned t differs, and these tests compare masks
    chosen at the same t (what differs is how units are chosen or used, not how many)."""
    return f"options.t={registry.load_config('simu').options.t!r}"


def run(method, tokenizer, data, *overrides, seed=0):
    model = tiny_model(tokenizer)
    unlearner = registry.create(method, [*TWO_STEPS, *overrides])
    result = loop.run(unlearner, model, tokenizer, data, seed=seed, progress=False)
    assert result.status == "ok", result.message
    return unlearner, model, result


def test_random_mask_keeps_simu_counts_per_layer_and_saves_simu_format(tokenizer, data, tmp_path):
    simu, _, _ = run("simu", tokenizer, data)
    control, _, result = run("random_mask", tokenizer, data, "options.mask_seed=3", simu_t())
    again, _, _ = run("random_mask", tokenizer, data, "options.mask_seed=3", simu_t())
    other, _, _ = run("random_mask", tokenizer, data, "options.mask_seed=4", simu_t())
    assert control.mask.selected.sum(dim=1).tolist() == simu.mask.selected.sum(dim=1).tolist()
    assert torch.equal(control.mask.forget_critical, simu.mask.forget_critical)  # comparable unit by unit
    assert torch.equal(control.mask.selected, again.mask.selected)
    assert not torch.equal(control.mask.selected, other.mask.selected)
    path, diagnosed = control.save_artifacts(tmp_path)
    loaded = CriticalMask.load(path)
    assert loaded.selection == "random" and torch.equal(loaded.selected, control.mask.selected)
    assert result.summary["mask"]["selection"] == "random"
    assert diagnosed.name == "mask.json" and json.loads(diagnosed.read_text())["selection"] == "random"


def test_random_mask_draws_from_the_run_seed_when_unseeded(tokenizer, data):
    first, _, _ = run("random_mask", tokenizer, data, seed=0)
    second, _, _ = run("random_mask", tokenizer, data, seed=1)
    assert first.mask.selected.sum() == second.mask.selected.sum()
    assert not torch.equal(first.mask.selected, second.mask.selected)


def test_simu_soft_scales_the_down_projection_update_by_the_attribution(tokenizer, data):
    unlearner, _, _ = run("simu_soft", tokenizer, data)
    weights = soft_weights(unlearner.mask, unlearner.options.dual_factor)
    (weight, units), *_ = unlearner._unit_masks
    assert units.dtype == torch.float32 and torch.equal(units.flatten(), weights[0])
    assert 0 < units.max() <= 1 and (units[~unlearner.mask.selected[0].view(1, -1)] == 0).all()


def test_wagle_score_hand_worked_mu_1e_6_picks_the_retain_driven_weight():
    """Four weights, theta = (1, 0.01, 0.5, 0.02), g_f = (1, 1, 1, 1), g_r = (0, 1e-3, 0, 2e-8);
    keep one. |theta * g_f| = (1, 0.01, 0.5, 0.02) keeps weight 0. With mu = 1e-6, g_r / mu =
    (0, 1000, 0, 0.02) and theta - g_r / mu = (1, -999.99, 0.5, 0): scores (1, 999.99, 0.5, 0)
    keep weight 1, the one the retain gradient ties to the forget gradient (theta + g_r / mu would
    give 1000.01 and 0.04). With mu = 1/lr = 133 (lr 7.54e-3) g_r / mu is 7.5e-6 at most and
    weight 0 is kept."""
    from simu_bench.baselines.wagle import global_top, weight_scores

    theta, g_f, g_r = torch.tensor([1.0, 0.01, 0.5, 0.02]), torch.ones(4), torch.tensor([0.0, 1e-3, 0.0, 2e-8])
    (scores,) = weight_scores([theta.double()], [g_f.double()], [g_r.double()], 1e-6)
    assert scores.tolist() == pytest.approx([1.0, 999.99, 0.5, 0.0], rel=1e-6, abs=1e-6)
    assert global_top([scores], 1 / 4)[0].tolist() == [False, True, False, False]
    (old_rule,) = global_top(weight_scores([theta], [g_f], [g_r], 1 / 7.54e-3), 1 / 4)
    assert old_rule.tolist() == [True, False, False, False]


def wagle_gradients(model, tokenizer, data, batch_size):
    """The decoder matrices and g_f, g_r summed over batches of ``batch_size``, by hand."""
    named = [(n, p) for n, p in model.named_parameters() if n.startswith("model.layers.") and p.ndim >= 2]
    params = [p for _, p in named]

    def summed(rows):
        total = [torch.zeros_like(p) for p in params]
        for start in range(0, len(rows), batch_size):
            batch = pairing.collate(tokenizer, rows[start : start + batch_size], 512)
            for into, grad in zip(total, torch.autograd.grad(losses.answer_nll(model, batch), params)):
                into += grad
        return total

    return named, summed(list(data.forget)), summed(list(data.retain))


def top_masks(named, g_f, g_r, mu, fraction):
    scores = [((p.detach() - r / mu) * f).abs() for (_, p), f, r in zip(named, g_f, g_r)]
    flat = torch.cat([s.flatten() for s in scores])
    cut = flat.sort(descending=True).values[math.ceil(fraction * flat.numel()) - 1]
    return {n: s >= cut for (n, _), s in zip(named, scores)}


def test_wagle_sums_the_gradients_over_batches_and_keeps_the_global_top_fraction(tokenizer, data):
    """Four one-example batches: g_f and g_r are sums of four batch gradients (the authors'
    accumulation). mu is set where theta and g_r / mu are of one order, so summing (4x) rather than
    averaging the retain gradient changes the mask: the test tells the two apart."""
    model = tiny_model(tokenizer)
    named, g_f, g_r = wagle_gradients(model, tokenizer, data, batch_size=1)
    retain = torch.cat([r.flatten() for r in g_r]).abs().median()
    mu = float(retain / torch.cat([p.detach().flatten() for _, p in named]).abs().median())
    summed, averaged = top_masks(named, g_f, g_r, mu, 0.1), top_masks(named, g_f, [r / 4 for r in g_r], mu, 0.1)
    assert any(not torch.equal(summed[n], averaged[n]) for n in summed)
    overrides = ["options.fraction=0.1", f"options.mu={mu}", "options.attribution_batch_size=1"]
    unlearner = registry.create("wagle", overrides)
    unlearner.prepare(model, tokenizer, data)
    assert list(unlearner.masks) == [n for n, _ in named]
    assert sum(int(m.sum()) for m in unlearner.masks.values()) == math.ceil(0.1 * sum(p.numel() for _, p in named))
    assert all(torch.equal(unlearner.masks[n], summed[n]) for n in summed)


def test_wagle_retain_term_changes_the_mask_at_the_authors_mu(tokenizer, data):
    """With mu = 1e-6 (the default) the mask is not the plain |theta * g_f| mask (no retain term):
    under mu = 1/lr the two were identical on the embedded target."""
    model = tiny_model(tokenizer)
    named, g_f, g_r = wagle_gradients(model, tokenizer, data, batch_size=8)
    plain = top_masks(named, g_f, [torch.zeros_like(r) for r in g_r], 1.0, 0.2)
    unlearner = registry.create("wagle", ["options.fraction=0.2"])
    assert unlearner.options.mu == 1e-6
    unlearner.prepare(model, tokenizer, data)
    both = sum(int((unlearner.masks[n] & plain[n]).sum()) for n in plain)
    either = sum(int((unlearner.masks[n] | plain[n]).sum()) for n in plain)
    assert both / either < 0.9  # Jaccard overlap


def test_wagle_ranks_every_parameter_and_trains_with_adamw_as_the_authors(tokenizer, data):
    """candidates: all ranks every parameter (embeddings, norms and the output layer too) and
    the authors' AdamW runs; masked-out gradients are zero at the step."""
    model = tiny_model(tokenizer)
    seen = {}

    class Spy:
        def on_train_start(self, state):
            seen["optimizer"] = type(state.optimizer).__name__

    unlearner = registry.create("wagle", [*TWO_STEPS, "options.candidates=all", "optimizer.name=adamw",
                                          "optimizer.lr=1e-3", "options.fraction=0.3"])
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = loop.run(unlearner, model, tokenizer, data, seed=0, progress=False, callbacks=[Spy()])
    assert result.status == "ok" and seen["optimizer"] == "AdamW"
    assert list(unlearner.masks) == list(original)
    assert result.summary["mask"]["candidate_set"] == "all"
    # The gradients were masked: a weight outside the mask moved only by weight decay (at most
    # lr * wd = 1e-4 of its value per step), never by Adam's update (about lr = 1e-3 per step).
    for name, p in model.named_parameters():
        frozen = ~unlearner.masks[name]
        moved = (p.detach() - original[name])[frozen].abs()
        assert (moved <= 2 * 1e-4 * original[name][frozen].abs() + 1e-9).all(), name


def test_selective_pruning_zeroes_the_top_ratio_units_and_trains_nothing(tokenizer, data):
    unlearner, model, result = run("selective_pruning", tokenizer, data, "options.fraction=0.1")
    assert result.steps == 0
    pruned, scores = unlearner.pruned, unlearner.scores
    assert int(pruned.sum()) == math.ceil(0.1 * pruned.numel())
    assert scores[pruned].min() >= scores[~pruned].max()
    for layer, row in enumerate(pruned):
        down = model.model.layers[layer].mlp.down_proj.weight  # (d_model, d_ff): unit j is column j
        assert (down[:, row] == 0).all() and (down[:, ~row] != 0).all()


def test_selective_pruning_prunes_the_unit_that_fires_on_forget_text_not_the_one_on_retain_text(tokenizer, data):
    """Layer 0's down-projection input is overwritten before the method's hook sees it: unit 0 is 1
    on tokens that occur only in forget text and 0 elsewhere, unit 1 the same for retain text,
    every other unit 0.5 on every token. Ratios (mean on forget / (mean on retain + 1e-5)):
    unit 0 = (share of forget-only tokens) / 1e-5, huge; unit 1 = 0 / (share + 1e-5) = 0; the
    others 1. Pruning the top one unit must take unit 0 and leave unit 1 (the inverted ratio
    would prune unit 1)."""
    model = tiny_model(tokenizer)
    forget_ids = {i for e in data.forget for i in tokenizer(e.input + e.output)["input_ids"]}
    retain_ids = {i for e in data.retain for i in tokenizer(e.input + e.output)["input_ids"]}
    only_forget = torch.tensor(sorted(forget_ids - retain_ids))
    only_retain = torch.tensor(sorted(retain_ids - forget_ids))
    assert len(only_forget) and len(only_retain)
    ids = {}
    model.get_input_embeddings().register_forward_pre_hook(lambda module, args: ids.update(current=args[0]))

    def fire(module, args):
        (x,) = args  # (batch, seq, d_ff)
        x = torch.full_like(x, 0.5)
        x[..., 0] = torch.isin(ids["current"], only_forget).float()
        x[..., 1] = torch.isin(ids["current"], only_retain).float()
        return (x,)

    down = model.model.layers[0].mlp.down_proj
    down.register_forward_pre_hook(fire)
    units = sum(layer.mlp.down_proj.in_features for layer in model.model.layers)
    unlearner = registry.create("selective_pruning", [f"options.fraction={1 / units}"])
    unlearner.prepare(model, tokenizer, data)
    assert unlearner.pruned.sum() == 1 and unlearner.pruned[0, 0] and not unlearner.pruned[0, 1]
    assert (down.weight[:, 0] == 0).all() and (down.weight[:, 1] != 0).all()


@pytest.mark.parametrize("method", ["simu_npo", "simu_simnpo"])
def test_simu_over_other_losses_keeps_simu_mask(tokenizer, data, method):
    """The mask does not depend on the loss: simu_npo / simu_simnpo select SIMU's units."""
    simu, _, _ = run("simu", tokenizer, data)
    other, _, result = run(method, tokenizer, data, simu_t())
    assert torch.equal(other.mask.selected, simu.mask.selected)
    assert result.summary["loss"] == method.removeprefix("simu_")


@pytest.mark.parametrize("variant, own", [
    ("random_mask", {"selection": "attribution", "mask_seed": None}),
    ("simu_soft", {"weighting": "hard", "dual_factor": 0.5}),
    ("attention_only", {"parts": "both"}),
    ("simu_mlp_only", {"parts": "both"}),
    ("simu_forget_only", {"strategy": "dual"}),
])
def test_the_simu_variants_differ_from_simu_only_in_their_own_option(variant, own):
    """Under `reference:` every variant is simu's settings with its own option changed. The shipped
    defaults: the controls (which are not searched) are simu's tuned settings with that one change;
    random_mask and simu_soft were tuned on their own, so only the keys neither searches must agree.
    This fails when simu.yaml changes and a variant's YAML does not."""
    for reference in (False, True):
        simu_config = registry.load_config("simu", reference=reference)
        other_config = registry.load_config(variant, reference=reference)
        simu, other = simu_config.to_dict(), other_config.to_dict()
        other["method"] = "simu"
        other["options"].update(own)
        if not reference and other_config.tuned.get("status") == "tuned":  # its searched keys are its own
            for key in set(simu_config.search) | set(other_config.search):
                section, name = key.split(".")
                other[section][name] = simu[section][name]
        assert other == simu, (variant, reference)


def changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def run_from(method, tokenizer, data):
    model = tiny_model(tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    unlearner = registry.create(method, TWO_STEPS)
    result = loop.run(unlearner, model, tokenizer, data, seed=0, progress=False)
    assert result.status == "ok", result.message
    return unlearner, model, before


def test_attention_only_trains_attention_and_no_down_projection_column(tokenizer, data):
    unlearner, model, before = run_from("attention_only", tokenizer, data)
    moved = changed(model, before)
    attention = {n for n in before if ".self_attn." in n and n.endswith("_proj.weight")}
    assert unlearner.mask is None and moved == attention


def test_simu_mlp_only_trains_simu_columns_and_no_attention_weight(tokenizer, data):
    simu, _, _ = run("simu", tokenizer, data)
    unlearner, model, before = run_from("simu_mlp_only", tokenizer, data)
    assert torch.equal(unlearner.mask.selected, simu.mask.selected)
    assert changed(model, before) == {f"model.layers.{layer}.mlp.down_proj.weight"
                                      for layer, row in enumerate(simu.mask.selected) if row.any()}
    for layer, row in enumerate(simu.mask.selected):
        down, old = model.model.layers[layer].mlp.down_proj.weight, before[f"model.layers.{layer}.mlp.down_proj.weight"]
        assert torch.equal(down[:, ~row], old[:, ~row]) and not torch.equal(down[:, row], old[:, row])


def test_simu_forget_only_selects_forget_critical_minus_retain_critical(tokenizer, data):
    unlearner, _, _ = run("simu_forget_only", tokenizer, data)
    mask = unlearner.mask
    assert mask.dual.any(), "the tiny data must have dual units for this test to tell the strategies apart"
    assert torch.equal(mask.selected, mask.forget_critical & ~mask.retain_critical)


def test_simu_mlp_only_refuses_a_mask_without_units(tokenizer, data):
    unlearner = registry.create("simu_mlp_only", TWO_STEPS)
    model = tiny_model(tokenizer)
    unlearner.prepare(model, tokenizer, data)
    unlearner.mask.selected[:] = False
    with pytest.raises(UserError, match="selects no MLP unit"):
        unlearner.parameters_to_train(model)


def test_wagle_trains_with_simu_settings_where_neither_is_searched():
    """WAGLE's optimizer and schedule are simu's, except the keys each tuned on its own."""
    simu_config, wagle_config = registry.load_config("simu"), registry.load_config("wagle")
    simu, wagle = simu_config.to_dict(), wagle_config.to_dict()
    searched = set(simu_config.search) | set(wagle_config.search)
    for section in ("optimizer", "train"):
        for name, value in simu[section].items():
            if f"{section}.{name}" not in searched:
                assert wagle[section][name] == value, (section, name)


def test_wagle_reference_is_the_authors_tofu_config():
    """configs/unlearn/Tofu/GradDiff+WAGLE.json: AdamW lr 7e-6, kept share 0.95, mu 1e-6, gamma 1,
    every parameter ranked."""
    config = registry.load_config("wagle", reference=True)
    assert (config.optimizer.name, config.optimizer.lr, config.optimizer.weight_decay) == ("adamw", 7e-6, 0.1)
    options = config.options
    assert (options.fraction, options.mu, options.gamma, options.candidates) == (0.95, 1e-6, 1.0, "all")
