"""Statistics for comparing unlearning methods fairly: paired over shared seeds, at matched forgetting.

- `matched_value`: the retain score where a trajectory's forget score first drops to a level L.
- `paired_difference`: mean paired difference over shared seeds, with a paired-t CI and p-value
  and an optional percentile bootstrap over seeds as a check.
- `shared_ranks`: competition ranks where methods not significantly apart share a rank.
- `mean_ci`: mean and Student-t half-width of one cell, for the leaderboard.

Pure functions on plain numbers; the leaderboard decides what to feed them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from simu_bench.errors import UserError


def _present(value) -> bool:
    # A diverged run can report NaN instead of None; both mean "no value".
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UserError(f"confidence must lie strictly between 0 and 1, got {confidence!r}; use e.g. 0.95")


def _t_quantile(confidence: float, df: int) -> float:
    """Two-sided critical value: t such that P(|T_df| <= t) = confidence."""
    return float(student_t.ppf(0.5 + confidence / 2.0, df))


def matched_value(points: Sequence[Mapping], level: float, x: str = "forget", y: str = "retain") -> float | None:
    """Value of `y` where `x` first drops to `level` along a trajectory.

    `points` are evaluations in step order (dicts with "step", "forget", "retain", ...). Points
    whose `x` is missing, None or NaN are skipped. Let point i be the first with x_i <= level and
    point p the usable point before it (so x_p > level). Then, interpolating linearly on x:

        frac  = (x_p - level) / (x_p - x_i)        # in (0, 1], since x_p > level >= x_i
        value = y_p + frac * (y_i - y_p)

    E.g. forget 0.5 -> 0.1 with retain 0.9 -> 0.7 at level 0.3: frac 0.5, value 0.8.
    If the first usable point already has x <= level, its own y is returned (nothing earlier to
    interpolate from). The FIRST crossing is used, not the last, because a method that forgets
    then drifts back must not be credited with a later, more favourable crossing.

    Returns:
        The matched value, or None when `x` never reaches `level` (the run did not forget enough).

    Raises:
        UserError: when a point used for the value has no `y`.
    """
    previous = None
    for point in points:
        if not _present(point.get(x)):
            continue
        if point[x] <= level:
            here = _y(point, y)
            if previous is None:
                return here
            frac = (previous[x] - level) / (previous[x] - point[x])
            return _y(previous, y) + frac * (here - _y(previous, y))
        previous = point
    return None


def _y(point: Mapping, y: str) -> float:
    value = point.get(y)
    if not _present(value):
        raise UserError(
            f"evaluation at step {point.get('step')!r} has no {y!r} value but is needed to read it at the "
            f"matched level; found keys {sorted(point)}; re-run the evaluation of that step"
        )
    return float(value)


@dataclass(frozen=True)
class Paired:
    """Mean paired difference a - b over the seeds both methods have, with its uncertainty.

    `diff` is None when no seed is shared; `ci_low`, `ci_high`, `p_value` are None when n < 2;
    `boot_low`, `boot_high` are None unless a bootstrap was asked for and n >= 5.
    """

    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n: int
    boot_low: float | None = None
    boot_high: float | None = None


def paired_difference(
    a: Mapping[object, float | None],
    b: Mapping[object, float | None],
    *,
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
) -> Paired:
    """Paired comparison of two methods run on the same seeds (maps seed -> value).

    Only seeds with a value (not None/NaN) in both maps are used: a seed that diverged for one
    method has no pair. With differences d_1..d_n (d_s = a_s - b_s):

        diff = mean(d);  sd = sample sd of d (n - 1);  se = sd / sqrt(n);  t = diff / se
        CI   = diff +/- t_{(1+confidence)/2, n-1} * se
        p    = 2 * P(T_{n-1} >= |t|)                (two-sided paired t-test)

    E.g. d = [0.1, 0.2, 0.3]: diff 0.2, sd 0.1, se 0.0577, t 3.4641, t_{0.975, 2} 4.3027,
    CI 0.2 +/- 0.2484, p 0.0742. When all d are identical (sd = 0) the t statistic is undefined:
    p is 0 if diff != 0 else 1, and the CI collapses to [diff, diff].

    With `bootstrap` = B > 0 and n >= 5, also a percentile bootstrap: B resamples of the n seeds
    with replacement (numpy Generator seeded with `seed`), the (1-confidence)/2 and
    (1+confidence)/2 quantiles of the B resampled means. Below 5 seeds there are too few
    distinct resamples for the percentiles to mean anything.
    """
    _check_confidence(confidence)
    if bootstrap < 0:
        raise UserError(f"bootstrap must be >= 0 resamples, got {bootstrap!r}; use 0 to skip it")
    # Sorted seeds: the bootstrap does not depend on the order the maps were built in.
    seeds = sorted((s for s in a if s in b and _present(a[s]) and _present(b[s])), key=lambda s: (type(s).__name__, s))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(diffs)
    if n == 0:
        return Paired(None, None, None, None, 0)
    diff = statistics.fmean(diffs)
    if n < 2:
        return Paired(diff, None, None, None, n)
    crit = _t_quantile(confidence, n - 1)
    sd = statistics.stdev(diffs)  # exact arithmetic: identical diffs give exactly 0
    if sd == 0.0:
        low, high, p = diff, diff, (0.0 if diff != 0.0 else 1.0)
    else:
        se = sd / math.sqrt(n)
        low, high = diff - crit * se, diff + crit * se
        p = float(2.0 * student_t.sf(abs(diff / se), n - 1))
    boot_low = boot_high = None
    if bootstrap > 0 and n >= 5:
        rng = np.random.default_rng(seed)
        means = np.asarray(diffs)[rng.integers(0, n, size=(bootstrap, n))].mean(axis=1)  # (B,)
        boot_low, boot_high = (float(q) for q in np.quantile(means, [0.5 - confidence / 2, 0.5 + confidence / 2]))
    return Paired(diff, low, high, p, n, boot_low, boot_high)


def shared_ranks(ordered: Sequence[str], significant: Callable[[str, str], bool]) -> dict[str, int]:
    """Standard competition ranks (1, 1, 3, ...) where near-ties share a rank.

    `ordered` lists methods best first; `significant(above, name)` says whether `name` differs
    significantly from the method just above it. If not, `name` takes that method's rank, so a
    chain of non-significant steps shares one rank; otherwise its rank is its 1-based position.
    E.g. A > B (n.s.) > C (significant) > D (n.s.) -> A 1, B 1, C 3, D 3.
    """
    if len(set(ordered)) != len(ordered):
        twice = sorted({name for name in ordered if list(ordered).count(name) > 1})
        raise UserError(f"each method may be ranked once, but {twice} appear more than once; drop the repeats")
    ranks: dict[str, int] = {}
    for position, name in enumerate(ordered):
        above = ordered[position - 1] if position else None
        ranks[name] = ranks[above] if above is not None and not significant(above, name) else position + 1
    return ranks


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Mean and Student-t CI half-width of `values`: t_{(1+confidence)/2, n-1} * sd / sqrt(n).

    E.g. [1, 2, 3, 4]: mean 2.5, sd sqrt(5/3) = 1.2910, se 0.6455, t_{0.975, 3} 3.1824,
    half-width 2.0543. Returns (None, None) for no values and (mean, None) for one value.
    """
    _check_confidence(confidence)
    if not values:
        return None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, _t_quantile(confidence, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
