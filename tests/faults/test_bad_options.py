"""Method options that cannot work are refused up front: one line, exit status 2, before the target
is evaluated and before anything is written (each method's `check_config`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_helpers import one_line

from simu_bench.cli import main
from simu_bench.target_model.cache import prepare

from conftest import MICRO_DATA, MICRO_TARGET


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


def run(micro, out: Path, method: str, *overrides: str) -> list:
    sets = [word for text in overrides for word in ("--set", text)]
    return ["run", "--methods", method, "--out", out, "--data", micro.data_dir, "--model", micro.target_dir,
            *sets, "--max-new-tokens", "4", "--quiet"]


@pytest.mark.slow  # runs simu-bench end to end
@pytest.mark.parametrize("override", ["optimizer.name=adamw", "optimizer.lr=0"])
def test_wagle_runs_with_adamw_and_with_lr_0(override, micro, tmp_path, capsys):
    """WAGLE once took mu = 1 / lr (ZeroDivisionError at lr 0) and refused AdamW only after the
    target was written; it now uses the authors' fixed mu and the optimizer its config names."""
    import json

    out = tmp_path / "out"
    assert main([str(a) for a in run(micro, out, "wagle", override, "train.max_steps=1")]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert json.loads((out / "wagle" / "seed0" / "status.json").read_text())["status"] == "ok"


def mask_of_another_model(tmp_path: Path) -> str:
    """A SIMU mask of a 3-layer model with 16 units per layer (the micro target: 2 layers of 64)."""
    import torch

    from simu_bench.simu.masks import CriticalMask

    units = torch.zeros(3, 16, dtype=torch.bool)
    mask = CriticalMask(units, units, units, strategy="dual", mode="threshold", t=0.1, m=3, family="olmo")
    return str(mask.save(tmp_path / "mask.safetensors"))


@pytest.mark.parametrize("method, override, needles", [
    ("rmu", "options.layer=99", ["rmu: options.layer: got 99, expected a decoder layer in 0..1 (the model has 2 "
                                 "layers)", "or null for the paper's relative depth"]),
    ("selective_pruning", "options.fraction=0.001", ["selective_pruning: options.fraction: got 0.001, less than one of "
                                                     "the model's 128 MLP units (2 layers x 64)", "at least 1/128"]),
    ("simu", "options.mask_path={mask}", ["simu: options.mask_path", "with (layers, units) (3, 16); this 'olmo' model "
                                         "has (2, 64)", "options.mask_path=null"]),
], ids=["rmu_layer_99", "pruning_fraction_below_one_unit", "simu_mask_of_another_model"])
def test_an_option_that_does_not_fit_the_model_is_refused_before_the_target_is_evaluated(
        method, override, needles, micro, tmp_path, capsys):
    """Read from the model's config.json (layers, MLP width) without loading its weights: no target
    row, no crashed run, nothing in --out."""
    override = override.format(mask=mask_of_another_model(tmp_path) if "{mask}" in override else "")
    err = one_line(capsys, run(micro, tmp_path / "out", method, override),
                   f"with the olmo model {micro.target_dir} (2 layers, MLP width 64)", *needles)
    assert "crashed" not in err
    assert not (tmp_path / "out").exists()
    assert main(["validate", method, "--set", override]) == 0  # the config alone is fine: it is the model it misfits
    capsys.readouterr()
