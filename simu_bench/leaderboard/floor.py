"""The utility floor: a model that lost its utility is shown, counted, and never ranked or chosen.

The official LUME evaluation flags a model whose MMLU falls below 75% of the model before
unlearning (0.371 for the 7B target), and the organisers left such submissions out of the
ranking. `--utility-floor` states the same rule for every leaderboard, tuning and frontier:

    --utility-floor 0.75       a run passes when utility >= 0.75 x the target's utility (default)
    --utility-floor 0          off: every run passes
    --utility-floor abs:0.371  a run passes when utility >= 0.371 (a fixed value, e.g. the 7B target's)

A run without a utility number (no utility measured), or a fraction floor without the target's
utility, is not judged (`passes` returns None) and is treated as passing: the floor cannot
speak about what was not measured. A leaderboard row (a method over its seeds) passes when the
mean utility of its finished runs passes, the analogue of one submitted model; each run's own
verdict is recorded and counted too.
"""

from __future__ import annotations

from dataclasses import dataclass

from simu_bench.errors import UserError

DEFAULT_FRACTION = 0.75
EXAMPLE = "e.g. --utility-floor 0.75 (of the target's utility), 0 (off) or abs:0.371"


@dataclass(frozen=True)
class UtilityFloor:
    """`fraction` of the target's utility, or an `absolute` value when it is set."""

    fraction: float = DEFAULT_FRACTION
    absolute: float | None = None

    @property
    def off(self) -> bool:
        return self.absolute is None and self.fraction == 0

    def threshold(self, target_utility: float | None) -> float | None:
        """The utility a run needs; None when there is no floor or nothing to scale."""
        if self.absolute is not None:
            return self.absolute
        if self.off or target_utility is None:
            return None
        return self.fraction * target_utility

    def passes(self, utility: float | None, target_utility: float | None) -> bool | None:
        """True or False; None when not judged (no floor, no utility, or no target utility to scale)."""
        threshold = self.threshold(target_utility)
        if threshold is None or utility is None:
            return None
        return utility >= threshold

    def spec(self) -> str:
        """The flag's value that gives this floor back (`parse_utility_floor(floor.spec()) == floor`)."""
        return f"abs:{self.absolute:g}" if self.absolute is not None else f"{self.fraction:g}"

    def text(self, target_utility: float | None = None) -> str:
        """The floor as applied to a target: its threshold, or that it could not be applied."""
        threshold = self.threshold(target_utility)
        if self.off or self.absolute is not None:
            return self.rule()
        where = f" = {threshold:.3f}" if threshold is not None else " (target utility unknown: not applied)"
        return f"{self.rule()}{where}"

    def rule(self) -> str:
        """The floor as a rule, before any target is measured."""
        if self.off:
            return "no utility floor"
        if self.absolute is not None:
            return f"utility floor {self.absolute:g} (absolute)"
        return f"utility floor {self.fraction:g} x the target's utility"

    def to_dict(self, target_utility: float | None = None) -> dict:
        return {"spec": self.spec(), "fraction": None if self.absolute is not None else self.fraction,
                "absolute": self.absolute, "target_utility": target_utility,
                "threshold": self.threshold(target_utility)}


def parse_utility_floor(text: str | float) -> UtilityFloor:
    """`0.75`, `0` or `abs:0.371` (each in [0, 1]); one clear `UserError` otherwise."""
    raw = str(text).strip()
    absolute = raw.lower().startswith("abs:")
    number = raw[4:].strip() if absolute else raw
    try:
        value = float(number)
    except ValueError:
        raise UserError(f"--utility-floor {raw!r}: expected a number in [0, 1] or abs:VALUE; {EXAMPLE}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        kind = "an absolute utility" if absolute else "a fraction of the target's utility"
        raise UserError(f"--utility-floor {raw!r}: {kind} must lie in [0, 1], got {value:g}; {EXAMPLE}")
    return UtilityFloor(absolute=value) if absolute else UtilityFloor(fraction=value)


def judge(rows, floor: UtilityFloor, reference: str) -> tuple[float | None, dict[str, dict]]:
    """The target's utility and, per method row, whether it passed and each finished run's verdict.

    `rows` are leaderboard rows (`method`, `ok` runs with `seed` and `metrics`, `stats["utility"]`);
    the row named `reference` (the target before unlearning) gives the utility the fraction scales.
    """
    target = next((row.stats["utility"].mean for row in rows if row.method == reference), None)
    verdicts = {}
    for row in rows:
        if row.method == reference:
            continue
        runs = {run.seed: floor.passes(((run.metrics or {}).get("utility") or {}).get("value"), target)
                for run in row.ok}
        verdicts[row.method] = {"passed": floor.passes(row.stats["utility"].mean, target), "runs": runs,
                                "below": sum(1 for verdict in runs.values() if verdict is False)}
    return target, verdicts


def add_argument(parser) -> None:
    """`--utility-floor F|abs:V`, the same flag in every command that ranks or chooses; parse the
    value with `parse_utility_floor` (in the command, where a `UserError` becomes one line)."""
    parser.add_argument(
        "--utility-floor", default=str(DEFAULT_FRACTION), metavar="F|abs:V",
        help=f"runs with utility below F x the target's utility (or below V) are shown and counted but not ranked "
             f"or chosen, as the official LUME evaluation discards them (default: {DEFAULT_FRACTION}; 0: off)",
    )
