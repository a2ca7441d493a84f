"""Cost of the MIA suite and of the relearning attack (pytest-benchmark; run once as plain tests by default).

    pytest tests/benchmarks/test_speed_attacks.py --benchmark-enable --benchmark-columns=mean,median,rounds

Budgets ("is it forgotten or hidden?"): the suite adds at most 30% to an evaluation, and
relearning for 20 steps costs at most one unlearning run. Compare within each group:
`mia: official` (the loss attack alone: `document_nll` of members and non-members) against
`mia: suite` (every attack from the same forward pass), both next to `evaluate` of
`test_speed_evaluate.py`; `relearn` against `unlearn` on the same tiny target.
"""

from __future__ import annotations

import pytest

from simu_bench.evaluation import scoring
from simu_bench.evaluation.evaluator import evaluate
from simu_bench.evaluation.mia import ATTACKS, document_nll, membership_inference, reference_nll
from simu_bench.evaluation.relearn import relearn
from simu_bench.unlearning import loop, registry


@pytest.fixture(scope="module")
def target(tiny_target):
    from simu_bench.target_model.load import load_model

    model, tokenizer = load_model(tiny_target.target_dir)
    return model, tokenizer, tiny_target.data


def test_speed_mia_official(benchmark, target):
    model, tokenizer, data = target
    benchmark.group = "mia: tiny target"

    def official():
        member = document_nll(model, tokenizer, [d.text for d in data.member], 64)
        nonmember = document_nll(model, tokenizer, [d.text for d in data.nonmember], 64)
        return scoring.mia_auc(member, nonmember)

    auc = benchmark(official)
    assert auc >= 0.9  # the memorised target: members far likelier than non-members


def test_speed_mia_suite(benchmark, target):
    model, tokenizer, data = target
    benchmark.group = "mia: tiny target"
    ref = reference_nll(model, tokenizer, data.member, data.nonmember, 64)
    result = benchmark(membership_inference, model, tokenizer, data.member, data.nonmember, 64, ref)
    assert list(result["attacks"]) == list(ATTACKS)
    assert result["attacks"]["loss"]["auc"] == result["auc"] >= 0.9
    assert result["attacks"]["reference"] == {"auc": 0.5, "score": 1.0}  # the model is its own reference


def test_speed_unlearn(benchmark, tiny_target):
    from simu_bench.target_model.load import load_model

    benchmark.group = "relearn vs unlearn: tiny target"

    def unlearn():
        model, tokenizer = load_model(tiny_target.target_dir)
        return loop.run(registry.create("fo_graddiff"), model, tokenizer, tiny_target.data, seed=0, progress=False)

    result = benchmark.pedantic(unlearn, rounds=1, iterations=1)
    assert result.status == "ok" and result.steps > 20


def test_speed_relearn_20_steps(benchmark, target):
    """Twenty steps and the held-out forget rows scored again (the "before" scores are given, as
    `run --relearn` gives the run's own evaluation)."""
    model, tokenizer, data = target
    benchmark.group = "relearn vs unlearn: tiny target"
    before = evaluate(model, tokenizer, data, max_new_tokens=32).samples

    def attack():
        return relearn(model, tokenizer, data, 20, lambda m, t, d: evaluate(m, t, d, max_new_tokens=32),
                       before=before)

    record = benchmark.pedantic(attack, rounds=1, iterations=1)
    assert len(record["losses"]) == 20 and record["forget_before"] >= 0.5  # the target remembers
