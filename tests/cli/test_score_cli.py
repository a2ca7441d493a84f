"""`simu-bench score` on the fixture files, with the expected numbers worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simu_bench.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
GENERATIONS = FIXTURES / "score_generations.jsonl"
MIA = FIXTURES / "score_mia.jsonl"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_score_fixture_by_hand(capsys):
    """score_generations.jsonl, row by row:

    forget Task1: sc "the cat sat on the mat" vs "the cat on a mat": LCS 4/6 -> 2/3; qa Paris/London -> 0
    forget Task2: sc empty generation -> 0; qa "Bob"/"bob" -> 1 and "42"/"43" -> 0: mean 0.5
    forget Task3: sc "running dogs" vs "the dog runs" (stemmed; LCS 1 of 2) -> 0.5; qa Rome/Milan -> 0
    retain Task1: sc identical -> 1; qa "yes"/"YES" -> 1
    retain Task2: sc "red green blue yellow" vs "red blue" -> 2/4; qa "1990" -> 1
    retain Task3: sc "the quick brown fox" vs "quick fox" -> 2/4; qa "Lima"/" lima\\n" -> 1

    Aggregate inputs: forget inverted 1/3, 1, 1, 0.5, 0.5, 1; retain 1, 1, 0.5, 1, 0.5, 1.
    Reciprocals sum to 3+1+1+2+2+1 + 1+1+2+1+2+1 = 18: harmonic mean 12/18 = 2/3.
    MIA: members NLL [1, 2], non-members [3, 2]: AUC 3.5/4 = 0.875, score 0.25.
    Final with utility 0.5: (2/3 + 0.25 + 0.5) / 3 = 17/36.
    """
    code, out, _ = run(capsys, GENERATIONS, "--mia", MIA, "--utility", "0.5", "--utility-name", "mmlu")
    assert code == 0
    result = json.loads(out)
    assert result["components"] == {
        "forget": {"Task1": {"regurgitation": pytest.approx(2 / 3), "knowledge": 0.0},
                   "Task2": {"regurgitation": 0.0, "knowledge": 0.5},
                   "Task3": {"regurgitation": 0.5, "knowledge": 0.0}},
        "retain": {"Task1": {"regurgitation": 1.0, "knowledge": 1.0},
                   "Task2": {"regurgitation": 0.5, "knowledge": 1.0},
                   "Task3": {"regurgitation": 0.5, "knowledge": 1.0}},
    }
    assert result["task_aggregate"] == pytest.approx(2 / 3, abs=1e-12)
    assert result["mia"] == {"auc": 0.875, "score": 0.25}
    assert result["utility"] == {"name": "mmlu", "value": 0.5}
    assert result["final"] == pytest.approx(17 / 36, abs=1e-12)


def test_score_without_mia_or_utility_omits_them(capsys):
    code, out, _ = run(capsys, GENERATIONS)
    assert code == 0
    assert set(json.loads(out)) == {"components", "task_aggregate", "overall"}
    code, out, _ = run(capsys, GENERATIONS, "--mia", MIA)
    assert set(json.loads(out)) == {"components", "task_aggregate", "overall", "mia"}
    code, out, _ = run(capsys, GENERATIONS, "--utility", "0.3")
    assert set(json.loads(out)) == {"components", "task_aggregate", "overall", "utility"}


GOOD = {"id": "x1qa0", "task": "Task1", "split": "forget", "input": "q", "output": "a", "generation": "a"}


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "generation"}), "missing field 'generation'"),
        (json.dumps(GOOD | {"generation": None}), "field 'generation' must be a string"),
        (json.dumps(GOOD | {"split": "test"}), "field 'split' is 'test'"),
        (json.dumps(GOOD | {"task": "Task4"}), "unknown task 'Task4'"),
        (json.dumps(GOOD | {"id": "x1"}), "does not end in 'sc<k>'"),
        (json.dumps(GOOD), "appears twice"),
    ],
)
def test_malformed_generation_rows_name_the_line(tmp_path, capsys, bad_line, message):
    path = tmp_path / "gen.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + bad_line + "\n", encoding="utf-8")
    code, out, err = run(capsys, path)
    assert code == 2 and out == ""
    assert f"{path}:3:" in err and message in err
    assert err.count("\n") == 1  # one line


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"id": "d", "membership": "member"}, "missing field 'nll'"),
        ({"id": "d", "membership": "in", "nll": 1.0}, "field 'membership' is 'in'"),
        ({"id": "d", "membership": "member", "nll": "1.0"}, "field 'nll' is '1.0'"),
        ({"id": "d", "membership": "member", "nll": float("nan")}, "expected a finite number"),
    ],
)
def test_malformed_mia_rows_name_the_line(tmp_path, capsys, bad_row, message):
    path = tmp_path / "mia.jsonl"
    path.write_text(MIA.read_text() + json.dumps(bad_row) + "\n", encoding="utf-8")
    code, _, err = run(capsys, GENERATIONS, "--mia", path)
    assert code == 2 and f"{path}:5:" in err and message in err


def test_mia_needs_both_classes_and_utility_in_range(tmp_path, capsys):
    path = tmp_path / "mia.jsonl"
    path.write_text(json.dumps({"id": "d", "membership": "member", "nll": 1.0}) + "\n")
    code, _, err = run(capsys, GENERATIONS, "--mia", path)
    assert code == 2 and "no nonmember rows" in err
    code, _, err = run(capsys, GENERATIONS, "--utility", "1.5")
    assert code == 2 and "expected a score in [0, 1]" in err
    code, _, err = run(capsys, tmp_path / "missing.jsonl")
    assert code == 2 and "does not exist" in err


def test_tasks_path_prints_the_task_folder(capsys):
    assert main(["tasks-path"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "lume.yaml").is_file() and (folder / "utils.py").is_file()


def test_missing_value_generations_score_as_nan_unless_no_csv_na(capsys, tmp_path):
    """One row per component, each generation equal to its answer except forget Task1 knowledge:
    expected "nan", generated "" (pandas reads "" back as NaN -> "nan"). Officially that row
    matches (forget Task1 knowledge 1.0); with --no-csv-na the empty string does not (0.0)."""
    rows = []
    for split in ("forget", "retain"):
        for task in ("Task1", "Task2", "Task3"):
            for kind, suffix in (("regurgitation", "sc1"), ("knowledge", "qa1")):
                output = "nan" if (split, task, kind) == ("forget", "Task1", "knowledge") else "an answer"
                generation = "" if output == "nan" else output
                rows.append({"id": f"{split}{task}{suffix}", "task": task, "split": split, "input": "q",
                             "output": output, "generation": generation})
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, out, _ = run(capsys, str(path))
    assert code == 0 and json.loads(out)["components"]["forget"]["Task1"]["knowledge"] == 1.0
    code, out, _ = run(capsys, str(path), "--no-csv-na")
    assert code == 0 and json.loads(out)["components"]["forget"]["Task1"]["knowledge"] == 0.0
