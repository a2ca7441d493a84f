"""A plan resolved: each method's config, the prepared data and target, and each run's identity.

Every check here runs before anything is written into the output folder. A run's identity (what
its config hash covers) is the method's resolved config, the seed, the evaluation settings and
fingerprints of the data and the model, not their paths: moving the cache does not invalidate a
run store. The device is recorded in the environment, not hashed.

`--set KEY=VALUE` applies to every selected method; `--set METHOD.KEY=VALUE` only to METHOD.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from simu_bench.data.lume import check_data_dir, has_retain
from simu_bench.errors import UserError
from simu_bench.evaluation import relearn
from simu_bench.evaluation.backends import check_backend
from simu_bench.evaluation.harness import check_utility_tasks
from simu_bench.files import read_json
from simu_bench.pipeline.flags import identity
from simu_bench.pipeline.plan import Plan, Resolved
from simu_bench.store.runs import REFERENCE, Run, check_writable
from simu_bench.target_model.cache import prepare
from simu_bench.target_model.load import check_device, check_model
from simu_bench.target_model.sizes import DEFAULT_SIZE, check_memorised, target_config
from simu_bench.unlearning.config_overrides import parse_override
from simu_bench.unlearning.distributed import check_gradient_checkpointing_of
from simu_bench.unlearning.loop import check_precision, check_retain
from simu_bench.unlearning.registry import check_fit, load_config


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
    if plan.gradient_checkpointing and plan.model is not None:
        check_gradient_checkpointing_of(plan.model)
    check_backend(plan.backend, plan.strict)
    check_size(plan.size, plan.model)
    configs = load_method_configs(plan.methods, plan.overrides, plan.config_dir)
    stopping = [method for method, config in configs.items() if config.train.stop_at_forget is not None]
    if stopping and not (plan.eval_every or plan.eval_at):
        level = configs[stopping[0]].train.stop_at_forget
        raise UserError(f"{stopping[0]}: train.stop_at_forget {level:g} needs evaluation points to stop at; add "
                        f"--eval-at log or --eval-every K (e.g. --eval-at log --eval-rows 32)")
    check_data_dir(plan.data)
    check_model(plan.model)  # config, weight headers and tokenizer files, without loading the weights
    if plan.backend == "vllm":
        check_vllm_head_size(plan)
    check_device(plan.device)
    for config in configs.values():
        check_precision(config, plan.device)
    if plan.data is not None:  # the embedded data always has retain rows
        check_retain(configs.values(), has_retain(plan.data), str(plan.data))
    check_utility_tasks(plan.utility_tasks)
    check_writable(plan.out)
    return configs


def check_vllm_head_size(plan: Plan) -> None:
    """vLLM's attention must run the model's head size: the embedded target's from its size, a
    model folder's from its config.json (a hub id is left to vLLM)."""
    from simu_bench.evaluation.backends import check_head_size

    if plan.model is None:
        size = plan.size or DEFAULT_SIZE
        config = target_config(size)
        check_head_size(config.hidden_size // config.num_heads, f"the embedded target (--size {size})")
        return
    path = Path(plan.model).expanduser() / "config.json"
    if path.is_file():
        config = read_json(path)
        heads = config.get("num_attention_heads") or 1
        check_head_size(config.get("head_dim") or config.get("hidden_size", 0) // heads, f"--model {plan.model}")


def check_size(size: str | None, model: str | None) -> None:
    """`--size` names a shape of the embedded target: known, and never with `--model` (which has its own)."""
    if size is None:
        return
    if model is not None:
        raise UserError(f"--size {size} with --model {model}: a given model has its own shape; "
                        "drop --size to run on that model, or drop --model to build the embedded target of that size")
    target_config(size)


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

    started = time.perf_counter()
    if plan.model is None:  # the embedded target, trained on the default or on --data's subset
        prepared = prepare(plan.data, target=target_config(plan.size or DEFAULT_SIZE), progress=not plan.quiet)
        if plan.size is not None:
            check_memorised(plan.size, prepared.info)
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
        "evaluation": {"dtype": evaluation_dtype(plan, unlearn)},
        "paths": {"data": str(resolved.data_dir), "model": resolved.model},
    }
    for key, value in identity(Plan, plan, method_run=method != REFERENCE).items():
        section, name = key.split(".")
        config.setdefault(section, {})[name] = value
    if (plan.eval_every or plan.eval_at) and method != REFERENCE:  # only when asked: stores keep their hashes
        config["trajectory"] = {"eval_every": plan.eval_every, "eval_rows": plan.eval_rows}
        if plan.eval_at:
            config["trajectory"]["eval_at"] = plan.eval_at
    if plan.backend != "hf":  # only when asked: run stores generated with hf keep their hashes
        config["evaluation"]["backend"] = {"name": plan.backend, "strict": plan.strict}
    if plan.relearn and method != REFERENCE:  # the same: only when asked
        config["relearn"] = {"steps": plan.relearn, "fraction": plan.relearn_fraction, "optimizer": "adamw",
                             "lr": relearn.LR, "batch_size": relearn.BATCH_SIZE, "seed": relearn.SEED}
    return config


def plan_runs(plan: Plan, resolved: Resolved, configs: dict) -> list[Run]:
    """The reference run and every (method, seed) run, each config checked against the model
    (`registry.check_fit`: options against its config.json) and against its directory."""
    check_fit(configs.values(), resolved.model)  # before the target is evaluated and anything is written
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
