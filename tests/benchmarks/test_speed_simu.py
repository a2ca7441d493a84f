"""Speed of SIMU against its budget (pytest-benchmark; run once as plain tests by default).

Measure (ratios within each group are what the budget speaks of):

    pytest --benchmark-enable tests/benchmarks/test_speed_simu.py
    SIMU_BENCH_BENCHMARK_TARGET=default pytest --benchmark-enable tests/benchmarks/test_speed_simu.py

The second form measures on the embedded default benchmark (`simu_bench.target_model.cache.prepare()`,
built once and cached) instead of the small `tiny_target` of the test suite. Budgets:
- group "attribution": attribution of a set <= m x L forward + backward passes over the set;
- group "step": a SIMU optimizer step <= an SO-GradDiff step (same micro-batches);
- group "run": a whole SIMU run (attribution + unlearning) <= 1.3 x an SO-GradDiff run;
- group "diagnostics": the mask diagnostics (stability over forget halves + causal check) <= 1.2 x
  SIMU's attribution of the forget and the retain set.
"""

from __future__ import annotations

import copy
import os

import pytest

from simu_bench.data import pairing
from simu_bench.target_model.load import load_model
from simu_bench.unlearning import loop, registry
from simu_bench.unlearning.losses import answer_nll


@pytest.fixture(scope="module")
def bench_target(request):
    if os.environ.get("SIMU_BENCH_BENCHMARK_TARGET") == "default":
        from simu_bench.target_model.cache import prepare

        return prepare(progress=False)
    return request.getfixturevalue("tiny_target")


@pytest.fixture(scope="module")
def target_model(bench_target):
    return load_model(bench_target.target_dir)


@pytest.mark.benchmark(group="attribution")
def test_speed_attribution_of_the_forget_set(benchmark, bench_target, target_model):
    from simu_bench.simu.attribution import attribute

    model, tokenizer = target_model
    options = registry.create("simu").options
    scores = benchmark(attribute, model, tokenizer, bench_target.data.forget, m=options.m,
                       batch_size=options.attribution_batch_size)
    assert scores.abs().sum() > 0


@pytest.mark.benchmark(group="attribution")
def test_speed_one_forward_backward_over_the_forget_set(benchmark, bench_target, target_model):
    """The unit of the attribution budget: a training forward + backward over the same set.

    Returns the mean answer NLL of the batches and how many parameters got a gradient: the
    target has memorised its forget answers (NLL well under 0.5 nats per token) and the
    backward reaches every parameter.
    """
    model, tokenizer = target_model
    examples = bench_target.data.forget
    size = registry.create("simu").options.attribution_batch_size

    def forward_backward():
        values = []
        for start in range(0, len(examples), size):
            loss = answer_nll(model, pairing.collate(tokenizer, examples[start : start + size], 512))
            loss.backward()
            values.append(loss.item())
        reached = sum(p.grad is not None for p in model.parameters())
        model.zero_grad(set_to_none=True)
        return sum(values) / len(values), reached

    nll, reached = benchmark(forward_backward)
    assert 0 < nll < 0.5
    assert reached == len(list(model.parameters()))


def _session(method, bench_target, target_model):
    model, tokenizer = target_model
    model = copy.deepcopy(model)
    session = loop.Session(registry.create(method), model, tokenizer, bench_target.data, seed=0)
    train = session.train_cfg
    stream = pairing.batches(tokenizer, bench_target.data.forget, bench_target.data.retain, batch_size=train.batch_size,
                             max_length=train.max_length, generator=session.state.generator)
    group = [batch for _, batch in zip(range(train.grad_accum_steps), stream)]
    return session, group


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("method", ["so_graddiff", "simu"])
def test_speed_one_optimizer_step(benchmark, method, bench_target, target_model):
    session, group = _session(method, bench_target, target_model)
    try:
        assert benchmark(session.step, group) == ""
    finally:
        session.close()


@pytest.mark.benchmark(group="run")
@pytest.mark.parametrize("method", ["so_graddiff", "simu"])
def test_speed_whole_run(benchmark, method, bench_target, target_model):
    """Default config of each method; SIMU's time includes its attribution of both sets.

    As a plain test (benchmarks disabled) one epoch is enough to show that the run works.
    """
    model, tokenizer = target_model
    overrides = [] if benchmark.enabled else ["train.epochs=1"]

    def fresh():
        args = (registry.create(method, overrides), copy.deepcopy(model), tokenizer, bench_target.data)
        return args, {"progress": False}

    result = benchmark.pedantic(loop.run, setup=fresh, rounds=3 if benchmark.enabled else 1)
    assert result.status == "ok"


def _attribute_both(model, tokenizer, data, unlearner):
    from simu_bench.simu.attribution import attribute

    kwargs = unlearner._attribution_kwargs()
    return attribute(model, tokenizer, data.forget, **kwargs), attribute(model, tokenizer, data.retain, **kwargs)


@pytest.mark.benchmark(group="diagnostics")
def test_speed_simu_attribution_of_both_sets(benchmark, bench_target, target_model):
    model, tokenizer = target_model
    forget, retain = benchmark(_attribute_both, model, tokenizer, bench_target.data, registry.create("simu"))
    assert forget.abs().sum() > 0 and retain.abs().sum() > 0


@pytest.mark.benchmark(group="diagnostics")
def test_speed_mask_diagnostics(benchmark, bench_target, target_model):
    """Stability (attribution of two forget halves) and the causal check, on the default SIMU mask."""
    model, tokenizer = target_model
    unlearner = registry.create("simu", ["options.diagnostics=false"])
    unlearner.prepare(model, tokenizer, bench_target.data)
    unlearner.options.diagnostics = True
    benchmark(unlearner._diagnose, model, tokenizer, bench_target.data)
    assert unlearner.diagnostics["causal_check"]["random_draws"] == 10
