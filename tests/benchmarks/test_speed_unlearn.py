"""Speed of the unlearning step and of SophiaG (pytest-benchmark).

Measure with:
    pytest tests/benchmarks/test_speed_unlearn.py --benchmark-enable --benchmark-columns=mean,median,stddev

Each method's step time as a ratio to FO-GradDiff's (group "unlearning step") is the figure
to watch: <= 2.2x for methods with a frozen reference model (one more forward per
micro-batch: npo, idk_dpo, rmu, simu_npo), <= 1.3x for the others.

Targets: one step of each method through the loop (`Session.step`: two forwards, backward,
hooks, clipping, optimizer, schedule) within 10% of a bare PyTorch step (forward, backward,
AdamW step) on the same model and batch; a SophiaG step within 1.2x of an AdamW step on the
same parameters. Without --benchmark-enable each benchmark runs once as a plain test.
"""

import math

import pytest
import torch

from simu_bench.data import pairing
from simu_bench.unlearning import loop, losses, registry
from simu_bench.unlearning.optimizers import build_optimizer
from simu_bench.unlearning.registry import load_config

from unlearn_helpers import tiny_model

# The embedded target's shape: hidden 128, 2 layers, 512 MLP units.
SIZE = dict(hidden=128, layers=2)
SETTINGS = ["optimizer.lr=1e-5", "train.grad_accum_steps=1", "train.batch_size=4", "train.max_steps=1000000"]
LR = 1e-5


@pytest.fixture(scope="module")
def batch(tokenizer, data):
    forget, retain = pairing.collate(tokenizer, data.forget, 64), pairing.collate(tokenizer, data.retain, 64)
    return pairing.PairedBatch(forget, retain, data.forget, data.retain)


def test_speed_bare_pytorch_step(benchmark, tokenizer, batch):
    """The reference for the loop's overhead: GradDiff with gamma = 1 in plain PyTorch (the
    model's own label loss, backward, AdamW step). Before any step its loss equals
    `losses.graddiff(model, batch, 1.0)`, so both sides of the comparison do the same work."""
    model = tiny_model(tokenizer, **SIZE)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1)
    f, r = batch.forget, batch.retain

    def graddiff():
        forget = model(input_ids=f.input_ids, attention_mask=f.attention_mask, labels=f.labels).loss
        retain = model(input_ids=r.input_ids, attention_mask=r.attention_mask, labels=r.labels).loss
        return -forget + retain

    with torch.no_grad():
        assert graddiff().item() == pytest.approx(losses.graddiff(model, batch, 1.0).item(), abs=1e-5)

    def step():
        loss = graddiff()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    benchmark.group = "unlearning step"
    assert math.isfinite(benchmark(step))


# Methods that train (Selective Pruning changes the model in `prepare` and has no step).
TRAINING = [name for name in registry.names() if registry.get(name).trains]


@pytest.mark.parametrize("method", TRAINING)
def test_speed_method_step(benchmark, tokenizer, data, batch, method):
    model = tiny_model(tokenizer, **SIZE)
    unlearner = registry.create(method, SETTINGS)
    session = loop.Session(unlearner, model, tokenizer, data, seed=0)
    try:
        def step():
            assert session.step([batch]) == ""

        benchmark.group = "unlearning step"
        benchmark(step)
        assert session.state.step >= 1 and all(math.isfinite(value) for value in session.losses)
    finally:
        session.close()


# name -> (method whose optimizer block is used, overrides); torch's AdamW runs per tensor on CPU
# unless told to use its multi-tensor (foreach) kernels.
OPTIMIZERS = {
    "adamw": ("fo_graddiff", []),
    "adamw_foreach": ("fo_graddiff", []),
    "sophiag_soul": ("so_graddiff", ["optimizer.variant=soul"]),
    "sophiag_gnb": ("so_graddiff", ["optimizer.variant=gnb"]),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_speed_optimizer_step(benchmark, tokenizer, name):
    """Each optimizer as a method config builds it (`build_optimizer`), on random gradients.

    Every parameter moves and stays finite. SophiaG clips each coordinate's update to at most
    lr per step (weight decay adds lr * 0.1 * |theta|, float32 rounding a little more): after
    n steps no coordinate has moved more than 1.5 * n * lr.
    """
    method, overrides = OPTIMIZERS[name]
    config = load_config(method, [f"optimizer.lr={LR}", "optimizer.weight_decay=0.1", *overrides]).optimizer
    model = tiny_model(tokenizer, **SIZE)
    generator = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    optimizer = build_optimizer(config, list(model.named_parameters()))
    if name.startswith("adamw"):
        for group in optimizer.param_groups:
            group["foreach"] = name == "adamw_foreach"
    optimizer.step()  # state allocated outside the measurement
    before = [p.detach().clone() for p in params]
    calls = 0

    def step():
        nonlocal calls
        calls += 1
        optimizer.step()

    benchmark.group = "optimizer step"
    benchmark(step)
    moved = [float((p.detach() - b).abs().max()) for p, b in zip(params, before)]
    assert all(0 < m < math.inf for m in moved)
    if name.startswith("sophiag"):
        assert max(moved) <= 1.5 * calls * LR


@pytest.mark.parametrize("passes", ["separate", "joint"])
def test_speed_graddiff_forward_backward(benchmark, tokenizer, batch, passes):
    """GradDiff's forward and backward on one micro-batch: one forward per split (the loss as it
    was computed before) against one padded forward over forget and retain together
    (`losses.joint_nll`). The ratio of the group's means is the joint pass's saving per
    micro-batch; both sides give the same loss to float rounding."""
    model = tiny_model(tokenizer, **SIZE)
    model.train()

    def separate():
        return -losses.answer_nll(model, batch.forget) + losses.answer_nll(model, batch.retain)

    compute = separate if passes == "separate" else (lambda: losses.graddiff(model, batch, 1.0))

    def step():
        loss = compute()
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss.item()

    benchmark.group = "graddiff forward + backward"
    assert benchmark(step) == pytest.approx(separate().item(), abs=1e-5)
