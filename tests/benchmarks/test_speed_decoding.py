"""Speed of early-decided decoding against the official full decode (pytest-benchmark).

Measure with:
    pytest tests/benchmarks/test_speed_decoding.py --benchmark-enable --benchmark-columns=mean,median,rounds

Generation and scoring only (no MIA documents), on the tiny memorised target ("healthy": it
answers and stops at EOS) and on a model of the same shape with random weights ("collapsed": it
never emits EOS, like an over-unlearned model). Per model, the ratio of the two groups' means is
what question rows that stop once decided save. Without --benchmark-enable each benchmark runs
once as a plain test, which checks that both decodes give the same scores.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from simu_bench.evaluation.evaluator import evaluate


@pytest.fixture(scope="module")
def models(tiny_target):
    import torch
    from transformers import OlmoForCausalLM

    from simu_bench.target_model.load import load_model

    healthy, tokenizer = load_model(tiny_target.target_dir)
    torch.manual_seed(0)
    collapsed = OlmoForCausalLM(healthy.config).eval()
    collapsed.generation_config = healthy.generation_config
    rows = replace(tiny_target.data, member=(), nonmember=())
    return {"healthy": healthy, "collapsed": collapsed}, tokenizer, rows


@pytest.mark.slow
@pytest.mark.parametrize("which", ["collapsed", "healthy"])
@pytest.mark.parametrize("early_stop", [False, True], ids=["official", "early-stop"])
def test_speed_generation(benchmark, models, which, early_stop):
    by_name, tokenizer, rows = models
    benchmark.group = f"generation: {which} model"
    result = benchmark.pedantic(evaluate, (by_name[which], tokenizer, rows), {"early_stop": early_stop},
                                rounds=3, iterations=1)
    reference = evaluate(by_name[which], tokenizer, rows) if early_stop else result
    assert [s["score"] for s in result.samples] == [s["score"] for s in reference.samples]
