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


def test_simnpo_delta_is_inside_the_temperature_as_in_the_authors_code():
    """log sigmoid(beta * (NLL - delta)), NLL = ln 2 (OPTML-Group/Unlearn-Simple, open-unlearning).
    delta = ln 2 cancels the argument: -(2/beta) ln sigmoid(0) = (2/beta) ln 2. delta = ln 2 / 2
    leaves 4.5 * ln 2 / 2 = 2.25 ln 2: (2/4.5) ln(1 + 2^-2.25). (The convention beta * NLL - delta
    gives (2/4.5) ln(1 + 2^-3.5) and (2/4.5) ln(1 + 2^-4) here.)"""
    assert losses.simnpo(POLICY, FORGET, 4.5, LN2).item() == pytest.approx((2 / 4.5) * LN2, rel=1e-6)
    expected = (2 / 4.5) * math.log(1 + 2**-2.25)
    assert losses.simnpo(POLICY, FORGET, 4.5, LN2 / 2).item() == pytest.approx(expected, rel=1e-6)


def test_simu_npo_loss_hand_worked():
    """SIMU's class with loss: npo: forget_weight * NPO's forget term + gamma * NLL(retain).
    beta 0.1: the NPO term is 20 ln(1 + 2^0.2) (as in test_npo_hand_worked); weighted 0.5, + 3 ln 2."""
    unlearner = method("simu_npo", "options.beta=0.1", "options.forget_weight=0.5", "options.gamma=3")
    expected = 0.5 * 20 * math.log(1 + 2**0.2) + 3 * LN2
    assert unlearner.loss(POLICY, BATCH).item() == pytest.approx(expected, rel=1e-6)


def test_simu_simnpo_loss_hand_worked():
    """SIMU's class with loss: simnpo, delta = ln 2 / 2: the argument is 4.5 (ln 2 - ln 2 / 2) =
    2.25 ln 2, the term (2/4.5) ln(1 + 2^-2.25); weighted 0.125, + gamma ln 2 with gamma 1."""
    unlearner = method("simu_simnpo", "options.beta=4.5", f"options.delta={LN2 / 2}",
                       "options.forget_weight=0.125", "options.gamma=1")
    unlearner.reference = None
    expected = 0.125 * (2 / 4.5) * math.log(1 + 2**-2.25) + LN2
    assert unlearner.loss(POLICY, BATCH).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("variant, base, shared", [
    ("simu_npo", "npo", ("beta",)),
    ("simu_simnpo", "simnpo", ("beta", "delta", "forget_weight")),
])
def test_simu_over_npo_and_simnpo_keep_the_papers_loss_settings(variant, base, shared):
    """Under `reference:` only the mask (and the optimizer block) differ from NPO / SimNPO: the
    retain weight is the papers' alpha (1), not SIMU's GradDiff gamma, and the forget-term settings
    are the same. The shipped defaults are each tuned with the shared budget, and a forget-term
    setting that neither method searches stays the same in both."""
    simu = registry.load_config(variant, reference=True).options
    paper = registry.load_config(base, reference=True).options
    assert simu.gamma == paper.alpha == 1.0, variant
    assert all(getattr(simu, key) == getattr(paper, key) for key in shared), variant
    simu, paper = registry.load_config(variant), registry.load_config(base)
    fixed = [key for key in shared if f"options.{key}" not in set(simu.search) | set(paper.search)]
    assert all(getattr(simu.options, key) == getattr(paper.options, key) for key in fixed), (variant, fixed)


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


# -- bad input and the loop's contract for the new methods --------------------------------------

TWO_STEPS = ["train.max_steps=2", "train.batch_size=2", "train.grad_accum_steps=1", "train.warmup_ratio=0"]


def test_grad_ascent_runs_without_a_retain_set(tokenizer, data):
    from simu_bench.data.lume import LumeData
    from simu_bench.unlearning import loop

    from unlearn_helpers import tiny_model

    result = loop.run(registry.create("grad_ascent", TWO_STEPS), tiny_model(tokenizer), tokenizer,
                      LumeData(forget=data.forget, retain=()), seed=0, progress=False)
    assert (result.status, result.steps) == ("ok", 2), result.message


def test_a_method_with_a_retain_term_refuses_an_empty_retain_set(tokenizer, data):
    from simu_bench.data.lume import LumeData
    from simu_bench.errors import UserError
    from simu_bench.unlearning import loop

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(UserError, match=r"^npo needs a retain set .* 0 retain examples; .*grad_ascent"):
        loop.run(registry.create("npo", TWO_STEPS), model, tokenizer, LumeData(forget=data.forget, retain=()),
                 progress=False)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_a_reference_copy_that_does_not_fit_is_refused_with_its_size(tokenizer, data, monkeypatch):
    from simu_bench.errors import UserError
    from simu_bench.unlearning import loop

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer)
    size = sum(p.numel() * 4 for p in model.parameters()) / 2**30
    monkeypatch.setattr(loop, "available_memory", lambda device: 1024)
    with pytest.raises(UserError, match=rf"^npo keeps a frozen copy .* needs {size:.2f} GiB more on cpu, "
                                        r"and 0\.00 GiB is free"):
        loop.run(registry.create("npo", TWO_STEPS), model, tokenizer, data, progress=False)
    monkeypatch.setattr(loop, "available_memory", lambda device: None)  # unknown: no check
    assert loop.run(registry.create("npo", TWO_STEPS), model, tokenizer, data, progress=False).status == "ok"


def test_rmu_refuses_a_layer_out_of_range(tokenizer, data):
    from simu_bench.errors import UserError
    from simu_bench.unlearning import loop

    from unlearn_helpers import tiny_model

    with pytest.raises(UserError, match=r"options\.layer: got 5, expected a decoder layer in 0\.\.1 "
                                        r"\(the model has 2 layers\)"):
        loop.run(registry.create("rmu", ["options.layer=5", *TWO_STEPS]), tiny_model(tokenizer), tokenizer, data,
                 progress=False)


def test_a_search_range_outside_the_valid_range_is_refused():
    from simu_bench.errors import UserError

    config = {"method": "npo", "search": {"options.beta": {"uniform": [-1.0, 1.0]}}}
    expected = r"search\.options\.beta: -1\.0 is not a valid value: options\.beta: got -1\.0, expected a value > 0"
    with pytest.raises(UserError, match=expected):
        registry.load_config(config)


def rmu_at_layer_0(tokenizer, data, *overrides):
    """RMU on layer 0 of a tiny model whose reference is a copy of it; layer 0's output is the
    model's own hidden_states[1]."""
    import copy

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer)
    unlearner = registry.create("rmu", ["options.layer=0", *overrides])
    unlearner.reference = copy.deepcopy(model)
    unlearner.prepare(model, tokenizer, data)
    return unlearner, model


def layer_0(model, encoded):
    """(tokens, d_model): layer 0's output at the real tokens of ``encoded``."""
    with torch.no_grad():
        out = model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask, output_hidden_states=True)
    return out.hidden_states[1][encoded.attention_mask.bool()]


def test_rmu_loss_away_from_the_reference_is_forget_mse_plus_alpha_retain_mse(tokenizer, data):
    """After the model moves off its reference (layer 0's down projection perturbed), the loss is
    mean (h(forget) - c u)^2 + alpha * mean (h(retain) - h_ref(retain))^2, each term computed here
    from the models' own hidden states. With the paper's alpha = 1200 the two terms are of the same
    order here, so a dropped alpha, or either term's sign flipped, moves the value."""
    from simu_bench.data import pairing

    unlearner, model = rmu_at_layer_0(tokenizer, data, "options.steering_coeff=6.5", "options.alpha=1200")
    with torch.no_grad():
        down = model.model.layers[0].mlp.down_proj.weight
        down.add_(0.5 * torch.randn(down.shape, generator=torch.Generator().manual_seed(0)))
    forget, retain = pairing.collate(tokenizer, data.forget, 64), pairing.collate(tokenizer, data.retain, 64)
    forget_mse = (layer_0(model, forget) - unlearner.control).pow(2).mean().item()
    retain_mse = (layer_0(model, retain) - layer_0(unlearner.reference, retain)).pow(2).mean().item()
    assert 0.1 < 1200 * retain_mse / forget_mse < 10  # both terms weigh in
    loss = unlearner.loss(model, PairedBatch(forget, retain)).item()
    assert loss == pytest.approx(forget_mse + 1200 * retain_mse, rel=1e-5)


def test_rmu_direction_is_uniform_on_the_positive_orthant_scaled_to_c(tokenizer, data):
    """u: uniform [0, 1) coordinates, normalised, as the authors' code (a Gaussian u would have
    negative coordinates); |c u| = c."""
    unlearner, _ = rmu_at_layer_0(tokenizer, data, "options.steering_coeff=6.5")
    assert (unlearner.control >= 0).all() and unlearner.control.norm().item() == pytest.approx(6.5)


def test_rmu_c_relative_scales_c_by_the_mean_hidden_norm(tokenizer, data):
    """c_relative = 2: c = 2 * mean ||h_0|| over the forget tokens before unlearning, which
    `summary()` reports (computed here from hidden_states[1])."""
    from simu_bench.data import pairing

    unlearner, model = rmu_at_layer_0(tokenizer, data, "options.c_relative=2")
    norm = layer_0(model, pairing.collate(tokenizer, data.forget, 512)).norm(dim=-1).mean().item()
    summary = unlearner.summary()["rmu"]
    assert summary["hidden_norm"] == pytest.approx(norm, rel=1e-5)
    assert unlearner.control.norm().item() == pytest.approx(2 * norm, rel=1e-5)
    assert summary["c_over_hidden_norm"] == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("params, trained", [
    ("down_proj", ["mlp.down_proj.weight"]),
    ("mlp", ["mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]),
    ("all", ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
             "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]),
])
def test_rmu_trains_only_the_chosen_weights_of_layers_l_minus_2_to_l(tokenizer, data, params, trained):
    """Layer 1 of 2: layers 0 and 1 train; `down_proj` (the default, the authors' param_ids=[6]) the
    down projections only. Two steps change exactly those parameters."""
    import copy

    from simu_bench.unlearning import loop

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer)
    before = copy.deepcopy(model.state_dict())
    unlearner = registry.create("rmu", ["options.layer=1", f"options.params={params}", *TWO_STEPS])
    result = loop.run(unlearner, model, tokenizer, data, seed=0, progress=False)
    expected = [f"model.layers.{layer}.{name}" for layer in (0, 1) for name in trained]
    assert [name for name, _ in unlearner.parameters_to_train(model)] == expected
    changed = [name for name, p in model.state_dict().items() if not torch.equal(p, before[name])]
    assert result.status == "ok" and sorted(changed) == sorted(expected)
    assert result.summary["rmu"]["params"] == params and result.summary["rmu"]["trained_layers"] == [0, 1]


def test_rmu_defaults_are_the_authors_released_run():
    """Down projections only (param_ids=[6]) and, under `reference:`, 150 batches of 4 at layer 7."""
    from simu_bench.baselines.rmu import RmuOptions

    assert RmuOptions().params == registry.load_config("rmu").options.params == "down_proj"
    reference = registry.load_config("rmu", reference=True)
    assert (reference.options.params, reference.options.layer) == ("down_proj", 7)
    assert (reference.train.max_steps, reference.train.batch_size) == (150, 4)


CONTROLS = ("attention_only", "simu_mlp_only", "simu_forget_only")  # simu's settings, one thing changed


def test_every_method_is_tuned_with_one_budget_and_rule():
    """Each registered method other than SIMU's controls says in `tuned:` that `simu-bench tune`
    chose its searched values, all with the same trials, dev seeds, sampler and rule; and its
    top-level values are the winner's."""
    budgets = set()
    for name in registry.names():
        if name in CONTROLS:
            continue
        config = registry.load_config(name)
        tuned = config.tuned or {}
        assert tuned.get("status") == "tuned", name
        budgets.add((tuned["trials"], tuple(tuned["dev_seeds"]), tuned["rule"], tuned["sampler"]["seed"]))
        values = config.to_dict()
        for key, value in tuned["params"].items():
            section, field = key.split(".")
            assert values[section][field] == value, (name, key)
    assert len(budgets) == 1, budgets


@pytest.mark.parametrize("name", CONTROLS)
def test_simus_controls_run_with_simus_tuned_settings(name):
    """A control differs from SIMU in one thing only, so it runs with SIMU's tuned values."""
    simu, control = registry.load_config("simu"), registry.load_config(name)
    assert control.tuned["status"] == "simu's tuned settings"
    for key in simu.tuned["params"]:
        section, field = key.split(".")
        assert control.to_dict()[section][field] == simu.to_dict()[section][field], key
