"""simu-bench: a benchmark harness for machine unlearning in language models.

The package is one folder per stage, in the order the data flows (a stage never imports a
later one): `data` -> `target` -> `unlearning` (and the methods: `simu`, the top-level
`baselines`) -> `evaluation` -> `store` -> `leaderboard`; `bench` ties them into runs and
`commands` into the `simu-bench` command line.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from simu_bench import evaluate` (the function) and `EvalResult` load lm-eval and torch
    # only when used, so `import simu_bench` (and the CLI) stays fast.
    if name in ("evaluate", "EvalResult"):
        from simu_bench.evaluation import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module 'simu_bench' has no attribute {name!r}")
