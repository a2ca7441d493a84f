"""simu-bench: a benchmark harness for machine unlearning in language models."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `simu_bench.evaluate(...)` and `simu_bench.EvalResult` load lm-eval and torch only when
    # used, so `import simu_bench` (and the CLI) stays fast. The module `simu_bench.evaluate`
    # is itself callable (it forwards to its `evaluate` function), so the name works whether
    # or not the submodule was imported first.
    if name in ("evaluate", "EvalResult"):
        import importlib

        module = importlib.import_module("simu_bench.evaluate")
        return module if name == "evaluate" else module.EvalResult
    raise AttributeError(f"module 'simu_bench' has no attribute {name!r}")
