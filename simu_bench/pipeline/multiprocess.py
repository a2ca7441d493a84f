"""`simu-bench run` under `torchrun`: each run across N processes, evaluated and stored by rank 0.

    torchrun --nproc_per_node=2 -m simu_bench run --methods fo_graddiff,so_graddiff,simu --device cuda
    torchrun --nproc_per_node=2 -m simu_bench run --methods simu --device cpu     # gloo, for a check

The loop is the one of a single process (`simu_bench.pipeline.runner`), with rank guards: every
rank checks the plan, loads the target and unlearns with FSDP2 (`simu_bench.unlearning.distributed`);
rank 0 alone decides which runs to do (finished and claimed runs are skipped as in one process,
`simu_bench.store.claims`) and tells the others, gathers the unlearned weights into a whole model,
evaluates it and writes the run store. This module holds only what differs: the check of what can
run across processes (`check`), the gathering (`gather`) and the other ranks' part of a run (`follow`).
`unlearn.json` records ``world_size``. A run's identity does not include the number of
processes: ``train.batch_size`` is the micro-batch of the whole run, split across the ranks,
so 1 and N processes make the same run (to float rounding).

Refused with one line before anything is written: `--eval-every` (the evaluations during
training would need every rank), methods whose loss is not normalised by the global token
count, Sophia-G's ``gnb`` variant and methods with a frozen reference model.
"""

from __future__ import annotations

import logging

from simu_bench.errors import UserError
from simu_bench.pipeline.steps import new_unlearner, seed_everything
from simu_bench.target_model.load import load_model
from simu_bench.unlearning import distributed, loop, registry

log = logging.getLogger("simu_bench.run")


def check(plan, configs: dict) -> None:
    """Refuse what cannot run across processes, before any model loads."""
    if plan.eval_every or plan.eval_at:
        raise UserError(
            "--eval-every cannot run under torchrun: the evaluations during training would need every process; "
            "run the trajectory in one process, or leave --eval-every out"
        )
    for config in configs.values():
        distributed.check_supported(registry.create(config))


def gather(model, name: str, device: str):
    """Every rank sends its shards; rank 0 gets the unlearned model whole (others: None)."""
    state = distributed.full_state_dict(model)
    if distributed.world()[0] != 0:
        return None
    whole, _ = load_model(name, device=device)
    whole.load_state_dict(state)
    return whole


def follow(plan, resolved, run, data) -> None:
    """A rank other than 0: the same unlearning as rank 0, then its shards to rank 0."""
    try:
        seed_everything(run.seed or 0)
        model, tokenizer = load_model(resolved.model, device=plan.device)
        if plan.gradient_checkpointing:
            distributed.enable_gradient_checkpointing(model)
        unlearner = new_unlearner(plan, resolved.unlearn_configs[run.method])
        result = loop.run(unlearner, model, tokenizer, data, seed=run.seed, progress=False)
        if result.status == "ok":  # rank 0 saw the same loss and norm: it gathers too
            gather(model, resolved.model, plan.device)
    except Exception:  # rank 0 meets the same error and records the run as crashed
        log.exception("rank %d: %s seed %s failed", distributed.world()[0], run.method, run.seed)
