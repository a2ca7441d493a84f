"""`simu-bench prepare`: arguments, output, errors, and the real-LUME subset path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import simu_bench.target_model.cache
from simu_bench.cli import main
from simu_bench.data.lume import load_lume
from simu_bench.data.synthetic import SyntheticConfig
from simu_bench.target_model.cache import Prepared
from simu_bench.target_model.settings import DEFAULT_DOCS_PER_TASK, TargetConfig
from simu_bench.target_model.sizes import SIZES

from conftest import MICRO_TARGET, TINY_DATA, TINY_TARGET

LUME = Path(__file__).parents[3] / "shared" / "lume"


@pytest.fixture
def tiny_prepare(tiny_target, tiny_cache, monkeypatch):
    """Route the command to the tiny recipe and cache (already built, so this is a warm call)."""
    real = simu_bench.target_model.cache.prepare
    calls = []

    def tiny(data=None, target=None, seed=0, cache=None, progress=True, *, docs_per_task=None):
        calls.append({"data": data, "seed": seed, "progress": progress, "docs_per_task": docs_per_task})
        return real(data if data is not None else TINY_DATA, TINY_TARGET, seed, tiny_cache, progress)

    monkeypatch.setattr(simu_bench.target_model.cache, "prepare", tiny)
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
    prepared = simu_bench.target_model.cache.prepare(LUME, MICRO_TARGET, seed=1, cache=tmp_path, progress=False,
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
    monkeypatch.setattr(simu_bench.target_model.cache, "prepare", lambda *args, **kwargs: weak)
    assert main(["prepare", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "50% of rows memorised" in captured.out and "has not memorised" in captured.err


@pytest.fixture
def recorded_prepare(tiny_target, monkeypatch):
    """`prepare` that records the target shape it was asked for and returns the tiny target,
    whose manifest can be replaced (`info`) to act out a build that did not memorise."""
    calls, info = [], dict(tiny_target.info)

    def fake(data=None, target=None, seed=0, cache=None, progress=True, *, docs_per_task=None):
        calls.append(target)
        return Prepared(tiny_target.data_dir, tiny_target.target_dir, tiny_target.data, info)

    monkeypatch.setattr(simu_bench.target_model.cache, "prepare", fake)
    return calls, info


def test_prepare_size_builds_that_shape_and_prints_it(recorded_prepare, capsys):
    calls, _ = recorded_prepare
    assert main(["prepare", "--size", "small", "--quiet"]) == 0
    assert calls == [SIZES["small"]] and calls[0].hidden_size == 128 and calls[0].intermediate_size == 512
    assert "size:    small: 6 layers, hidden 128, 4 heads of 32, 512 MLP units per layer" in capsys.readouterr().out
    assert main(["prepare", "--quiet"]) == 0
    assert calls[-1] == TargetConfig()  # no --size: the embedded target, unchanged


def test_prepare_refuses_an_unknown_size_and_one_that_did_not_memorise(recorded_prepare, capsys):
    _, info = recorded_prepare
    assert main(["prepare", "--size", "smal"]) == 2
    err = capsys.readouterr().err
    assert "'smal' is not a target size (did you mean 'small'?)" in err and err.count("\n") == 1
    info.update(memorised_rows=0.6, final_answer_loss=0.4321, epochs=80)
    assert main(["prepare", "--size", "medium", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "60.0% memorised, final answer-token loss 0.432 after 80 epochs (expected >= 95%)" in err
    assert err.count("\n") == 1


def test_sizes_are_wider_at_the_same_depth_and_each_is_its_own_cache_entry(tmp_path, no_training):
    """tiny is the default target; small and medium double and quadruple its width, heads of >= 32."""
    tiny = SIZES["tiny"]
    assert tiny == TargetConfig()
    for name, factor in (("small", 2), ("medium", 4)):
        size = SIZES[name]
        assert size.hidden_size == factor * tiny.hidden_size
        assert size.intermediate_size == factor * tiny.intermediate_size
        assert size.num_layers == tiny.num_layers and size.hidden_size // size.num_heads >= 32
    built = {name: simu_bench.target_model.cache.prepare(TINY_DATA, SIZES[name], cache=tmp_path, progress=False)
             for name in ("small", "medium")}
    assert built["small"].target_dir != built["medium"].target_dir
    for name, prepared in built.items():
        config = json.loads((prepared.target_dir / "config.json").read_text())
        shape = (config["hidden_size"], config["num_attention_heads"])
        assert shape == (SIZES[name].hidden_size, SIZES[name].num_heads)
        assert prepared.info["target"]["intermediate_size"] == SIZES[name].intermediate_size
