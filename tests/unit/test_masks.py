"""Critical-neuron masks: selection rules, strategies, report, safetensors round trip."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from simu_bench.errors import UserError
from simu_bench.simu.masks import CriticalMask, build_mask, critical_units

# Layer 0: max 1.0; layer 1: every score negative (no unit supports the answers).
SCORES = torch.tensor([[1.0, 0.5, 0.49, -2.0], [-1.0, -0.5, -3.0, -0.1]])


def test_threshold_is_t_times_the_layer_max():
    # t = 0.5: cut at 0.5 in layer 0 (0.5 itself is kept: ">="); layer 1's max is negative: none.
    assert critical_units(SCORES, "threshold", 0.5).tolist() == [[True, True, False, False], [False] * 4]
    # t = 1 keeps the top unit only; a tiny t keeps every unit above zero.
    assert critical_units(SCORES, "threshold", 1.0).tolist() == [[True, False, False, False], [False] * 4]
    assert critical_units(SCORES, "threshold", 1e-6).tolist() == [[True, True, True, False], [False] * 4]


def test_top_fraction_keeps_the_best_ceil_t_units_of_every_layer():
    # ceil(0.3 * 4) = 2 per layer, whatever the sign.
    expected = [[True, True, False, False], [False, True, False, True]]
    assert critical_units(SCORES, "top_fraction", 0.3).tolist() == expected
    assert critical_units(SCORES, "top_fraction", 1.0).all()


def test_the_strategies_differ_exactly_by_the_dual_neurons():
    generator = torch.Generator().manual_seed(0)
    forget, retain = torch.randn(3, 64, generator=generator), torch.randn(3, 64, generator=generator)
    dual = build_mask(forget, retain, strategy="dual", t=0.3)
    only = build_mask(forget, retain, strategy="forget_only", t=0.3)
    assert torch.equal(dual.selected, dual.forget_critical)
    assert torch.equal(dual.forget_critical, only.forget_critical)
    assert torch.equal(dual.retain_critical, only.retain_critical)
    difference = dual.selected & ~only.selected
    assert not (only.selected & ~dual.selected).any()  # forget_only is a subset of dual
    assert torch.equal(difference, dual.forget_critical & dual.retain_critical)
    assert difference.any()  # the case is not vacuous
    assert not (only.selected & only.retain_critical).any()
    for row_dual, row_only in zip(dual.report(), only.report()):
        assert row_dual["selected"] == row_dual["forget_critical"]
        assert row_only["selected"] == row_dual["forget_critical"] - row_dual["dual"]
        assert row_dual["fraction_selected"] == row_dual["selected"] / 64


def test_report_counts_by_hand():
    forget = torch.tensor([[4.0, 3.0, 1.0, 0.0]])  # t = 0.5 -> units 0, 1
    retain = torch.tensor([[0.0, 2.0, 2.0, 0.0]])  # t = 0.5 -> units 1, 2
    mask = build_mask(forget, retain, strategy="forget_only", t=0.5, m=5, family="olmo")
    assert mask.report() == [{"layer": 0, "forget_critical": 2, "retain_critical": 2, "dual": 1,
                              "selected": 1, "fraction_selected": 0.25}]
    assert mask.selected.tolist() == [[True, False, False, False]]


def test_save_and_load_round_trip(tmp_path):
    generator = torch.Generator().manual_seed(1)
    forget, retain = torch.randn(2, 16, generator=generator), torch.randn(2, 16, generator=generator)
    mask = build_mask(forget, retain, strategy="forget_only", mode="top_fraction", t=0.25, m=5, family="gpt2")
    path = mask.save(tmp_path / "run" / "mask.safetensors")
    loaded = CriticalMask.load(path)
    for name in ("selected", "forget_critical", "retain_critical"):
        assert torch.equal(getattr(loaded, name), getattr(mask, name)) and getattr(loaded, name).dtype == torch.bool
    settings = (loaded.strategy, loaded.mode, loaded.t, loaded.m, loaded.family)
    assert settings == ("forget_only", "top_fraction", 0.25, 5, "gpt2")
    assert torch.equal(loaded.scores["forget"], forget) and torch.equal(loaded.scores["retain"], retain)
    assert loaded.report() == mask.report()
    assert not list(path.parent.glob("*.tmp"))


def test_loading_something_else_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        CriticalMask.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="could not be read"):
        CriticalMask.load(tmp_path / "junk.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(UserError, match="not a simu-bench critical mask"):
        CriticalMask.load(tmp_path / "weights.safetensors")


@pytest.mark.parametrize("kwargs, message", [
    ({"t": 0.0}, r"t=0\.0"), ({"t": 1.5}, r"t=1\.5"), ({"mode": "topk"}, "mode 'topk'"),
    ({"strategy": "dual_only"}, "did you mean 'dual'"),
])
def test_bad_settings_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        build_mask(SCORES, SCORES, **kwargs)


def test_scores_of_different_models_are_a_user_error():
    with pytest.raises(UserError, match="differ in shape"):
        build_mask(torch.zeros(2, 4), torch.zeros(3, 4))
