"""`simu-bench prepare`: arguments, output, errors, and the real-LUME subset path."""

from __future__ import annotations

from pathlib import Path

import pytest

import simu_bench.target_model.build
from simu_bench.cli import main
from simu_bench.data.lume import load_lume
from simu_bench.data.synthetic import SyntheticConfig
from simu_bench.target_model.build import DEFAULT_DOCS_PER_TASK

from conftest import MICRO_TARGET, TINY_DATA, TINY_TARGET

LUME = Path(__file__).parents[3] / "shared" / "lume"


@pytest.fixture
def tiny_prepare(tiny_target, tiny_cache, monkeypatch):
    """Route the command to the tiny recipe and cache (already built, so this is a warm call)."""
    real = simu_bench.target_model.build.prepare
    calls = []

    def tiny(data=None, target=None, seed=0, cache=None, progress=True, *, docs_per_task=None):
        calls.append({"data": data, "seed": seed, "progress": progress, "docs_per_task": docs_per_task})
        return real(data if data is not None else TINY_DATA, TINY_TARGET, seed, tiny_cache, progress)

    monkeypatch.setattr(simu_bench.target_model.build, "prepare", tiny)
    return calls


def test_prepare_prints_where_data_and_target_are(tiny_target, tiny_prepare, capsys):
    assert main(["prepare", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"data:    {tiny_target.data_dir}" in out
    assert f"target:  {tiny_target.target_dir}" in out
    assert f"{tiny_target.info['parameters']:,} parameters" in out
    assert f"{tiny_target.info['tokens_trained']:,} tokens" in out
    assert tiny_prepare == [{"data": None, "seed": 0, "progress": False, "docs_per_task": DEFAULT_DOCS_PER_TASK}]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["prepare", "--data", "no/such/dir"], "no such directory"),
        (["prepare", "--docs-per-task", "0"], "expected a positive number"),
    ],
)
def test_prepare_rejects_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("simu-bench prepare: error:") and message in err and err.count("\n") == 1


@pytest.mark.skipif(not (LUME / "forget.jsonl").exists(), reason="../shared/lume is not present")
def test_prepare_on_real_lume_writes_a_seeded_subset(tmp_path, no_training):
    """--data DIR: N documents per task and split are trained on; unused ones are held out."""
    prepared = simu_bench.target_model.build.prepare(LUME, MICRO_TARGET, seed=1, cache=tmp_path, progress=False,
                                               docs_per_task=2)
    data = load_lume(prepared.data_dir)
    full = load_lume(LUME)
    for split in ("forget", "retain"):
        rows = data.split(split)
        for task in ("Task1", "Task2", "Task3"):
            assert len({row.document_id for row in rows if row.task == task}) == 2
        assert set(rows) <= set(full.split(split))
    trained = {row.document_id for row in (*data.forget, *data.retain)}
    assert len(data.nonmember) == 6 and not trained & {document.id for document in data.nonmember}
    # real LUME has no world facts: the subset carries the embedded benchmark's as its utility
    assert len(data.utility) == SyntheticConfig().world_facts and {row.task for row in data.utility} == {"World"}


def test_prepare_warns_when_the_target_did_not_memorise(tiny_target, monkeypatch, capsys):
    import dataclasses

    weak = dataclasses.replace(tiny_target, info={**tiny_target.info, "memorised_rows": 0.5})
    monkeypatch.setattr(simu_bench.target_model.build, "prepare", lambda *args, **kwargs: weak)
    assert main(["prepare", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "50% of rows memorised" in captured.out and "has not memorised" in captured.err
