"""`simu-bench ladder`: the same methods and seeds on several target sizes, one run store each.

    simu-bench ladder --sizes tiny,small,medium --methods fo_graddiff,so_graddiff,simu,random_mask \
        --seeds 0,1,2,3,4 --out ladder

Each size runs as `simu-bench run` would on the embedded target of that size (`OUT/<size>/`,
with its own leaderboard); `OUT/ladder.{json,md,png}` then compare sizes
(`simu_bench.leaderboard.ladder`).

Learning rate across sizes, one declared rule for every method (never a rule per method): each
method's lr is its YAML's (tuned on `tiny`) times sqrt(hidden(tiny) / hidden(size)), the usual
width scaling of Adam-type steps (an update of fixed per-coordinate size moves a wider layer's
output further); all other settings are the YAML's. On `tiny` the factor is 1, so its runs are the
shipped configs and share their run identities with `simu-bench run`.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import replace
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.leaderboard import ladder
from simu_bench.pipeline import runner
from simu_bench.pipeline.plan import Plan
from simu_bench.target_model.sizes import DEFAULT_SIZE, SIZES, target_config
from simu_bench.unlearning import registry

LR_RULE = "lr(size) = lr(YAML, tuned on tiny) x sqrt(hidden(tiny) / hidden(size)), the same for every method"


def lr_factor(size: str) -> float:
    """sqrt(hidden(tiny) / hidden(size)): 1 on tiny, 1/sqrt(2) on small, 1/2 on medium."""
    return math.sqrt(SIZES[DEFAULT_SIZE].hidden_size / target_config(size).hidden_size)


def parse_sizes(text: str) -> list[str]:
    """`tiny,small,...`: known, distinct, and at least two (a ladder of one size compares nothing)."""
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    for size in sizes:
        target_config(size)
    if len(set(sizes)) != len(sizes):
        raise UserError(f"--sizes {text}: a size is listed twice; list each once, e.g. --sizes tiny,small,medium")
    if len(sizes) < 2:
        raise UserError(f"--sizes {text}: a ladder needs at least two sizes to compare, e.g. --sizes tiny,small,medium "
                        "(one size is a plain `simu-bench run`)")
    return sizes


def lr_overrides(methods, size: str, overrides=()) -> tuple[str, ...]:
    """`METHOD.optimizer.lr=...` for every method on `size` (none on tiny, where the factor is 1)."""
    factor = lr_factor(size)
    if factor == 1:
        return ()
    scaled = []
    for method in methods:
        lr = registry.load_config(method, list(overrides)).optimizer.lr
        scaled.append(f"{method}.optimizer.lr={lr * factor:.6g}")
    return tuple(scaled)


def size_plans(base: Plan, sizes: list[str]) -> list[Plan]:
    """One `Plan` per size: the base plan into `out/<size>` on that size, with the lr rule applied.
    Its command is the `simu-bench run` that does the same, so that the size's run store records how
    to redo it and its worker processes (`simu_bench.pipeline.workers`) run that size alone."""
    plans = []
    for size in sizes:
        overrides = tuple(base.overrides) + lr_overrides(base.methods, size, base.overrides)
        plan = replace(base, size=size, out=Path(base.out) / size, overrides=overrides)
        plans.append(replace(plan, command=run_command(plan)))
    return plans


def run_command(plan: Plan) -> str:
    """`simu-bench run` with this plan's methods, seeds, size, output and overrides."""
    words = ["simu-bench", "run", "--methods", ",".join(plan.methods), "--seeds", ",".join(map(str, plan.seeds)),
             "--size", plan.size, "--out", str(plan.out)]
    for override in plan.overrides:
        words += ["--set", override]
    return shlex.join(words)


def run_ladder(base: Plan, sizes: list[str], pairs, say=print) -> tuple[dict[str, int], list[Path]]:
    """Run every size's plan, then write the ladder report; returns the run counts and the files."""
    counts: dict[str, int] = {}
    for plan in size_plans(base, sizes):
        say(f"size {plan.size}: {plan.out}")
        for status, count in runner.run_benchmark(plan, say).items():
            counts[status] = counts.get(status, 0) + count
    return counts, ladder.write(base.out, sizes, pairs, LR_RULE, [base.command] if base.command else [])
