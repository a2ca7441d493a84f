"""`run --workers N`: N processes split the runs of one store; the store is what one worker writes."""

from __future__ import annotations

import json

import pytest

from simu_bench.cli import main
from simu_bench.pipeline import workers

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "16", "--quiet"]
# what a run's result is; timings.json, log.txt, environment.json (date) and unlearn.json's seconds are not
RESULT_FILES = ("config.json", "metrics.json", "generations.jsonl", "status.json", "mask.json")


def _untimed(record):
    """``record`` without its time measurements (keys that end in "seconds"), at every depth."""
    if isinstance(record, dict):
        return {k: _untimed(v) for k, v in record.items() if not k.endswith("seconds")}
    return [_untimed(v) for v in record] if isinstance(record, list) else record


def _results(out) -> dict:
    found = {}
    for path in sorted(out.glob("*/seed*/*")) + sorted(out.glob("target/*")):
        name = str(path.relative_to(out))
        if path.name in RESULT_FILES:
            text = path.read_text()
            found[name] = json.dumps(_untimed(json.loads(text))) if path.name == "mask.json" else text
        elif path.name == "unlearn.json":
            found[name] = json.dumps(_untimed(json.loads(path.read_text())))
        elif path.name == "mask.safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                found[name] = ({k: handle.get_tensor(k).numpy().tobytes() for k in handle.keys()}, handle.metadata())
    return found


@pytest.mark.slow
def test_two_workers_write_the_store_one_worker_writes(tiny_target, tmp_path, capfd):
    """Which worker does which run depends on timing (a helper takes seconds to start); what the
    store holds must not."""
    inputs = ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]
    command = ["run", "--methods", "fo_graddiff,simu", "--seeds", "0,1", *inputs, *QUICK]
    assert main([*command, "--out", str(tmp_path / "one"), "--workers", "1"]) == 0
    assert main([*command, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    out = capfd.readouterr().out
    assert "started 1 helper worker (pid " in out
    assert "runs: 5 ok" in out  # runs a helper did are counted as they ended, not as "claimed"
    one, two = _results(tmp_path / "one"), _results(tmp_path / "two")
    # 4 method runs x 5 result files, SIMU's 2 mask files per seed, the target's 4
    assert len(one) == 4 * 5 + 2 * 2 + 4 and one.keys() == two.keys()
    for name in one:
        assert one[name] == two[name], name
    assert (tmp_path / "two" / "leaderboard.md").exists()
    # run.json records the user's command, not a helper's (the same command with --workers 1)
    recorded = json.loads((tmp_path / "two" / "run.json").read_text())["command"]
    assert "--workers 2" in recorded and "--workers 1" not in recorded, recorded


@pytest.mark.parametrize(("value", "message"), [
    ("0", "--workers 0: expected at least 1 worker process"),
    ("-2", "--workers -2: expected at least 1 worker process"),
    ("1.5", "--workers '1.5': expected a whole number of worker processes"),
    ("two", "--workers 'two': expected a whole number of worker processes"),
])
def test_bad_worker_counts_are_refused_with_one_line(value, message, tmp_path, capsys):
    assert main(["run", "--methods", "fo_graddiff", "--out", str(tmp_path / "out"), "--workers", value]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_more_workers_than_cores_warns_and_says_why(capsys):
    assert workers.parse_workers(str(workers.cores() + 1)) == workers.cores() + 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"more than the {workers.cores()} CPU cores" in err and "take longer" in err


def test_fast_decode_with_vllm_is_refused(tmp_path, capsys):
    assert main(["run", "--methods", "fo_graddiff", "--out", str(tmp_path / "out"), "--fast-decode",
                 "--backend", "vllm"]) == 2
    err = capsys.readouterr().err
    assert "--fast-decode works with --backend hf only" in err and err.count("\n") == 1
