"""`simu-bench run` under `torchrun`: each run across N processes, evaluated and stored by rank 0.

    torchrun --nproc_per_node=2 -m simu_bench run --methods fo_graddiff,so_graddiff,simu --device cuda
    torchrun --nproc_per_node=2 -m simu_bench run --methods simu --device cpu     # gloo, for a check

Every rank checks the plan, loads the target and unlearns with FSDP2
(`simu_bench.unlearning.distributed`); rank 0 alone decides which runs to do (finished and
claimed runs are skipped as in one process, `simu_bench.store.claims`) and tells the others,
gathers the unlearned weights into a whole model, evaluates it and writes the run store.
`unlearn.json` records ``world_size``. A run's identity does not include the number of
processes: ``train.batch_size`` is the micro-batch of the whole run, split across the ranks,
so 1 and N processes make the same run (to float rounding).

Refused with one line before anything is written: `--eval-every` (the evaluations during
training would need every rank), methods whose loss is not normalised by the global token
count, Sophia-G's ``gnb`` variant and methods with a frozen reference model.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.store.runs import REFERENCE
from simu_bench.unlearning import distributed

log = logging.getLogger("simu_bench.run")


def check(plan, configs: dict) -> None:
    """Refuse what cannot run across processes, before any model loads."""
    from simu_bench.unlearning import registry

    if plan.eval_every:
        raise UserError(
            "--eval-every cannot run under torchrun: the evaluations during training would need every process; "
            "run the trajectory in one process, or leave --eval-every out"
        )
    for config in configs.values():
        distributed.check_supported(registry.create(config))


def gather(model, name: str, device: str):
    """Every rank sends its shards; rank 0 gets the unlearned model whole (others: None)."""
    from simu_bench.target_model.build import load_model

    state = distributed.full_state_dict(model)
    if distributed.world()[0] != 0:
        return None
    whole, _ = load_model(name, device=device)
    whole.load_state_dict(state)
    return whole


def follow(plan, resolved, run, data, seed_everything) -> None:
    """A rank other than 0: the same unlearning as rank 0, then its shards to rank 0."""
    from simu_bench.target_model.build import load_model
    from simu_bench.unlearning import loop, registry

    try:
        seed_everything(run.seed or 0)
        model, tokenizer = load_model(resolved.model, device=plan.device)
        if plan.gradient_checkpointing:
            distributed.enable_gradient_checkpointing(model)
        unlearner = registry.create(resolved.unlearn_configs[run.method])
        result = loop.run(unlearner, model, tokenizer, data, seed=run.seed, progress=False)
        if result.status == "ok":  # rank 0 saw the same loss and norm: it gathers too
            gather(model, resolved.model, plan.device)
    except Exception:  # rank 0 meets the same error and records the run as crashed
        log.exception("rank %d: %s seed %s failed", distributed.world()[0], run.method, run.seed)


def run_all(plan, configs: dict, say, runner) -> dict[str, int]:
    """The benchmark loop of `simu_bench.pipeline.runner._run_all` across the processes of `torchrun`.

    ``runner`` gives the steps of one process (`execute`, `write_leaderboard`, `seed_everything`,
    `free_memory`): `simu_bench.pipeline.runner` passes itself, which imports this module.
    """
    from simu_bench.data.lume import load_lume
    from simu_bench.files import atomic_write_json
    from simu_bench.pipeline.plan import plan_runs, prepare_inputs
    from simu_bench.store import claims
    from simu_bench.store.environment import environment

    check(plan, configs)
    plan = dataclasses.replace(plan, device=distributed.init_from_env(plan.device))  # cuda:LOCAL_RANK on GPUs
    rank, size = distributed.world()
    if rank != 0:
        say = _silent  # one voice: rank 0's
    if rank == 0:  # rank 0 builds the embedded target (if needed) before the others read the cache
        resolved = prepare_inputs(plan)
    distributed.barrier()
    if rank != 0:
        resolved = prepare_inputs(plan)
    data = load_lume(resolved.data_dir)
    runs = plan_runs(plan, resolved, configs)
    env = {**environment(plan.device), "world_size": size}
    if rank == 0:
        Path(plan.out).mkdir(parents=True, exist_ok=True)
        with claims.leaderboard_lock(plan.out):
            atomic_write_json(Path(plan.out) / "run.json", {"command": plan.command, "date": env["date"]})
    counts: dict[str, int] = {}
    for run in runs:
        name = run.method if run.seed is None else f"{run.method} seed {run.seed}"
        claim = None
        action = None
        if rank == 0:
            action, claim = _decide(plan, run, name, say)
        action = distributed.broadcast(action)
        status = action
        if action == "run":
            if rank == 0:
                with claim:
                    status = runner.execute(plan, resolved, run, data, env, say)
            elif run.method != REFERENCE:
                follow(plan, resolved, run, data, runner.seed_everything)
            runner.free_memory()
        counts[status] = counts.get(status, 0) + 1
    if rank == 0:
        with claims.leaderboard_lock(plan.out):
            written = runner.write_leaderboard(Path(plan.out), plan.command)
        for path in written:
            say(f"wrote {path}")
    distributed.barrier()
    return counts if rank == 0 else {}


def _silent(*args, **kwargs) -> None:
    pass


def _decide(plan, run, name: str, say):
    """Rank 0: ("run", its claim), or ("skipped" | "claimed", None) with the line that says why."""
    from simu_bench.store import claims

    if run.is_done():
        say(f"{name}: already done ({run.status()['status']}), skipped")
        return "skipped", None
    claim = claims.claim(claims.claim_path(plan.out, run.method, run.seed), f"{name} in {plan.out}")
    if not claim.held:
        say(f"{name}: claimed by another worker ({claim.owner}), skipped")
        return "claimed", None
    if run.is_done():
        claim.release()
        say(f"{name}: already done ({run.status()['status']}) by another worker, skipped")
        return "skipped", None
    if claim.stale:
        say(f"{name}: the worker that claimed it ({claim.stale}) stopped before finishing; redoing it")
    return "run", claim
