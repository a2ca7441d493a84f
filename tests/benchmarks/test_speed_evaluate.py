"""Speed of `evaluate` against the official scorer's batch-size-1 loop (pytest-benchmark).

Measure with:
    pytest tests/benchmarks/test_speed_evaluate.py --benchmark-enable --benchmark-columns=mean,median,rounds

Both sides do the same work on the same model and data: a greedy generation for every
forget / retain / world-facts row (up to 256 new tokens, EOS only) and the NLL of every MIA
document. The official loop (`eval_helpers.official_evaluation`) makes one unpadded
`generate` per row and one forward per document; `evaluate` batches both through lm-eval.
Goal: `evaluate` at least 5x faster, with identical generations. Without --benchmark-enable
each benchmark runs once as a plain test, which checks the agreement.
"""

from __future__ import annotations

import pytest

from simu_bench.evaluation.evaluator import evaluate

from eval_helpers import official_evaluation


@pytest.fixture(scope="module")
def target(tiny_target):
    from simu_bench.target_model.load import load_model

    model, tokenizer = load_model(tiny_target.target_dir)
    return model, tokenizer, tiny_target.data


@pytest.mark.slow
def test_speed_evaluate_batched(benchmark, target):
    model, tokenizer, data = target
    benchmark.group = "evaluate: tiny target"
    result = benchmark(evaluate, model, tokenizer, data)
    # Agreement with the official loop: every generation identical, every score equal.
    generations, official = official_evaluation(model, tokenizer, data)
    examples = [e for split in ("forget", "retain", "utility") for e in data.split(split)]
    reference = {(e.split, e.id): g for e, g in zip(examples, generations)}
    identical = sum(s["generation"] == reference[(s["split"], s["id"])] for s in result.samples)
    benchmark.extra_info["identical_generations"] = identical / len(examples)
    assert identical == len(examples) == len(result.samples)
    ours = result.to_dict()
    assert ours["components"] == official["components"]
    assert ours["task_aggregate"] == official["task_aggregate"] and ours["utility"] == official["utility"]
    assert ours["mia"]["auc"] == official["mia"]["auc"]


@pytest.mark.slow
def test_speed_official_loop(benchmark, target):
    """The baseline: one generation per row, scored by `simu_bench.evaluation.scoring`. On the
    memorised target it must see what `evaluate` sees: every forget answer remembered (so each
    forget component is near 1) and members far more likely than non-members (AUC near 1)."""
    model, tokenizer, data = target
    benchmark.group = "evaluate: tiny target"
    generations, metrics = benchmark(official_evaluation, model, tokenizer, data)
    assert len(generations) == len(data.forget) + len(data.retain) + len(data.utility)
    forget = [value for kinds in metrics["components"]["forget"].values() for value in kinds.values()]
    assert len(forget) == 6 and min(forget) >= 0.9
    assert metrics["mia"]["auc"] >= 0.9
