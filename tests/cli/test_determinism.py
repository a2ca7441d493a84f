"""The same `simu-bench run` command with the same seed gives identical results on CPU.

Two runs into two folders on the tiny target (every method, two optimizer steps, 16 new tokens
per row): metrics, per-sample generations and per-step losses must match exactly. A third run
with another seed must differ, so the comparison cannot pass by the seed being ignored.
"""

import json

from simu_bench.cli import main
from simu_bench.unlearning import registry

QUICK = ["--set", "train.max_steps=2", "--max-new-tokens", "16", "--quiet"]


def results(out, method, seed):
    run = out / method / f"seed{seed}"
    return {name: (run / name).read_text() for name in ("metrics.json", "generations.jsonl")} | {
        "losses": json.loads((run / "unlearn.json").read_text())["losses"]}


def test_same_command_same_seed_gives_identical_results(tiny_target, tmp_path):
    inputs = ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]
    for name in ("a", "b"):
        assert main(["run", "--methods", "all", "--seeds", "0", "--out", str(tmp_path / name), *inputs, *QUICK]) == 0
    for method in registry.names():
        first, second = results(tmp_path / "a", method, 0), results(tmp_path / "b", method, 0)
        assert len(first["losses"]) == (2 if registry.get(method).trains else 0)  # pruning has no step
        assert first == second, method
    reference = [(tmp_path / name / "target" / "metrics.json").read_text() for name in ("a", "b")]
    assert reference[0] == reference[1]
    assert main(["run", "--methods", "so_graddiff", "--seeds", "1", "--out", str(tmp_path / "a"), *inputs, *QUICK]) == 0
    assert results(tmp_path / "a", "so_graddiff", 1)["losses"] != results(tmp_path / "a", "so_graddiff", 0)["losses"]
