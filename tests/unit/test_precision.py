"""Training precision: SophiaG in bfloat16 exactly as SOUL's code, float32 optimizer state, and a
few unlearning steps of the tiny model in bfloat16 on CPU (`train.dtype`)."""

import pytest
import torch

from simu_bench.unlearning import loop, registry
from simu_bench.unlearning.sophia import SophiaG

LR, BETAS, RHO, WD, BS = 5e-6, (0.9, 0.95), 0.04, 0.1, 5120


def soul_step(p, g, m, h):
    """SOUL's SophiaG step for one tensor, line by line as its code writes it (arXiv 2404.18239)."""
    h.mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
    m.mul_(BETAS[0]).add_(g, alpha=1 - BETAS[0])
    p.mul_(1 - LR * WD)
    m.mul_(BETAS[0]).add_(g, alpha=1 - BETAS[0])
    ratio = (m.abs() / (RHO * BS * h + 1e-15)).clamp(None, 1)
    p.addcmul_(m.sign(), ratio, value=-LR)


def gradients(shape, steps, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(shape, generator=generator) * 1e-3).to(dtype) for _ in range(steps)]


def test_bf16_step_is_soul_line_by_line_bit_for_bit():
    """Five steps on a (64, 64) bfloat16 weight: weights, momentum and curvature equal SOUL's
    arithmetic exactly (every rounding of every operation the same), state stays bfloat16."""
    weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    param = torch.nn.Parameter(weight.clone())
    opt = SophiaG([param], lr=LR, betas=BETAS, rho=RHO, weight_decay=WD, curvature_scale=BS)
    p, m, h = weight.clone(), torch.zeros_like(weight), torch.zeros_like(weight)
    for g in gradients((64, 64), 5, torch.bfloat16):
        param.grad = g.clone()
        opt.step()
        soul_step(p, g, m, h)
        state = opt.state[param]
        assert state["exp_avg"].dtype == state["hessian"].dtype == torch.bfloat16
        assert torch.equal(state["hessian"], h) and torch.equal(state["exp_avg"], m)
        assert torch.equal(param.data, p)


def test_bf16_rounds_most_of_soul_sign_steps_away():
    """A weight of 1.0 has a bfloat16 spacing of 2^-7 = 0.0078; a step of at most lr = 5e-6 is far
    below half of it, so the weight stays 1.0 in bfloat16, while in float32 (spacing 2^-23 = 1.2e-7)
    it moves. On N(0, 1) weights most bfloat16 coordinates keep their value; every float32 one moves."""
    for dtype, moved_share in ((torch.bfloat16, lambda share: share < 0.5), (torch.float32, lambda share: share == 1)):
        weight = torch.randn(128, 128, generator=torch.Generator().manual_seed(2)).to(dtype)
        weight[0, 0] = 1.0
        param = torch.nn.Parameter(weight.clone())
        opt = SophiaG([param], lr=LR, betas=BETAS, rho=RHO, weight_decay=WD, curvature_scale=BS)
        param.grad = gradients((128, 128), 1, dtype)[0]
        opt.step()
        share = float((param.data != weight).float().mean())
        assert moved_share(share), (dtype, share)
        assert (param.data[0, 0] == 1.0) == (dtype == torch.bfloat16)


def test_float32_state_for_bf16_weights():
    """state_dtype=float32: momentum and curvature in float32 from the float32-cast gradient (the
    fused momentum form), the weight rounded once per step to bfloat16."""
    weight = torch.randn(32, 32, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    param = torch.nn.Parameter(weight.clone())
    opt = SophiaG([param], lr=1e-2, betas=BETAS, rho=RHO, weight_decay=WD, curvature_scale=BS,
                  state_dtype=torch.float32)
    p, m, h = weight.clone(), torch.zeros(32, 32), torch.zeros(32, 32)
    for g in gradients((32, 32), 3, torch.bfloat16, seed=4):
        param.grad = g.clone()
        opt.step()
        g32 = g.float()
        h.mul_(BETAS[1]).addcmul_(g32, g32, value=1 - BETAS[1])
        m.lerp_(g32, 1 - BETAS[0] ** 2)
        p.mul_(1 - 1e-2 * WD)
        p.add_((m / (RHO * BS * h + 1e-15)).clamp(-1, 1), alpha=-1e-2)
        state = opt.state[param]
        assert state["exp_avg"].dtype == state["hessian"].dtype == torch.float32
        assert param.dtype == torch.bfloat16
        torch.testing.assert_close(state["exp_avg"], m) and torch.testing.assert_close(state["hessian"], h)
        assert torch.equal(param.data, p)


@pytest.mark.parametrize("method", ["so_graddiff", "simu"])
def test_a_few_unlearning_steps_in_bf16_on_cpu(method, tiny_model_and_tokenizer, tiny_target):
    """train.dtype=bfloat16: the loop casts the model, trains three steps with finite losses,
    moves weights, and SophiaG's state is bfloat16 (SOUL); the model stays bfloat16 afterwards."""
    model, tokenizer = tiny_model_and_tokenizer  # a fresh float32 copy of the tiny target
    before = {name: p.detach().to(torch.bfloat16).clone() for name, p in model.named_parameters()}
    states = []
    overrides = ["train.dtype=bfloat16", "train.max_steps=3", "optimizer.lr=1e-2"]
    unlearner = registry.create(method, overrides)

    class Spy:
        def after_step(self, state):
            states.extend(s["exp_avg"].dtype for s in state.optimizer.state.values() if "exp_avg" in s)

    result = loop.run(unlearner, model, tokenizer, tiny_target.data, seed=0, progress=False, callbacks=[Spy()])
    assert result.status == "ok" and result.steps == 3
    assert all(torch.isfinite(torch.tensor(loss)) for loss in result.losses)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert states and set(states) == {torch.bfloat16}
    assert any(not torch.equal(p.detach(), before[name]) for name, p in model.named_parameters())


def test_reference_settings_train_in_bf16_and_defaults_in_float32():
    for method in ("fo_graddiff", "so_graddiff", "simu"):
        assert registry.load_config(method).train.dtype == "float32"
        assert registry.load_config(method, reference=True).train.dtype == "bfloat16"
    assert registry.load_config("so_graddiff", ["optimizer.state_dtype=float32"]).optimizer.state_dtype == "float32"


def test_run_dtype_flags_are_recorded_and_evaluation_casts(tiny_target, tmp_path, monkeypatch):
    """`run --dtype bfloat16 --eval-dtype float32`: each method trains in bfloat16 (train.dtype in
    its config), every run is evaluated in float32 (the model is cast back before evaluating),
    the dtypes are in each config.json and in the leaderboard's header."""
    import json

    from simu_bench.cli import main
    from simu_bench.evaluation.evaluator import EvalResult
    from simu_bench.pipeline import execute

    seen = []

    def fake_evaluate(model, tokenizer, data, plan, **kwargs):
        seen.append(next(model.parameters()).dtype)
        parts = {split: {task: {"regurgitation": 0.5, "knowledge": 0.5} for task in ("Task1", "Task2", "Task3")}
                 for split in ("forget", "retain")}
        return EvalResult(parts, 0.5, {"auc": 0.5, "score": 1.0}, {"name": "world_facts", "value": 0.5}, 2 / 3)

    monkeypatch.setattr(execute, "evaluate_model", fake_evaluate)
    out = tmp_path / "runs"
    args = ["run", "--methods", "so_graddiff", "--out", str(out), "--data", str(tiny_target.data_dir), "--model",
            str(tiny_target.target_dir), "--set", "train.max_steps=1", "--quiet", "--dtype", "bfloat16",
            "--eval-dtype", "float32"]
    assert main(args) == 0
    config = json.loads((out / "so_graddiff" / "seed0" / "config.json").read_text())["config"]
    assert config["unlearn"]["train"]["dtype"] == "bfloat16" and config["evaluation"]["dtype"] == "float32"
    assert json.loads((out / "target" / "config.json").read_text())["config"]["evaluation"]["dtype"] == "float32"
    assert len(seen) >= 2 and set(seen) == {torch.float32}  # the target's and the method's evaluations
    board = (out / "leaderboard.md").read_text()
    assert "Precision: unlearning in bfloat16; the target evaluated in float32" in board
    assert "--dtype bfloat16 --eval-dtype float32" in board


def test_mmlu_is_five_shot_by_default_and_named_with_its_shots(monkeypatch):
    """--utility-tasks mmlu runs lm-eval's mmlu with 5 few-shot examples (the official final
    score's MMLU); `mmlu:0` overrides; other tasks default to 0 shots; the name carries the count."""
    from simu_bench.errors import UserError
    from simu_bench.evaluation import harness

    calls = []

    def fake_run_tasks(lm, names, data_dir, limit, gen_kwargs=None, num_fewshot=None):
        calls.append((names, num_fewshot))
        return {"results": {names[0]: {"acc,none": 0.25 if names[0] == "mmlu" else 0.75}}}

    monkeypatch.setattr(harness, "run_tasks", fake_run_tasks)
    utility = harness.external_utility(None, ["mmlu"], "", None, 16)
    assert calls == [(["mmlu"], 5)] and utility == {"name": "mmlu (5-shot)", "value": 0.25}
    calls.clear()
    utility = harness.external_utility(None, ["mmlu:0", "arc_easy"], "", None, 16)
    assert calls == [(["mmlu"], 0), (["arc_easy"], 0)]
    assert utility == {"name": "mmlu (0-shot)+arc_easy (0-shot)", "value": 0.5}
    with pytest.raises(UserError, match="mmlu:five"):
        harness.utility_task("mmlu:five")
