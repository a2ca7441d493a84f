"""The utility floor: parsing, the threshold arithmetic and the verdict per run and per row."""

from types import SimpleNamespace

import pytest

from simu_bench.errors import UserError
from simu_bench.leaderboard.board import Stat
from simu_bench.leaderboard.floor import UtilityFloor, judge, parse_utility_floor


def test_a_fraction_scales_the_targets_utility():
    """0.75 x 0.9 = 0.675: 0.675 passes (not below), 0.6749 does not; without a target utility
    or a run utility nothing is judged."""
    floor = parse_utility_floor("0.75")
    assert floor.threshold(0.9) == pytest.approx(0.675)
    assert floor.passes(0.675, 0.9) is True and floor.passes(0.6749, 0.9) is False
    assert floor.passes(None, 0.9) is None and floor.passes(0.1, None) is None


def test_an_absolute_floor_ignores_the_target_and_zero_turns_it_off():
    """abs:0.371 (the 7B target's official floor): 0.269 is below it whatever the target scored."""
    floor = parse_utility_floor("abs:0.371")
    assert floor == UtilityFloor(absolute=0.371) and floor.threshold(None) == 0.371
    assert floor.passes(0.269, 0.2) is False and floor.passes(0.371, 0.9) is True
    off = parse_utility_floor("0")
    assert off.off and off.threshold(0.9) is None and off.passes(0.0, 0.9) is None
    assert parse_utility_floor(floor.spec()) == floor and parse_utility_floor(off.spec()) == off


@pytest.mark.parametrize("text", ["1.5", "-0.1", "abs:2", "abs:", "abs:x", "half", "nan", "abs:nan"])
def test_bad_floors_are_one_line_errors(text):
    with pytest.raises(UserError, match="--utility-floor") as error:
        parse_utility_floor(text)
    assert "\n" not in str(error.value) and "abs:0.371" in str(error.value)


def _row(method, utilities):
    runs = [SimpleNamespace(seed=seed, metrics={"utility": {"value": u}}) for seed, u in enumerate(utilities)]
    return SimpleNamespace(method=method, ok=runs, stats={"utility": Stat(tuple(utilities))})


def test_a_row_is_judged_by_its_mean_and_each_run_by_its_own_utility():
    """Target 0.8, floor 0.75 -> 0.6. a: runs 0.7 and 0.55 (mean 0.625) passes, one run below;
    b: 0.5 and 0.62 (mean 0.56) is below the floor, one run below."""
    rows = [_row("target", [0.8]), _row("a", [0.7, 0.55]), _row("b", [0.5, 0.62])]
    target, verdicts = judge(rows, UtilityFloor(0.75), "target")
    assert target == 0.8 and "target" not in verdicts
    assert verdicts["a"] == {"passed": True, "runs": {0: True, 1: False}, "below": 1}
    assert verdicts["b"] == {"passed": False, "runs": {0: False, 1: True}, "below": 1}


def test_the_tuning_rule_names_the_floor_and_its_threshold_once_the_target_is_measured():
    """Before the target's utility is known the rule states the floor (never "not applied", which a
    tuned YAML would then carry); with it, the threshold: 0.75 x 0.8 = 0.600."""
    from simu_bench.pipeline.plan import Plan, TunePlan

    tune = TunePlan(run=Plan())
    assert tune.rule_text().endswith("trials below the utility floor 0.75 x the target's utility cannot win")
    assert "= 0.600 cannot win" in tune.rule_text(0.8)
    assert "floor" not in TunePlan(run=Plan(), utility_floor=parse_utility_floor("0")).rule_text(0.8)
