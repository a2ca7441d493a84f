"""Speed of the unlearning step and of SophiaG (pytest-benchmark).

Measure with:
    pytest tests/test_bench_unlearn.py --benchmark-enable --benchmark-columns=mean,median,stddev

Targets: one step of each method through the loop (`Session.step`: two forwards, backward,
hooks, clipping, optimizer, schedule) within 10% of a bare PyTorch step (forward, backward,
AdamW step) on the same model and batch; a SophiaG step within 1.2x of an AdamW step on the
same parameters. Without --benchmark-enable each benchmark runs once as a plain test.
"""

import pytest
import torch
from unlearn_helpers import single_thread, tiny_data, tiny_model, tiny_tokenizer  # noqa: F401

from simu_bench.data import pairing
from simu_bench.unlearning import loop, registry
from simu_bench.unlearning.sophia import SophiaG

# The embedded target's shape: hidden 128, 2 layers, 512 MLP units.
SIZE = dict(hidden=128, layers=2)
SETTINGS = ["optimizer.lr=1e-5", "train.grad_accum_steps=1", "train.batch_size=4", "train.max_steps=1000000"]


@pytest.fixture(scope="module")
def setup():
    tok, data = tiny_tokenizer(), tiny_data()
    batch = pairing.PairedBatch(
        pairing.collate(tok, data.forget, 64), pairing.collate(tok, data.retain, 64), data.forget, data.retain
    )
    return tok, data, batch


def make_model(tok):
    torch.manual_seed(0)
    model = tiny_model(tok, **SIZE)
    return model


def test_bench_bare_pytorch_step(benchmark, setup):
    tok, _, batch = setup
    model = make_model(tok)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.1)
    f, r = batch.forget, batch.retain

    def step():
        forget = model(input_ids=f.input_ids, attention_mask=f.attention_mask, labels=f.labels).loss
        retain = model(input_ids=r.input_ids, attention_mask=r.attention_mask, labels=r.labels).loss
        (-forget + retain).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    benchmark.group = "unlearning step"
    benchmark(step)


@pytest.mark.parametrize("method", registry.names())
def test_bench_method_step(benchmark, setup, method):
    tok, data, batch = setup
    model = make_model(tok)
    unlearner = registry.create(method, SETTINGS)
    session = loop.Session(unlearner, model, tok, data, seed=0)
    try:
        def step():
            assert session.step([batch]) == ""

        benchmark.group = "unlearning step"
        benchmark(step)
    finally:
        session.close()


def _params_with_grads(tok):
    model = make_model(tok)
    generator = torch.Generator().manual_seed(0)
    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator) * 1e-3
    return params


@pytest.mark.parametrize("name", ["adamw", "adamw_foreach", "sophiag_soul", "sophiag_gnb"])
def test_bench_optimizer_step(benchmark, setup, name):
    params = _params_with_grads(setup[0])
    if name.startswith("adamw"):  # torch's default on CPU is the per-tensor loop
        optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1, foreach=name == "adamw_foreach")
    else:
        optimizer = SophiaG(params, lr=1e-5, weight_decay=0.1, variant=name.split("_")[1])
    optimizer.step()  # state allocated outside the measurement
    benchmark.group = "optimizer step"
    benchmark(optimizer.step)
