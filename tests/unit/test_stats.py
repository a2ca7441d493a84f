"""Leaderboard statistics: matched forgetting, paired differences, shared ranks, mean CIs.

Hand-worked cases use 2 degrees of freedom where Student's t has a closed form:
    quantile  t_{q,2} = (2q - 1) / sqrt(2q(1 - q))      e.g. t_{0.975,2} = 0.95 / sqrt(0.04875) = 4.30265
    two-sided p(t, 2) = 1 - t / sqrt(t^2 + 2)
"""

from __future__ import annotations

import math

import pytest
from scipy import stats

from simu_bench.errors import UserError
from simu_bench.leaderboard.stats import Paired, matched_value, mean_ci, paired_difference, shared_ranks


def point(step, forget, retain, utility=0.5):
    return {"step": step, "forget": forget, "retain": retain, "utility": utility}


# --- matched_value -----------------------------------------------------------------------------


def test_matched_value_interpolates_on_forget():
    """forget 0.5 -> 0.1, retain 0.9 -> 0.7 (after an earlier evaluation at 0.8, which is not the one before).
    L = 0.3: frac = (0.5 - 0.3) / 0.4 = 0.5,  retain = 0.9 + 0.5 * (0.7 - 0.9) = 0.8.
    L = 0.2: frac = (0.5 - 0.2) / 0.4 = 0.75, retain = 0.9 - 0.75 * 0.2 = 0.75 (0.85 if frac were flipped).
    """
    points = [point(0, 0.8, 1.0), point(5, 0.5, 0.9), point(10, 0.1, 0.7)]
    assert matched_value(points, 0.3) == pytest.approx(0.8)
    assert matched_value(points, 0.2) == pytest.approx(0.75)


def test_matched_value_uses_the_first_crossing():
    """Down to 0.2 (retain 0.6 at L = 0.3 between steps 0 and 1), back up, down again with better retain."""
    points = [point(0, 0.4, 0.8), point(1, 0.2, 0.4), point(2, 0.5, 0.9), point(3, 0.3, 0.9)]
    # frac = (0.4 - 0.3) / 0.2 = 0.5, retain = 0.8 + 0.5 * (0.4 - 0.8) = 0.6
    assert matched_value(points, 0.3) == pytest.approx(0.6)


def test_matched_value_first_point_already_below_and_exactly_at_level():
    assert matched_value([point(0, 0.2, 0.77), point(5, 0.1, 0.5)], 0.3) == 0.77
    # x == level counts as reached: frac = (0.5 - 0.3) / (0.5 - 0.3) = 1 -> that point's own retain
    assert matched_value([point(0, 0.5, 0.9), point(5, 0.3, 0.6)], 0.3) == pytest.approx(0.6)


def test_matched_value_never_reached_is_none():
    assert matched_value([point(0, 0.9, 0.9), point(5, 0.31, 0.8)], 0.3) is None
    assert matched_value([], 0.3) is None


def test_matched_value_skips_points_without_x():
    """Steps 5-7 have no usable forget, so the step 0 evaluation (0.5, 0.9) pairs with step 8 (0.1, 0.7)."""
    points = [
        point(0, 0.5, 0.9),
        point(5, None, 0.0),
        point(6, math.nan, 0.0),
        {"step": 7, "retain": 0.0},
        point(8, 0.1, 0.7),
    ]
    assert matched_value(points, 0.3) == pytest.approx(0.8)


def test_matched_value_other_keys():
    """Utility read off at retain = 0.5: retain 0.9 -> 0.1 gives frac 0.5, utility 0.6 + 0.5 * (0.2 - 0.6) = 0.4."""
    points = [point(0, 0.0, 0.9, utility=0.6), point(5, 0.0, 0.1, utility=0.2)]
    assert matched_value(points, 0.5, x="retain", y="utility") == pytest.approx(0.4)


def test_matched_value_missing_y_is_an_error():
    with pytest.raises(UserError, match="step 5.*'retain'"):
        matched_value([point(0, 0.5, 0.9), {"step": 5, "forget": 0.1}], 0.3)


# --- paired_difference -------------------------------------------------------------------------


def test_paired_difference_hand_worked():
    """d = [0.1, 0.2, 0.3]: mean 0.2, sd 0.1, se 0.1 / sqrt(3) = 0.057735, t = 0.2 / se = 2 sqrt(3) = 3.4641.
    CI: 0.2 +/- 4.30265 * 0.057735 = 0.2 +/- 0.248414.
    p: 1 - 3.4641 / sqrt(12 + 2) = 1 - sqrt(6/7) = 0.074180.
    """
    result = paired_difference({0: 0.6, 1: 0.7, 2: 0.9}, {0: 0.5, 1: 0.5, 2: 0.6})
    assert result.n == 3
    assert result.diff == pytest.approx(0.2)
    assert result.ci_low == pytest.approx(0.2 - 0.248414, abs=1e-6)
    assert result.ci_high == pytest.approx(0.2 + 0.248414, abs=1e-6)
    assert result.p_value == pytest.approx(1 - math.sqrt(6 / 7))
    assert result.boot_low is None and result.boot_high is None


def test_paired_difference_confidence_level():
    """90%: t_{0.95,2} = 0.9 / sqrt(0.095) = 2.919986, half-width 2.919986 * 0.057735 = 0.168586."""
    result = paired_difference({0: 0.1, 1: 0.2, 2: 0.3}, {0: 0.0, 1: 0.0, 2: 0.0}, confidence=0.9)
    assert result.ci_high - result.diff == pytest.approx(0.168586, abs=1e-6)


def test_paired_difference_is_a_minus_b():
    a, b = {0: 0.6, 1: 0.7, 2: 0.9}, {0: 0.5, 1: 0.5, 2: 0.6}
    forward, backward = paired_difference(a, b), paired_difference(b, a)
    assert backward.diff == pytest.approx(-forward.diff)
    assert (backward.ci_low, backward.ci_high) == pytest.approx((-forward.ci_high, -forward.ci_low))
    assert backward.p_value == pytest.approx(forward.p_value)


def test_paired_difference_matches_scipy_ttest_rel():
    """Our t statistic and interval are hand-rolled around t.ppf / t.sf, so scipy's paired test is a real check."""
    a = [0.61, 0.55, 0.72, 0.58, 0.66, 0.49, 0.70]
    b = [0.52, 0.57, 0.60, 0.50, 0.61, 0.47, 0.58]
    ours = paired_difference(dict(enumerate(a)), dict(enumerate(b)), confidence=0.9)
    reference = stats.ttest_rel(a, b)
    interval = reference.confidence_interval(confidence_level=0.9)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (ours.ci_low, ours.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)


def test_paired_difference_uses_only_shared_present_seeds():
    """Seeds 0, 1, 4 are in both with values; 2 diverged in a, 3 only in a, 5 only in b, 6 NaN in b."""
    a = {0: 0.5, 1: 0.6, 2: None, 3: 0.9, 4: 0.8, 6: 0.4}
    b = {0: 0.4, 1: 0.4, 2: 0.1, 4: 0.5, 5: 0.2, 6: math.nan}
    result = paired_difference(a, b)
    assert result.n == 3
    assert result.diff == pytest.approx(0.2)  # d = [0.1, 0.2, 0.3], as in the hand-worked case
    assert result.p_value == pytest.approx(1 - math.sqrt(6 / 7))


def test_paired_difference_too_few_seeds():
    assert paired_difference({}, {}) == Paired(None, None, None, None, 0)
    assert paired_difference({0: 0.5}, {1: 0.5}) == Paired(None, None, None, None, 0)
    one = paired_difference({0: 0.7, 1: None}, {0: 0.5, 1: 0.4}, bootstrap=100)
    assert one.n == 1 and one.diff == pytest.approx(0.2)
    assert (one.ci_low, one.ci_high, one.p_value, one.boot_low) == (None, None, None, None)


def test_paired_difference_identical_differences():
    """sd = 0, so t is undefined: p = 0 for a non-zero shift, 1 for none; the CI is the point."""
    shifted = paired_difference({0: 0.5, 1: 0.75, 2: 1.0}, {0: 0.25, 1: 0.5, 2: 0.75})  # d = 0.25 exactly
    assert (shifted.diff, shifted.ci_low, shifted.ci_high, shifted.p_value) == (0.25, 0.25, 0.25, 0.0)
    same = paired_difference({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert (same.diff, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_difference_bootstrap_hand_worked():
    """d = [0, 0, 0, 0, 1]: a resample's mean is k/5 with k ~ Binomial(5, 0.2).
    P(k = 0) = 0.8^5 = 0.328 > 0.025, so the 2.5% point is 0.
    P(k <= 2) = 0.942 < 0.975 <= P(k <= 3) = 0.993, so the 97.5% point is 3/5 = 0.6.
    At 80%: P(k <= 1) = 0.737 < 0.9 <= 0.942, so the 90% point is 2/5 = 0.4.
    """
    a, b = {s: float(s == 4) for s in range(5)}, {s: 0.0 for s in range(5)}
    result = paired_difference(a, b, bootstrap=4000, seed=1)
    assert (result.boot_low, result.boot_high) == pytest.approx((0.0, 0.6))
    result = paired_difference(a, b, confidence=0.8, bootstrap=4000, seed=1)
    assert (result.boot_low, result.boot_high) == pytest.approx((0.0, 0.4))


def test_paired_difference_bootstrap_is_seeded_and_order_free():
    a = {s: 0.5 + 0.03 * ((s * 7) % 5) for s in range(8)}
    b = {s: 0.45 + 0.02 * ((s * 3) % 4) for s in range(8)}
    first = paired_difference(a, b, bootstrap=500, seed=3)
    assert first.boot_low < first.diff < first.boot_high
    reordered = paired_difference(dict(reversed(a.items())), b, bootstrap=500, seed=3)
    assert (reordered.boot_low, reordered.boot_high) == (first.boot_low, first.boot_high)
    other = paired_difference(a, b, bootstrap=500, seed=4)
    assert (other.boot_low, other.boot_high) != (first.boot_low, first.boot_high)
    assert paired_difference(a, b, bootstrap=0).boot_low is None
    four = {s: a[s] for s in range(4)}
    assert paired_difference(four, b, bootstrap=500).boot_low is None  # n = 4 < 5


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"bootstrap": -1}])
def test_paired_difference_rejects_bad_arguments(kwargs):
    with pytest.raises(UserError):
        paired_difference({0: 0.1}, {0: 0.2}, **kwargs)


# --- shared_ranks ------------------------------------------------------------------------------


def test_shared_ranks_competition_ranking():
    """A > B (n.s.) > C (significant) > D (n.s.) > E (significant): 1, 1, 3, 3, 5."""
    significant_pairs = {("B", "C"), ("D", "E")}
    calls = []

    def significant(above, name):
        calls.append((above, name))
        return (above, name) in significant_pairs

    ranks = shared_ranks(["A", "B", "C", "D", "E"], significant)
    assert ranks == {"A": 1, "B": 1, "C": 3, "D": 3, "E": 5}
    assert calls == [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E")]  # each against the one just above


def test_shared_ranks_extremes():
    assert shared_ranks(["A", "B", "C"], lambda above, name: True) == {"A": 1, "B": 2, "C": 3}
    assert shared_ranks(["A", "B", "C"], lambda above, name: False) == {"A": 1, "B": 1, "C": 1}
    assert shared_ranks([], lambda above, name: True) == {}


def test_shared_ranks_rejects_repeats():
    with pytest.raises(UserError, match="'A'"):
        shared_ranks(["A", "B", "A"], lambda above, name: True)


# --- mean_ci -----------------------------------------------------------------------------------


def test_mean_ci_hand_worked():
    """[1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.290994, se 0.645497, t_{0.975,3} 3.182446 -> 2.054260."""
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(2.054260, abs=1e-6)


def test_mean_ci_matches_scipy_interval():
    values = [0.61, 0.55, 0.72, 0.58, 0.66]
    mean, half = mean_ci(values, confidence=0.9)
    low, high = stats.t.interval(0.9, len(values) - 1, loc=mean, scale=stats.sem(values))
    assert (mean - half, mean + half) == pytest.approx((low, high), rel=1e-12)


def test_mean_ci_small_samples():
    assert mean_ci([]) == (None, None)
    assert mean_ci([0.4]) == (0.4, None)
    with pytest.raises(UserError):
        mean_ci([0.4, 0.5], confidence=95)
