"""`simu_bench.evaluation.evaluator`: the task pack through lm-eval's HFLM, MIA, utility, final score.

Checked against the official scorer's own loop (one unpadded `generate` per row, one forward
per document; `eval_helpers.official_*`) on a random tiny model and on the memorised target.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import simu_bench
from simu_bench import tasks as task_pack
from simu_bench.data import synthetic
from simu_bench.data.lume import LumeData, load_lume
from simu_bench.errors import UserError
from simu_bench.evaluation import scoring
from simu_bench.evaluation.evaluator import EvalResult, evaluate

from eval_helpers import (
    official_document_nll,
    official_evaluation,
    official_generations,
    tiny_model,
    tiny_tokenizer,
)

SAMPLE_KEYS = {"id", "split", "task", "kind", "input", "expected", "generation", "score"}


@pytest.fixture(scope="module")
def random_setup(tmp_path_factory):
    """A random tiny OLMo and 3 rows per (split, task, kind) cell: prompts of many lengths, so batches pad."""
    folder = synthetic.write_dataset(tmp_path_factory.mktemp("data") / "d", synthetic.SyntheticConfig(), seed=2)
    full = load_lume(folder)
    tokenizer = tiny_tokenizer([e.input + " " + e.output for e in full.forget + full.retain + full.utility])
    return tiny_model(tokenizer, seed=1), tokenizer, full


def test_evaluate_equals_the_official_loop_and_leaves_state_alone(random_setup, capfd):
    model, tokenizer, data = random_setup
    model.train()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    pad_token = tokenizer.pad_token
    result = evaluate(model, tokenizer, data, batch_size=64, max_new_tokens=8, limit=3)

    # The caller's random state, training flag and tokenizer are as they were.
    drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    assert drawn == (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert model.training and tokenizer.pad_token == pad_token
    model.eval()
    assert capfd.readouterr().err == ""  # lm-eval's logs and progress bars are silenced

    # Generations: identical to one unpadded greedy `generate` per row, decoded the official way.
    assert all(set(sample) == SAMPLE_KEYS for sample in result.samples)
    rows = {(e.split, e.id): e for s in ("forget", "retain", "utility") for e in data.split(s)}
    examples = [rows[(s["split"], s["id"])] for s in result.samples]
    assert len(examples) == 13 * 3
    assert [s["generation"] for s in result.samples] == official_generations(model, tokenizer, examples, 8)

    # Scores: the task pack's process_results gives each kind its metric, expected answer first.
    for sample in result.samples:
        assert sample["score"] == scoring.score_row(sample["kind"], sample["expected"], sample["generation"])
    # The summary, recomputed by hand from the samples: each of the 12 components is the plain
    # mean of its 3 rows; the aggregate is 12 / sum(1 / x) over inverted forget and raw retain
    # components (0 if any is 0); the utility is the mean world-facts score.
    cells = {}
    for s in result.samples:
        if s["split"] != "utility":
            cells.setdefault((s["split"], s["task"], s["kind"]), []).append(s["score"])
    assert len(cells) == 12 and all(len(scores) == 3 for scores in cells.values())
    means = {cell: sum(scores) / 3 for cell, scores in cells.items()}
    assert {(split, task, kind): value for split, tasks in result.components.items()
            for task, kinds in tasks.items() for kind, value in kinds.items()} == pytest.approx(means)
    inputs = [1 - v if split == "forget" else v for (split, _, _), v in means.items()]
    by_hand = 0.0 if min(inputs) == 0 else len(inputs) / sum(1 / v for v in inputs)
    assert result.task_aggregate == pytest.approx(by_hand)
    world = [s["score"] for s in result.samples if s["split"] == "utility"]
    assert result.utility == {"name": "world_facts", "value": pytest.approx(sum(world) / len(world))}

    # MIA on the first 3 documents of each set, as the official loop computes NLL.
    members = official_document_nll(model, tokenizer, [d.text for d in data.member[:3]])
    nonmembers = official_document_nll(model, tokenizer, [d.text for d in data.nonmember[:3]])
    assert result.mia["member_nll"] == pytest.approx(members, abs=1e-5)
    assert result.mia["nonmember_nll"] == pytest.approx(nonmembers, abs=1e-5)
    assert result.final == pytest.approx((result.task_aggregate + result.mia["score"] + result.utility["value"]) / 3)
    metrics = json.loads(json.dumps(result.to_dict()))
    assert set(metrics) == {"components", "task_aggregate", "overall", "mia", "mia_attacks", "utility", "final"}
    # Overall (official): the mean of all 9 rows of a kind in a split; the cells have 3 rows
    # each here, so it equals the mean of the three task means.
    for split in ("forget", "retain"):
        for kind in ("regurgitation", "knowledge"):
            rows = [s["score"] for s in result.samples if (s["split"], s["kind"]) == (split, kind)]
            assert metrics["overall"][split][kind] == pytest.approx(sum(rows) / 9)
    assert set(metrics["mia"]) == {"auc", "score"}
    # The suite: no reference NLLs given, so no reference attack; `loss` is the official MIA.
    assert list(metrics["mia_attacks"]) == ["loss", "zlib", "min_k", "min_k_plus_plus"]
    assert metrics["mia_attacks"]["loss"] == metrics["mia"]


def test_utility_tasks_are_labelled_by_name_and_checked_first(random_setup):
    model, tokenizer, data = random_setup
    small = LumeData(forget=data.forget[:2], retain=data.retain[:2], utility=data.utility[:2])
    result = evaluate(model, tokenizer, small, max_new_tokens=4, utility_tasks=[task_pack.WORLD_FACTS_TASK])
    # named by the task and its shots (0 unless the task or `name:k` says otherwise)
    assert result.utility["name"] == "lume_world_facts (0-shot)" and 0.0 <= result.utility["value"] <= 1.0
    assert result.mia is None and result.final is None and "mia" not in result.to_dict()
    assert {s["split"] for s in result.samples} == {"forget", "retain"}
    with pytest.raises(UserError, match="did you mean 'lume_world_facts'"):
        evaluate(model, tokenizer, small, max_new_tokens=4, utility_tasks=["lume_world_fact"])
    with pytest.raises(UserError, match="max_new_tokens"):
        evaluate(model, tokenizer, small, max_new_tokens=0)


def test_special_tokens_are_skipped_like_the_official_decode(random_setup):
    """A model pushed to emit the pad token (a special token) at every step: the official
    decode (`skip_special_tokens=True`) turns that into empty text, and so must evaluate."""
    _, tokenizer, data = random_setup
    model = tiny_model(tokenizer, seed=1)
    model.generation_config.sequence_bias = {(tokenizer.pad_token_id,): 4.0}
    small = LumeData(forget=data.forget[:2], retain=data.retain[:2])
    raw = model.generate(**tokenizer(small.forget[0].input, return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert tokenizer.pad_token_id in raw[0].tolist()  # the pad token really is generated
    result = evaluate(model, tokenizer, small, max_new_tokens=4)
    examples = [*small.forget, *small.retain]
    assert [s["generation"] for s in result.samples] == official_generations(model, tokenizer, examples, 4) == [""] * 4


def test_package_exports_evaluate_lazily():
    code = "import sys, simu_bench; assert 'torch' not in sys.modules; print(simu_bench.EvalResult.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "EvalResult"
    assert simu_bench.EvalResult is EvalResult
    from simu_bench import evaluate as imported

    assert imported is evaluate


@pytest.mark.slow
def test_memorised_target_scores_near_the_top(tiny_target, tiny_model_and_tokenizer):
    """Before unlearning the target remembers forget, retain and world facts: every component
    and the utility near 1, members far more likely than non-members (AUC near 1)."""
    model, tokenizer = tiny_model_and_tokenizer
    result = evaluate(model, tokenizer, tiny_target.data)
    for split, tasks in result.components.items():
        for task, kinds in tasks.items():
            for kind, value in kinds.items():
                assert value >= 0.9, (split, task, kind, value)
    assert len(result.components["forget"]) == len(result.components["retain"]) == 3
    assert result.utility["value"] >= 0.9 and result.mia["auc"] >= 0.9
    data = tiny_target.data
    assert len(result.samples) == len(data.forget) + len(data.retain) + len(data.utility)
    # Same numbers as the official loop on the same model.
    generations, official = official_evaluation(model, tokenizer, tiny_target.data)
    ours = result.to_dict()
    assert ours["components"] == official["components"]
    for key in ("task_aggregate", "final"):
        assert ours[key] == pytest.approx(official[key], abs=1e-9)
    assert ours["mia"]["auc"] == pytest.approx(official["mia"]["auc"], abs=1e-9)


@pytest.mark.slow
def test_plain_lm_eval_command_runs_the_pack(tiny_target, tmp_path):
    """The command of tasks/README.md, as a user types it (with --limit to keep it short)."""
    out_dir = tmp_path / "out"
    command = [
        os.path.join(os.path.dirname(sys.executable), "lm_eval"), "run", "--model", "hf",
        "--model_args", f"pretrained={tiny_target.target_dir}",
        "--include_path", str(task_pack.path()), "--tasks", "lume",
        "--metadata", json.dumps({"data_dir": str(tiny_target.data_dir)}),
        "--device", "cpu", "--batch_size", "16", "--limit", "1", "--output_path", str(out_dir),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(next(out_dir.rglob("results_*.json")).read_text())["results"]
    for name in task_pack.COMPONENT_TASKS:
        metric = "rougeL_recall" if name.endswith("regurgitation") else "exact_match"
        assert results[name][f"{metric},none"] == 1.0, name  # the target remembers its first row
