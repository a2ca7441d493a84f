"""The relearning attack: the document split, the forget score, the fine-tuning, the stored
result left alone, and `--relearn` on `run` and `eval` (the tiny target, 16 new tokens)."""

from __future__ import annotations

import json

import pytest
import torch

from simu_bench.cli import main
from simu_bench.data.lume import Example
from simu_bench.errors import UserError
from simu_bench.evaluation import relearn as attack
from simu_bench.evaluation.evaluator import EvalResult
from simu_bench.files import write_jsonl

from unlearn_helpers import tiny_model

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "16", "--quiet"]


def _rows(documents: dict[str, list[str]]) -> tuple[Example, ...]:
    """Forget rows: document id -> row kinds, e.g. {"d1": ["sc", "qa"]} -> ids d1sc1, d1qa1."""
    return tuple(
        Example(f"{doc}{kind}{i + 1}", f"q {doc} {i}", f"a {doc} {i}", "Task1", "forget",
                "regurgitation" if kind == "sc" else "knowledge")
        for doc, kinds in documents.items() for i, kind in enumerate(kinds)
    )


def test_split_is_seeded_by_document_and_keeps_one_on_each_side():
    forget = _rows({f"doc{i}": ["sc", "qa", "qa"] for i in range(10)})
    chosen, held_out = attack.split_documents(forget, 0.25)
    assert len(chosen) == 2 and len(held_out) == 8  # round(2.5) = 2 (round half to even) of 10 documents
    assert sorted(chosen + held_out) == [f"doc{i}" for i in range(10)]
    assert attack.split_documents(tuple(reversed(forget)), 0.25) == (chosen, held_out)  # row order is irrelevant
    assert attack.split_documents(forget, 0.25, seed=1) != (chosen, held_out)
    assert len(attack.split_documents(forget, 0.01)[0]) == 1  # at least one to relearn on
    assert len(attack.split_documents(forget, 0.99)[1]) == 1  # at least one to measure
    with pytest.raises(UserError, match="at least 2 forget documents.*has 1 \\(doc0\\)"):
        attack.split_documents(_rows({"doc0": ["sc", "qa"]}), 0.25)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            attack.split_documents(forget, bad)


def test_forget_score_is_the_mean_of_the_held_out_components():
    """Held out: a (sc 0.5, qa 1), b (sc 0.25). Task1 regurgitation = (0.5 + 0.25) / 2 = 0.375,
    Task1 knowledge = 1, Task2 regurgitation of c is not held out: score (0.375 + 1) / 2 = 0.6875."""
    samples = [
        {"id": "asc1", "split": "forget", "task": "Task1", "kind": "regurgitation", "score": 0.5},
        {"id": "aqa1", "split": "forget", "task": "Task1", "kind": "knowledge", "score": 1.0},
        {"id": "bsc1", "split": "forget", "task": "Task1", "kind": "regurgitation", "score": 0.25},
        {"id": "csc1", "split": "forget", "task": "Task2", "kind": "regurgitation", "score": 0.0},
        {"id": "asc1", "split": "retain", "task": "Task1", "kind": "regurgitation", "score": 0.0},
    ]
    score, components = attack.forget_score(samples, {"asc1", "aqa1", "bsc1"})
    assert components == {"Task1": {"knowledge": 1.0, "regurgitation": 0.375}}
    assert score == 0.6875


def _fake_evaluate(calls):
    """Scores every row with the mean |weight| of the model's first parameter, so a changed model
    scores differently; records the rows it was asked for."""
    def evaluate(model, tokenizer, data):
        calls.append(data)
        value = float(next(model.parameters()).detach().abs().mean())
        samples = [{"id": e.id, "split": e.split, "task": e.task, "kind": e.kind, "score": value}
                   for e in (*data.forget, *data.retain)]
        return EvalResult({}, 0.0, samples=samples)

    return evaluate


def test_relearn_fine_tunes_a_copy_on_the_chosen_documents_and_scores_the_others(tokenizer, data):
    model = tiny_model(tokenizer)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    calls = []
    record = attack.relearn(model, tokenizer, data, 4, _fake_evaluate(calls), fraction=0.25, lr=1e-2)
    # The caller's model is untouched: relearning works on a copy.
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert record["steps"] == 4 and record["fraction"] == 0.25 and record["lr"] == 1e-2
    assert len(record["relearn_documents"]) == 1 and len(record["heldout_documents"]) == 3  # 4 documents
    assert record["relearn_rows"] == 1 and record["heldout_rows"] == 3
    # Evaluated twice (before, after) on the held-out forget rows only (+ one retain row the task pack needs).
    assert len(calls) == 2 and all({e.document_id for e in c.forget} == set(record["heldout_documents"])
                                   for c in calls)
    assert record["forget_before"] != record["forget_after"]  # the copy did change
    # Four steps on one row at a high rate: its loss falls.
    assert len(record["losses"]) == 4 and record["losses"][-1] < record["losses"][0]
    # Deterministic: the same record again (timings aside).
    again = attack.relearn(model, tokenizer, data, 4, _fake_evaluate([]), fraction=0.25, lr=1e-2)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in record.items() if k != "seconds"}


def test_relearn_in_place_changes_the_model_and_reuses_given_samples(tokenizer, data):
    model = tiny_model(tokenizer)
    first = next(model.parameters()).detach().clone()
    calls = []
    given = [{"id": e.id, "split": "forget", "task": e.task, "kind": e.kind, "score": 0.0} for e in data.forget]
    record = attack.relearn(model, tokenizer, data, 2, _fake_evaluate(calls), before=given, in_place=True)
    assert len(calls) == 1 and record["forget_before"] == 0.0  # only the "after" evaluation ran
    assert not torch.equal(next(model.parameters()), first)
    with pytest.raises(UserError, match="positive number"):
        attack.relearn(model, tokenizer, data, 0, _fake_evaluate([]))


@pytest.fixture(scope="module")
def inputs(tiny_target):
    return ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]


def test_run_with_relearn_stores_relearn_json_and_leaves_the_unlearned_result_alone(inputs, tmp_path, capsys):
    """The same run with and without --relearn: metrics.json and generations.jsonl are the same
    bytes, so relearning never touched what was stored of the unlearned model."""
    plain, attacked = tmp_path / "plain", tmp_path / "attacked"
    assert main(["run", "--methods", "fo_graddiff", "--out", str(plain), *inputs, *QUICK]) == 0
    args = ["run", "--methods", "fo_graddiff", "--out", str(attacked), *inputs, *QUICK, "--relearn", "3"]
    assert main(args) == 0
    for name in ("metrics.json", "generations.jsonl"):
        assert (attacked / "fo_graddiff/seed0" / name).read_bytes() == (plain / "fo_graddiff/seed0" / name).read_bytes()
    record = json.loads((attacked / "fo_graddiff/seed0/relearn.json").read_text())
    assert record["steps"] == 3 and record["fraction"] == 0.25 and record["lr"] == attack.LR
    assert 0.0 <= record["forget_before"] <= 1.0 and 0.0 <= record["forget_after"] <= 1.0
    # "before" is read off the stored generations: the held-out rows' scores there.
    stored = (plain / "fo_graddiff/seed0/generations.jsonl").read_text().splitlines()
    generations = [json.loads(line) for line in stored]
    ids = {g["id"] for g in generations if g["split"] == "forget"
           and any(g["id"].startswith(d) for d in record["heldout_documents"])}
    assert record["forget_before"] == attack.forget_score(generations, ids)[0]
    assert not (attacked / "target" / "relearn.json").exists()  # the target is not attacked
    config = json.loads((attacked / "fo_graddiff/seed0/config.json").read_text())["config"]
    assert config["relearn"]["steps"] == 3 and "relearn" not in json.loads((plain / "fo_graddiff/seed0/config.json")
                                                                             .read_text())["config"]
    assert "relearn" in json.loads((attacked / "fo_graddiff/seed0/timings.json").read_text())
    # The metrics carry the MIA suite, with the reference attack against the target for method runs.
    metrics = json.loads((attacked / "fo_graddiff/seed0/metrics.json").read_text())
    assert set(metrics["mia_attacks"]) == {"loss", "zlib", "min_k", "min_k_plus_plus", "reference"}
    assert "reference" not in json.loads((attacked / "target/metrics.json").read_text())["mia_attacks"]
    board = (attacked / "leaderboard.md").read_text()
    assert "forget after relearning ↓" in board and "worst-case MIA score ↑" in board
    assert "forget after relearning" not in (plain / "leaderboard.md").read_text()
    # Rerunning the same command skips the finished run.
    assert main(args) == 0 and "fo_graddiff seed 0: already done (ok), skipped" in capsys.readouterr().out


def test_eval_with_relearn_writes_relearn_json_next_to_unchanged_metrics(tiny_target, tmp_path, capsys):
    base = ["eval", "--model", str(tiny_target.target_dir), "--data", str(tiny_target.data_dir),
            "--max-new-tokens", "16"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--relearn", "2", "--relearn-fraction", "0.5", "--out", str(tmp_path / "e")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == plain == json.loads((tmp_path / "e" / "metrics.json").read_text())
    record = json.loads((tmp_path / "e" / "relearn.json").read_text())
    assert record["steps"] == 2 and record["fraction"] == 0.5 and "relearning 2 steps" in err


def _single_document_data(root):
    write_jsonl(root / "forget.jsonl", [{"id": "onesc1", "input": "a", "output": "b", "task": "Task1"},
                                        {"id": "oneqa1", "input": "c", "output": "d", "task": "Task1"}])
    write_jsonl(root / "retain.jsonl", [{"id": "twosc1", "input": "e", "output": "f", "task": "Task1"}])
    return root


@pytest.mark.parametrize("command", ["run", "eval"])
@pytest.mark.parametrize("args, message", [
    (["--relearn", "0"], "--relearn 0: expected a positive number"),
    (["--relearn", "-3"], "--relearn -3: expected a positive number"),
    (["--relearn", "5", "--relearn-fraction", "1.5"], "--relearn-fraction 1.5: expected a fraction"),
    (["--relearn", "5", "--relearn-fraction", "0"], "strictly between 0 and 1"),
    (["--relearn-fraction", "0.5"], "needs --relearn STEPS"),
    (["--relearn", "5", "--data", "{single}"], "at least 2 forget documents"),
])
def test_bad_relearn_input_is_one_line_exit_2_and_writes_nothing(command, args, message, tiny_target, tmp_path,
                                                                 capsys):
    (tmp_path / "single").mkdir()
    single = _single_document_data(tmp_path / "single")
    args = [a.replace("{single}", str(single)) for a in args]
    if "--data" not in args:
        args += ["--data", str(tiny_target.data_dir)]
    out = tmp_path / "out"
    extra = ["--methods", "fo_graddiff", "--quiet"] if command == "run" else []
    code = main([command, "--model", str(tiny_target.target_dir), "--out", str(out), *extra, *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()

