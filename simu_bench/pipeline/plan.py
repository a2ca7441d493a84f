"""What `simu-bench run` will do: checked inputs, prepared data and target, each run's config.

Every check here runs before anything is written into the output folder. A run's identity (what
its config hash covers) is the method's resolved config, the seed, the evaluation settings and
fingerprints of the data and the model, not their paths: moving the cache does not invalidate a
run store. The device is recorded in the environment, not hashed.

`--set KEY=VALUE` applies to every selected method; `--set METHOD.KEY=VALUE` only to METHOD.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from simu_bench.errors import UserError, did_you_mean
from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS
from simu_bench.store.runs import REFERENCE, Run, check_writable

MAX_SEED = 2**32 - 1  # numpy's np.random.seed takes 0 .. 2**32 - 1; python and torch take more


@dataclass(frozen=True)
class Plan:
    """Everything `simu-bench run` was asked to do."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    out: Path
    data: Path | None = None
    model: str | None = None
    utility_tasks: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    device: str = "cpu"
    quiet: bool = False
    eval_batch_size: int = BATCH_SIZE
    max_new_tokens: int = MAX_NEW_TOKENS
    threads: int | None = None  # torch CPU threads; None: 1 for the embedded target, else torch's default
    config_dir: Path | None = None  # DIR/<method>.yaml instead of the shipped YAMLs (e.g. tune's DIR/tuned)
    eval_every: int | None = None  # evaluate every K optimizer steps into trajectory.jsonl (`pipeline.trajectory`)
    eval_rows: int | None = None  # intermediate points on N forget + N retain rows; None: all rows
    dtype: str | None = None  # --dtype: train.dtype of every method (also in `overrides`) and the target's evaluation
    eval_dtype: str | None = None  # --eval-dtype: evaluate in this dtype; None: the run's train.dtype
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (not part of a run's identity)
    backend: str = "hf"  # generation: hf | vllm (`simu_bench.evaluation.backends`)
    strict: bool = False  # vllm: fall back to hf when the parity rows differ
    # question rows stop decoding once their score is decided (`evaluation.decoding`): same scores,
    # shorter stored text; tuning trials always, final evaluations when asked
    fast_decode: bool = False
    relearn: int | None = None  # relearning attack of STEPS steps after each run (`evaluation.relearn`); None: off
    relearn_fraction: float = 0.25  # of the forget documents the attack fine-tunes on
    command: str = ""

    def cpu_threads(self) -> int | None:
        """Threads to use. The embedded target (under a million parameters) runs fastest on one
        thread: its matrices are too small to split, and a second thread only adds waiting."""
        if self.threads is not None:
            return self.threads
        return 1 if self.model is None and self.device == "cpu" else None


@dataclass
class Resolved:
    """A plan after preparation: where data and model are and each run's config."""

    data_dir: Path
    model: str
    configs: dict[tuple[str, int | None], dict] = field(default_factory=dict)
    unlearn_configs: dict[str, object] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # (member NLLs, non-member NLLs) of the target, for the `reference` MIA attack of every method run
    reference_nll: tuple[list[float], list[float]] | None = None


def resolve_methods(text: str) -> tuple[str, ...]:
    """`all` or a comma-separated list of registered names, each checked against the registry."""
    from simu_bench.unlearning import registry

    available = registry.names()
    if text.strip() == "all":
        return tuple(available)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError(
            f"--methods {text!r} names no method; expected 'all' or a comma-separated list of: {', '.join(available)}"
        )
    for name in names:
        if name not in available:
            raise UserError(f"--methods: unknown method {name!r}{did_you_mean(name, available)}")
    return tuple(dict.fromkeys(names))


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected comma-separated whole numbers, e.g. --seeds 0,1,2") from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise UserError(f"--seeds {text!r}: expected one or more non-negative whole numbers, e.g. --seeds 0,1,2")
    for seed in seeds:
        check_seed(seed, "--seeds")
    return seeds


def check_seed(seed: int, flag: str = "--seed") -> None:
    """A seed must fit every generator it seeds: numpy takes 0 .. 2**32 - 1."""
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} {seed}: out of range; expected a whole number from 0 to {MAX_SEED:,} (2**32 - 1), "
                        "the range numpy's generator accepts")


def overrides_for(method: str, overrides: tuple[str, ...], methods: tuple[str, ...]) -> list[str]:
    """The `--set` overrides that apply to `method`: unprefixed ones apply to every method,
    `METHOD.key=value` (METHOD a selected method) only to that one."""
    chosen = []
    for text in overrides:
        head = text.split("=", 1)[0].split(".", 1)[0]
        if head in methods:
            if head == method:
                chosen.append(text.split(".", 1)[1])
        else:
            chosen.append(text)
    return chosen


def config_in(config_dir: Path, method: str) -> Path:
    """`config_dir`/<method>.yaml, checked to exist (`--config-dir`, e.g. the `tuned/` folder of `simu-bench tune`)."""
    path = Path(config_dir) / f"{method}.yaml"
    if not Path(config_dir).is_dir():
        raise UserError(
            f"--config-dir {config_dir}: not a folder; give a folder of <method>.yaml files, e.g. TUNE_DIR/tuned"
        )
    if not path.is_file():
        found = sorted(p.stem for p in Path(config_dir).glob("*.yaml")) or ["none"]
        raise UserError(
            f"--config-dir {config_dir}: no {method}.yaml for method {method!r} "
            f"(found: {', '.join(found)}); tune it, or leave it out of --methods"
        )
    return path


def load_method_configs(
    methods: tuple[str, ...], overrides: tuple[str, ...], config_dir: Path | None = None
) -> dict[str, object]:
    """Every method's typed config with its overrides; all problems are reported before any model loads.

    With `config_dir`, each method's config is `config_dir`/<method>.yaml instead of the shipped one.
    """
    from simu_bench.unlearning.config import parse_override
    from simu_bench.unlearning.registry import load_config

    for text in overrides:
        parse_override(text)  # a malformed --set is reported once, not once per method
    if config_dir is not None:
        paths = {method: config_in(config_dir, method) for method in methods}
        configs = {
            method: load_config(path, overrides_for(method, overrides, methods)) for method, path in paths.items()
        }
        for method, config in configs.items():
            if config.method != method:
                raise UserError(
                    f"--config-dir: {paths[method]} configures method {config.method!r}, not {method!r}; "
                    f"name the file after its method"
                )
        return configs
    configs, failed = {}, {}
    for method in methods:
        try:
            # The shipped YAML by path: a folder named like the method in the cwd must not shadow it.
            configs[method] = load_config(method, overrides_for(method, overrides, methods))
        except UserError as error:
            failed[method] = str(error)
    if failed:
        first = next(iter(failed))
        also = f"; --set also fails for {', '.join(list(failed)[1:])}" if len(failed) > 1 else ""
        hint = "; write METHOD.KEY=VALUE to set a key of one method only" if overrides and len(methods) > 1 else ""
        raise UserError(f"{first}: {failed[first]}{also}{hint}")
    return configs


def check_inputs(plan: Plan) -> dict[str, object]:
    """Cheap checks of everything the user typed; returns the methods' configs."""
    from simu_bench.data.lume import check_data_dir
    from simu_bench.evaluation.evaluator import check_utility_tasks
    from simu_bench.target_model.build import check_device, check_model

    configs = load_method_configs(plan.methods, plan.overrides, plan.config_dir)
    check_data_dir(plan.data)
    check_model(plan.model)  # config, weight headers and tokenizer files, without loading the weights
    check_device(plan.device)
    check_utility_tasks(plan.utility_tasks)
    check_writable(plan.out)
    return configs


def fingerprint(path: Path, whole_below: int = 64 << 20) -> str:
    """sha256 over a file or folder: names, sizes and contents (files over `whole_below` bytes:
    name and size only, so a multi-GB checkpoint is not read in full)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    )
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if file != path else file.name}\0{size}\0".encode())
        if size < whole_below:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def prepare_inputs(plan: Plan) -> Resolved:
    """Build or reuse the embedded target (cached), or take the given data and model."""
    from simu_bench.target_model.build import prepare

    started = time.perf_counter()
    if plan.model is None:  # the embedded target, trained on the default or on --data's subset
        prepared = prepare(plan.data, progress=not plan.quiet)
        data_dir, model = prepared.data_dir, str(prepared.target_dir)
    elif plan.data is None:  # a given model on the embedded data
        data_dir, model = prepare(None, progress=not plan.quiet).data_dir, plan.model
    else:
        data_dir, model = Path(plan.data), plan.model
    return Resolved(Path(data_dir), model, timings={"prepare": round(time.perf_counter() - started, 3)})


def evaluation_dtype(plan: Plan, unlearn) -> str:
    """The dtype a run is evaluated in: --eval-dtype, else the method's train.dtype (the model as
    unlearned); the target (no `unlearn`): --eval-dtype, else --dtype, else float32."""
    if plan.eval_dtype:
        return plan.eval_dtype
    if unlearn is not None:
        return unlearn.train.dtype
    return plan.dtype or "float32"


def run_config(plan: Plan, resolved: Resolved, method: str, seed: int | None, unlearn) -> dict:
    """The resolved config stored with a run; `paths` is informative and not hashed."""
    model_path = Path(resolved.model).expanduser()
    config = {
        "method": method,
        "seed": seed,
        "unlearn": unlearn.to_dict() if unlearn is not None else None,
        "data": {"sha256": fingerprint(resolved.data_dir)},
        "model": {"sha256": fingerprint(model_path)} if model_path.is_dir() else {"hub_id": resolved.model},
        "evaluation": {
            "max_new_tokens": plan.max_new_tokens,
            "batch_size": plan.eval_batch_size,
            "utility_tasks": list(plan.utility_tasks) if plan.utility_tasks else None,
            "dtype": evaluation_dtype(plan, unlearn),
        },
        "paths": {"data": str(resolved.data_dir), "model": resolved.model},
    }
    if plan.eval_every and method != REFERENCE:  # only when asked: run stores made without it keep their hashes
        config["trajectory"] = {"eval_every": plan.eval_every, "eval_rows": plan.eval_rows}
    if plan.backend != "hf":  # only when asked: run stores generated with hf keep their hashes
        config["evaluation"]["backend"] = {"name": plan.backend, "strict": plan.strict}
    if plan.fast_decode:  # the same: a store made with the official decode keeps its hashes
        config["evaluation"]["fast_decode"] = True
    if plan.relearn and method != REFERENCE:  # the same: only when asked
        from simu_bench.evaluation import relearn

        config["relearn"] = {"steps": plan.relearn, "fraction": plan.relearn_fraction, "optimizer": "adamw",
                             "lr": relearn.LR, "batch_size": relearn.BATCH_SIZE, "seed": relearn.SEED}
    return config


def plan_runs(plan: Plan, resolved: Resolved, configs: dict) -> list[Run]:
    """The reference run and every (method, seed) run, each config checked against its directory."""
    runs = [Run.at(plan.out, REFERENCE, None)]
    resolved.configs[(REFERENCE, None)] = run_config(plan, resolved, REFERENCE, None, None)
    for method in plan.methods:
        for seed in plan.seeds:
            runs.append(Run.at(plan.out, method, seed))
            resolved.configs[(method, seed)] = run_config(plan, resolved, method, seed, configs[method])
    for run in runs:  # all checks before the first write
        run.check_config(resolved.configs[(run.method, run.seed)])
    resolved.unlearn_configs = configs
    return runs
