"""The unlearning loop: pairing, hooks, schedule, determinism, golden losses, divergence guard."""

import math

import pytest
import torch

from simu_bench.data import pairing
from simu_bench.unlearning import loop, losses, registry
from simu_bench.unlearning.registry import load_config
from simu_bench.unlearning.unlearner import Unlearner

from unlearn_helpers import tiny_model

FAST = ["train.epochs=2", "train.grad_accum_steps=2", "train.batch_size=1", "optimizer.lr=1e-3"]


# -- pairing ---------------------------------------------------------------------------------


def test_labels_cover_answer_and_eos_only(tokenizer, data):
    example = data.forget[0]
    enc = pairing.collate(tokenizer, [example, data.forget[1]], max_length=64)
    prompt = tokenizer(example.input)["input_ids"]
    answer = tokenizer(" " + example.output, add_special_tokens=False)["input_ids"]
    n = len(prompt) + len(answer) + 1
    assert enc.input_ids[0, :n].tolist() == prompt + answer + [tokenizer.eos_token_id]
    assert enc.labels[0, : len(prompt)].tolist() == [-100] * len(prompt)
    assert enc.labels[0, len(prompt) : n].tolist() == answer + [tokenizer.eos_token_id]
    # right padding: pad ids, attention 0, labels -100 after the text
    assert enc.attention_mask[0].tolist() == [1] * n + [0] * (enc.input_ids.shape[1] - n)
    assert (enc.labels[0, n:] == -100).all() and (enc.input_ids[0, n:] == tokenizer.pad_token_id).all()
    assert tokenizer.decode(enc.input_ids[0, :n]) == f"{example.input} {example.output}<|endoftext|>"


def test_tokenisation_matches_the_targets_training(tiny_target):
    """Unlearning sees exactly the ids the target memorised, with the prompt masked out."""
    from transformers import AutoTokenizer

    from simu_bench.target_model import finetune

    tokenizer = AutoTokenizer.from_pretrained(tiny_target.target_dir)
    examples = tiny_target.data.forget + tiny_target.data.retain
    trained = finetune.encode_rows(tokenizer, [dict(input=e.input, output=e.output) for e in examples], 512)
    for example, (ids, answer_start) in zip(examples, trained):
        got_ids, labels = pairing.encode_example(tokenizer, example, 512)
        assert got_ids == ids
        assert labels == [-100] * answer_start + ids[answer_start:]


def test_pairing_is_seeded_and_uses_every_retain_example_once(data):
    pairs = pairing.pair(data.forget, data.retain, torch.Generator().manual_seed(7))
    again = pairing.pair(data.forget, data.retain, torch.Generator().manual_seed(7))
    assert pairs == again
    assert sorted(f.id for f, _ in pairs) == sorted(e.id for e in data.forget)
    assert sorted(r.id for _, r in pairs) == sorted(e.id for e in data.retain)
    others = {tuple(pairing.pair(data.forget, data.retain, torch.Generator().manual_seed(s))) for s in range(5)}
    assert len(others) > 1


def test_answer_nll_is_the_mean_over_answer_tokens(tokenizer, data):
    model = tiny_model(tokenizer)
    enc = pairing.collate(tokenizer, data.forget[:2], max_length=64)
    logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = []
    for b in range(2):
        for t in range(1, enc.input_ids.shape[1]):
            if enc.labels[b, t] != -100:
                picked.append(-logp[b, t - 1, enc.labels[b, t]])
    torch.testing.assert_close(losses.answer_nll(model, enc), torch.stack(picked).mean())


# -- the loop --------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.events, self.lrs = [], []

    def on_train_start(self, state):
        self.events.append("start")

    def before_step(self, state):
        assert any(p.grad is not None for p in state.model.parameters())
        self.events.append("before")
        self.lrs.append(state.optimizer.param_groups[0]["lr"])

    def after_step(self, state):
        assert all(p.grad is None for p in state.model.parameters())
        self.events.append(f"after{state.step}")

    def on_train_end(self, state):
        self.events.append("end")


def test_hooks_schedule_and_step_count(tokenizer, data):
    # 4 forget examples, batch 1 x accumulation 3 -> 2 steps per epoch (3 + 1), 3 epochs.
    config = load_config("fo_graddiff", ["train.epochs=3", "train.grad_accum_steps=3", "train.warmup_ratio=0.5"])
    recorder = Recorder()
    model = tiny_model(tokenizer)
    unlearner = registry.get("fo_graddiff")(config)
    result = loop.run(unlearner, model, tokenizer, data, seed=0, progress=False, callbacks=[recorder])
    assert result.status == "ok" and result.steps == 6 == len(result.losses)
    assert recorder.events == ["start"] + [e for i in range(1, 7) for e in ("before", f"after{i}")] + ["end"]
    peak = config.optimizer.lr  # warm-up over 3 of 6 steps, then linear decay to 0
    expected = [0, peak / 3, 2 * peak / 3, peak, 2 * peak / 3, peak / 3]
    assert recorder.lrs == pytest.approx(expected)
    assert not model.training and all(p.requires_grad for p in model.parameters())


def test_max_steps_caps_the_run(tokenizer, data):
    config = load_config("fo_graddiff", FAST + ["train.max_steps=3"])
    unlearner = registry.get("fo_graddiff")(config)
    result = loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=0, progress=False)
    assert result.steps == 3 == loop.count_steps(4, config.train)


def test_stop_at_step_keeps_the_schedule_and_gives_the_full_runs_checkpoint(tokenizer, data):
    """6 steps (warm-up 3): stopping at step 2 gives the weights the 6-step run had after step 2,
    which max_steps=2 (a schedule over 2 steps) does not."""
    base = ["train.epochs=3", "train.grad_accum_steps=3", "train.warmup_ratio=0.5"]
    seen = {}

    class Snapshot:
        def after_step(self, state):
            if state.step == 2:
                seen.update({k: v.detach().clone() for k, v in state.model.state_dict().items()})

    def weights(overrides, callbacks=()):
        model = tiny_model(tokenizer)
        result = loop.run(registry.create("fo_graddiff", base + overrides), model, tokenizer, data, seed=0,
                          progress=False, callbacks=callbacks)
        return result, model.state_dict()

    full, _ = weights([], [Snapshot()])
    stopped, at_two = weights(["train.stop_at_step=2"])
    capped, capped_two = weights(["train.max_steps=2"])
    assert (full.steps, stopped.steps, capped.steps) == (6, 2, 2) and stopped.losses == full.losses[:2]
    assert all(torch.equal(at_two[k], seen[k]) for k in seen)
    assert not all(torch.equal(capped_two[k], seen[k]) for k in seen)


def test_a_hook_that_sets_stop_ends_the_run_after_that_step(tokenizer, data):
    class StopAtThree:
        def after_step(self, state):
            state.stop = state.step == 3

    result = loop.run(registry.create("fo_graddiff", FAST), tiny_model(tokenizer), tokenizer, data, seed=0,
                      progress=False, callbacks=[StopAtThree()])
    assert result.status == "ok" and result.steps == 3


def test_same_seed_same_run_other_seed_other_run(tokenizer, data):
    def losses_for(seed):
        unlearner = registry.create("fo_graddiff", FAST)
        return loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=seed, progress=False).losses

    assert losses_for(3) == losses_for(3)
    assert losses_for(3) != losses_for(4)


# Pinned first losses (tiny model seed 0, run seed 1234, settings pinned below so that tuning a
# YAML does not move them). A change here means the pairing, the tokenisation, the loss or the
# optimizer step changed: find out why before re-pinning.
GOLDEN = {
    "fo_graddiff": [0.009392, -0.014581, -0.149307, -0.111225],
    "so_graddiff": [6.000286, 5.982131, 5.730295, 5.822814],
}
PINNED = FAST + [
    "train.warmup_ratio=0", "train.max_grad_norm=1.0", "optimizer.weight_decay=0.1",
    "optimizer.betas=[0.9, 0.95]", "optimizer.rho=0.04", "optimizer.curvature_scale=5120", "optimizer.eps=1e-8",
]
GAMMA = {"fo_graddiff": "options.gamma=1.0", "so_graddiff": "options.gamma=2.0"}


@pytest.mark.parametrize("method", sorted(GOLDEN))
def test_golden_trajectory(tokenizer, data, method):
    unlearner = registry.create(method, PINNED + [GAMMA[method]])
    result = loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=1234, progress=False)
    assert result.losses == pytest.approx(GOLDEN[method], rel=1e-4, abs=1e-5)


class Exploding(Unlearner):
    """GradDiff that produces a NaN loss from the 3rd micro-batch, or an Inf gradient."""

    def __init__(self, config, where):
        super().__init__(config)
        self.where, self.calls = where, 0

    def loss(self, model, batch):
        self.calls += 1
        value = losses.graddiff(model, batch, self.options.gamma)
        if self.where == "loss" and self.calls >= 3:
            return value * float("nan")
        return value

    def before_step(self, state):
        if self.where == "grad" and state.step == 1:
            next(iter(state.model.parameters())).grad[0, 0] = float("inf")


@pytest.mark.parametrize("where, text", [
    ("loss", "non-finite loss (nan) at step 2"), ("grad", "non-finite gradient norm (inf) at step 2"),
])
def test_divergence_guard_stops_with_status_and_keeps_the_model(tokenizer, data, where, text):
    config = load_config("fo_graddiff", FAST)
    model = tiny_model(tokenizer)
    snapshots = []

    class Snapshot:
        def after_step(self, state):
            snapshots.append({n: p.detach().clone() for n, p in state.model.named_parameters()})

    result = loop.run(Exploding(config, where), model, tokenizer, data, seed=0, progress=False, callbacks=[Snapshot()])
    assert result.status == "diverged" and text in result.message and result.message.startswith("fo_graddiff: ")
    assert result.steps == 1 and len(result.losses) == 1 and math.isfinite(result.losses[0])
    # the model is exactly as after step 1: the bad step never reached the optimizer
    assert all(torch.equal(p, snapshots[-1][n]) for n, p in model.named_parameters())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_gnb_curvature_refresh_every_k_steps(tokenizer, data):
    gnb = ["optimizer.variant=gnb", "optimizer.hessian_interval=2", "train.epochs=3"]
    unlearner = registry.create("so_graddiff", FAST + gnb)
    calls = []

    class Spy:
        def on_train_start(self, state):
            original = state.optimizer.update_hessian

            def counted():
                calls.append(state.step)
                original()

            state.optimizer.update_hessian = counted

    result = loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=0, progress=False, callbacks=[Spy()])
    assert result.status == "ok" and result.steps == 6 and calls == [2, 4, 6]


def test_gnb_curvature_uses_every_micro_batch_and_counts_their_answer_tokens(tokenizer, data):
    """One refresh after step 1 of 2 micro-batches (forget + retain parts each): the sampled-label
    loss is the mean over all 4 parts' answer tokens (each part's mean weighted by its share),
    and curvature_scale becomes that token count B (Sophia's bs: the tokens behind one gradient)."""
    gnb = ["optimizer.variant=gnb", "optimizer.hessian_interval=1", "train.max_steps=1"]
    unlearner = registry.create("so_graddiff", FAST + gnb)
    seen = {}

    class Spy:
        def after_step(self, state):  # runs after the refresh (optimizer hooks come first)
            seen["parts"] = [part for batch in state.group for part in batch.parts()]
            seen["scale"] = {group["curvature_scale"] for group in state.optimizer.param_groups}

    loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=0, progress=False, callbacks=[Spy()])
    tokens = [int((part.labels[:, 1:] != -100).sum()) for part in seen["parts"]]
    assert len(tokens) == 4 and min(tokens) > 0
    assert seen["scale"] == {float(sum(tokens))}
