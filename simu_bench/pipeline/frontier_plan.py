"""What `simu-bench frontier` was asked to do: its flags, as fields of `FrontierPlan`.

Kept apart from `simu_bench.pipeline.frontier` (which runs it, with Optuna and torch) because the
command line reads these fields to build `--help`, which must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.leaderboard.floor import DEFAULT_FRACTION, UtilityFloor, parse_utility_floor
from simu_bench.pipeline.flags import flag
from simu_bench.pipeline.plan import Plan
from simu_bench.pipeline.seeds import parse_seeds

MANIFEST = "frontier-plan.json"
PRUNERS = ("none", "halving")


def parse_levels(text: str, name: str = "--levels") -> tuple[float, ...]:
    """`0.1,0.2,0.3` -> (0.1, 0.2, 0.3): one or more forget levels in (0, 1), sorted, no repeats."""
    try:
        levels = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise UserError(f"{name} {text!r}: expected comma-separated forget levels in (0, 1), e.g. 0.1,0.2,0.3") \
            from None
    if not levels:
        raise UserError(f"{name} {text!r}: no level given; expected forget levels in (0, 1), e.g. 0.1,0.2,0.3")
    outside = [f"{level:g}" for level in levels if not 0.0 < level < 1.0]
    if outside:
        raise UserError(f"{name} {text!r}: {', '.join(outside)} outside (0, 1); a forget level is a score strictly "
                        "between 0 and 1, e.g. 0.1,0.2,0.3")
    return tuple(levels)


def _trials(value: int, name: str) -> None:
    if value < 1:
        raise UserError(f"{name} {value}: expected a budget of at least 1 trial per method, e.g. {name} 16")


@dataclass(frozen=True)
class FrontierPlan:
    """What `simu-bench frontier` was asked to do; `run` holds the trials' settings (seeds = dev
    seeds, out = DIR/trials, evaluation points). Each other field is one of its flags."""

    run: Plan
    out: Path = field(default=Path("frontier"), metadata=flag(
        "output folder (default: frontier/)", commands=("frontier",), metavar="DIR", always=True))
    levels: tuple[float, ...] = field(default=(0.1, 0.2, 0.3), metadata=flag(
        "forget levels in (0, 1) (default: 0.1,0.2,0.3)", commands=("frontier",), metavar="0.1,0.2",
        default="0.1,0.2,0.3", parse=parse_levels, always=True))
    trials: int = field(default=16, metadata=flag(
        "trials per method, the same for every method (default: 16)", commands=("frontier",), metavar="N",
        check=_trials, always=True))
    dev_seeds: tuple[int, ...] = field(default=(100, 101), metadata=flag(
        "seeds the trials run on; must not overlap --seeds (default: 100,101)", commands=("frontier",),
        metavar="100,101", default="100,101", parse=parse_seeds, always=True))
    report_seeds: tuple[int, ...] = field(default=tuple(range(20)), metadata=flag(
        "report seeds, never tuned on: each winner runs on them (default: 0-19)", commands=("frontier",),
        name="--seeds", metavar="0-19|0,1,2", default="0-19", parse=parse_seeds, always=True))
    floor: UtilityFloor = field(default=UtilityFloor(), metadata=flag(
        f"points whose utility is below F x the target's utility (or below V) cannot win (default: "
        f"{DEFAULT_FRACTION}; 0: off)", commands=("frontier",), name="--utility-floor", metavar="F|abs:V",
        default=str(DEFAULT_FRACTION), parse=lambda text, name: parse_utility_floor(text)))
    sampler_seed: int = field(default=0, metadata=flag(
        "seed of the TPE sampler (default: 0)", commands=("frontier",), metavar="N"))
    pruner: str = field(default="none", metadata=flag(
        "halving: Optuna's successive halving stops a hopeless trial after its first dev seed (default: none)",
        commands=("frontier",), choices=PRUNERS))

    def manifest(self) -> dict:
        """Everything a frontier folder's results depend on (a resume must match it exactly)."""
        return {"methods": list(self.run.methods), "levels": list(self.levels), "trials": self.trials,
                "dev_seeds": list(self.run.seeds), "report_seeds": list(self.report_seeds),
                "utility_floor": self.floor.spec(), "sampler_seed": self.sampler_seed, "pruner": self.pruner,
                "overrides": list(self.run.overrides), "eval_at": self.run.eval_at, "eval_every": self.run.eval_every,
                "eval_rows": self.run.eval_rows, "max_new_tokens": self.run.max_new_tokens,
                "data": None if self.run.data is None else str(self.run.data), "model": self.run.model,
                "utility_tasks": list(self.run.utility_tasks or []), "optuna": version("optuna")}
