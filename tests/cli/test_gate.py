"""`simu-bench compare BASELINE.json NEW_RUNS_DIR`: the regression gate on hand-made run stores.

Each store is written by hand (raw JSON files): a reference row and fo_graddiff over seeds with
`final` = 0.50, 0.52, 0.54 (mean 0.52, s = 0.02, 95% CI half-width h = t(0.975, 2) * 0.02 / sqrt(3)
= 4.3027 * 0.011547 = 0.049684), every other metric constant. The baseline is the
leaderboard.json that `simu-bench leaderboard --format json` writes from such a store.
"""

import json
import statistics
from pathlib import Path

import pytest

from simu_bench.cli import main

from store_helpers import FINALS, make_store

RESULTS = Path(__file__).resolve().parents[2] / "results" / "leaderboard.json"
HALF_WIDTH = 4.302652729749464 * 0.02 / 3 ** 0.5  # 0.049684


@pytest.fixture
def baseline(tmp_path):
    path = tmp_path / "baseline.json"
    assert main(["leaderboard", str(make_store(tmp_path / "base")), "--format", "json", "--output", str(path)]) == 0
    return path


def compare(capsys, *args):
    code = main(["compare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_identical_store_passes(tmp_path, baseline, capsys):
    code, out, _ = compare(capsys, baseline, make_store(tmp_path / "new"))
    assert code == 0
    assert out.startswith("no metric moved beyond tolerance (32 metrics checked; fo_graddiff: exact; target: exact)")


def test_final_moved_beyond_the_ci_is_named(tmp_path, baseline, capsys):
    """Other data fingerprint: the CI rule. final + 0.06 > h = 0.0497 moves; nothing else changed."""
    new = make_store(tmp_path / "new", finals=[f + 0.06 for f in FINALS], data_sha="e" * 16)
    code, out, _ = compare(capsys, baseline, new, "--format", "plain")
    assert code == 1 and "1 of 32 metrics moved" in out
    moved = [line.split() for line in out.splitlines() if line.startswith("fo_graddiff")]
    low, high = 0.52 - HALF_WIDTH, 0.52 + HALF_WIDTH
    assert moved == [["fo_graddiff", "final", "0.520000", "0.580000", "+0.06",
                      f"[{low:.4f},", f"{high:.4f}]", "(95%", "CI)"]]


def test_change_inside_the_ci_passes(tmp_path, baseline, capsys):
    new = make_store(tmp_path / "new", finals=[f + 0.04 for f in FINALS], data_sha="e" * 16)
    assert compare(capsys, baseline, new)[0] == 0


def test_same_fingerprints_and_seeds_demand_exact_values(tmp_path, baseline, capsys):
    """Same data, model and seeds: a change of 1e-9 in one component is flagged; 1e-14 is not."""
    code, out, _ = compare(capsys, baseline, make_store(tmp_path / "new", forget=0.1 + 1e-9))
    assert code == 1 and "| fo_graddiff | forget/Task1/regurgitation |" in out and "exact (±1e-12)" in out
    assert "target" not in out  # its forget components are 1.0 in both stores
    assert compare(capsys, baseline, make_store(tmp_path / "tiny", forget=0.1 + 1e-14))[0] == 0


def test_other_seeds_use_the_ci_and_a_zero_ci_the_tolerance(tmp_path, baseline, capsys):
    """Same fingerprints but two of the three seeds: not exact. final 0.51 is inside 0.52 ± 0.0497; the
    components were equal on every seed (CI 0), so they get ± 0.02: 0.1 -> 0.11 passes, 0.13 moves."""
    new = make_store(tmp_path / "new", finals=FINALS[:2], forget=0.11)
    code, out, _ = compare(capsys, baseline, new)
    assert code == 0 and "fo_graddiff: CI; target: exact" in out
    code, out, _ = compare(capsys, baseline, make_store(tmp_path / "far", finals=FINALS[:2], forget=0.13))
    assert code == 1 and "6 of 32 metrics moved" in out and "| [0.0800, 0.1200] (tolerance) |" in out


def test_single_seed_baseline_uses_the_tolerance(tmp_path, capsys):
    """One seed, no CI: |0.53 - 0.50| = 0.03 > 0.02 moves; --tolerance 0.05 lets it pass."""
    base = tmp_path / "base.json"
    main(["leaderboard", str(make_store(tmp_path / "b", finals=[0.50])), "--format", "json", "--output", str(base)])
    new = make_store(tmp_path / "new", finals=[0.53], data_sha="e" * 16)
    code, out, _ = compare(capsys, base, new)
    assert code == 1 and "[0.4800, 0.5200] (tolerance)" in out
    assert compare(capsys, base, new, "--tolerance", "0.05")[0] == 0


def test_baseline_methods_missing_from_the_new_store_are_noted(tmp_path, capsys):
    base = tmp_path / "base.json"
    main(["leaderboard", str(make_store(tmp_path / "b", methods=("fo_graddiff", "simu"))), "--format", "json",
          "--output", str(base)])
    code, out, _ = compare(capsys, base, make_store(tmp_path / "new"))
    assert code == 0 and out.splitlines()[0] == "not in the new runs, not compared: simu"


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("not_json", "is not JSON"),
    ("no_rows", "is not a leaderboard: expected a non-empty 'rows' list"),
    ("bad_row", "rows[0] lacks 'method' or 'metrics'"),
    ("no_run_dir", "run directory"),
    ("empty_run_dir", "holds no finished run"),
    ("other_method", "compare on runs of other methods"),
    ("tolerance", "--tolerance must be a number >= 0"),
])
def test_bad_input_is_one_line(tmp_path, baseline, capsys, case, message):
    path, runs, extra = baseline, make_store(tmp_path / "new"), []
    if case == "missing":
        path = tmp_path / "nope.json"
    elif case in ("not_json", "no_rows", "bad_row"):
        path = tmp_path / "bad.json"
        texts = {"not_json": "{rows: ", "no_rows": '{"rows": []}', "bad_row": '{"rows": [{"method": "x"}]}'}
        path.write_text(texts[case])
    elif case == "no_run_dir":
        runs = tmp_path / "absent"
    elif case == "empty_run_dir":
        runs = tmp_path / "empty"
        runs.mkdir()
    elif case == "other_method":
        runs = make_store(tmp_path / "other", methods=("so_graddiff",))
    else:
        extra = ["--tolerance", "-1"]
    before = sorted(tmp_path.rglob("*"))
    code, out, err = compare(capsys, path, runs, *extra)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert sorted(tmp_path.rglob("*")) == before


def test_committed_results_against_a_fresh_tiny_run(tiny_target, tmp_path, capsys):
    """results/ was made on the embedded benchmark; the tiny target has other data and model
    fingerprints, so the CI rule applies, and its numbers lie far outside results/' intervals."""
    out = tmp_path / "runs"
    assert main(["run", "--methods", "fo_graddiff", "--seeds", "0", "--out", str(out),
                 "--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir),
                 "--set", "train.max_steps=1", "--max-new-tokens", "8", "--quiet"]) == 0
    capsys.readouterr()
    code, text, _ = compare(capsys, RESULTS, out)
    assert code == 1 and "| fo_graddiff |" in text and "(95% CI)" in text
    committed = json.loads(Path(RESULTS).read_text(encoding="utf-8"))
    others = sorted(r["method"] for r in committed["rows"] if r["method"] not in ("fo_graddiff", "target"))
    assert text.splitlines()[0] == f"not in the new runs, not compared: {', '.join(others)}"


def _frontier(retain_values):
    def cell(values):
        return {"mean": statistics.fmean(values), "ci95": 0.01, "n": len(values), "values": values}

    per_seed = {str(s): {"status": "ok", "forget": 0.1, "retain": r, "utility": 0.8, "mia": 0.7, "final": 0.6}
                for s, r in enumerate(retain_values)}
    row = {"method": "simu", "level": 0.2, "winner": {"trial": 0, "step": 8, "params": {}},
           "report": {"forget": cell([0.1, 0.1]), "retain": cell(retain_values), "utility": cell([0.8, 0.8]),
                      "mia": cell([0.7, 0.7]), "final": cell([0.6, 0.6])}, "per_seed": per_seed}
    return {"plan": {"levels": [0.2]}, "table": [row, {"method": "npo", "level": 0.2, "winner": None}]}


def test_a_frontier_is_compared_per_method_and_level(tmp_path, capsys):
    """Baseline retain 0.90 ± 0.01: a new frontier at 0.905 passes, at 0.95 'simu @ forget<=0.2' moved."""
    (tmp_path / "base.json").write_text(json.dumps(_frontier([0.9, 0.9])))
    for name, values, code in (("same", [0.9, 0.91], 0), ("moved", [0.95, 0.95], 1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "frontier.json").write_text(json.dumps(_frontier(values)))
        assert main(["compare", str(tmp_path / "base.json"), str(tmp_path / name)]) == code
        out = capsys.readouterr().out
        assert ("simu @ forget<=0.2 | retain" in out) == (code == 1), out
