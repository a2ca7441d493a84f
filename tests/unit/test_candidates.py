"""The candidate rule: a trial's best (setting, step) at a forgetting level, worked by hand."""

import pytest

from simu_bench.leaderboard.floor import UtilityFloor
from simu_bench.pipeline.candidates import best_point, dev_mean_points, sampler_value, trial_value


def p(step, forget, retain, utility=0.8):
    return {"step": step, "forget": forget, "retain": retain, "utility": utility, "mia": None, "final": None}


# A path that dips and recovers, as SIMU's does: crosses 0.3 at step 4 with retain 0.2 and
# ends at step 16 with forget 0.1, retain 0.94.
DIP = [p(0, 0.95, 0.99), p(1, 0.8, 0.97), p(2, 0.5, 0.6), p(4, 0.25, 0.2), p(8, 0.15, 0.7), p(16, 0.1, 0.94)]


def test_a_path_that_dips_and_recovers_is_judged_by_its_best_point():
    """L = 0.3: eligible steps 4 (0.2), 8 (0.7), 16 (0.94) -> step 16; L = 0.12: only step 16;
    L = 0.05: none."""
    assert best_point(DIP, 0.3)["step"] == 16
    assert best_point(DIP, 0.12)["retain"] == 0.94
    assert best_point(DIP, 0.05) is None


def test_a_point_exactly_at_the_level_is_eligible():
    assert best_point(DIP, 0.25)["step"] == 16 and best_point([p(4, 0.25, 0.2)], 0.25)["step"] == 4


def test_ties_go_to_utility_then_to_the_earlier_step():
    tied = [p(2, 0.1, 0.9, utility=0.5), p(4, 0.1, 0.9, utility=0.7), p(8, 0.1, 0.9, utility=0.7)]
    assert best_point(tied, 0.2)["step"] == 4


def test_points_below_the_utility_floor_cannot_win():
    """Target utility 0.8, floor 0.75 -> 0.6: step 16 (utility 0.1) is out; step 8 (0.61) wins;
    with the floor off step 16 wins."""
    points = [p(4, 0.25, 0.2), p(8, 0.15, 0.7, utility=0.61), p(16, 0.1, 0.94, utility=0.1)]
    assert best_point(points, 0.3, UtilityFloor(0.75), 0.8)["step"] == 8
    assert best_point(points, 0.3, UtilityFloor(0.0), 0.8)["step"] == 16
    assert best_point(points, 0.12, UtilityFloor(0.75), 0.8) is None


def test_dev_means_are_taken_step_by_step_over_the_steps_every_seed_has():
    """Seed a has steps 0, 2, 4; seed b stopped (diverged) after step 2: steps 0 and 2 remain.
    Step 2: forget (0.3 + 0.1) / 2 = 0.2, retain (0.8 + 0.6) / 2 = 0.7."""
    a = [p(0, 1.0, 1.0), p(2, 0.3, 0.8), p(4, 0.0, 0.9)]
    b = [p(0, 1.0, 1.0), p(2, 0.1, 0.6, utility=None)]
    means = dev_mean_points([a, b])
    assert [m["step"] for m in means] == [0, 2]
    assert means[1]["forget"] == pytest.approx(0.2) and means[1]["retain"] == pytest.approx(0.7)
    assert means[1]["utility"] is None  # one seed without a utility number: not judged
    assert trial_value([a, b], 0.2)["step"] == 2 and trial_value([a, []], 0.2) is None


def test_the_value_told_to_the_sampler_serves_every_level():
    """Levels 0.1 and 0.3 on DIP: 0.94 at both -> 0.94. A trial that never gets below 0.5:
    -(0.5) at each level -> -0.5, below any trial that meets a level."""
    assert sampler_value([DIP], (0.1, 0.3), UtilityFloor(0.0), None) == pytest.approx(0.94)
    assert sampler_value([DIP[:3]], (0.1, 0.3), UtilityFloor(0.0), None) == pytest.approx(-0.5)
    assert sampler_value([DIP[:5]], (0.1, 0.3), UtilityFloor(0.0), None) == pytest.approx((-0.15 + 0.7) / 2)
