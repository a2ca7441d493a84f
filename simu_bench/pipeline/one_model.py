"""`simu-bench eval`'s work: evaluate one model without unlearning it, with the runner's steps.

    simu-bench eval --model runs/some-model --relearn 20 --out runs/some-model-eval

Checks every input before any work, then: the data (the embedded benchmark's when no --data) ->
load the model in --eval-dtype (default float32) -> with --reference, that model's document NLLs
for the MIA suite's reference attack -> evaluate and store (`simu_bench.pipeline.steps`, as a
run does) -> with --relearn, the relearning attack on the model, in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from simu_bench.data.lume import check_data_dir, load_lume
from simu_bench.evaluation.backends import check_backend
from simu_bench.evaluation.harness import check_utility_tasks
from simu_bench.evaluation.mia import reference_nll
from simu_bench.evaluation.relearn import split_documents
from simu_bench.files import atomic_write_json
from simu_bench.pipeline.plan import Plan
from simu_bench.pipeline.resolve import check_vllm_head_size
from simu_bench.pipeline.steps import evaluate_model, relearn_run, store_evaluation
from simu_bench.store.environment import environment
from simu_bench.store.runs import RELEARN_FILE, check_writable
from simu_bench.target_model.cache import prepare
from simu_bench.target_model.load import check_device, check_model, load_model


@dataclass(frozen=True)
class Evaluated:
    """What `evaluate_one` measured: the metrics, the rows generated and the seconds it took."""

    metrics: dict
    rows: int
    seconds: float


def check(plan: Plan) -> None:
    """Every input of `eval`, before anything is loaded or written."""
    check_data_dir(plan.data)
    check_model(plan.model)
    check_model(plan.reference, "--reference")
    check_device(plan.device)
    check_utility_tasks(plan.utility_tasks)
    check_backend(plan.backend, plan.strict)
    if plan.backend == "vllm":
        check_vllm_head_size(plan)
    if plan.out is not None:
        check_writable(plan.out)


def evaluate_one(plan: Plan, evaluated: Callable[[Evaluated], None]) -> dict | None:
    """Evaluate `plan.model` (stored in `plan.out` when given); `evaluated` gets the result as soon
    as it is there; returns the relearning attack's record with --relearn, else None."""
    check(plan)
    data_dir = plan.data if plan.data is not None else prepare(None, progress=not plan.quiet).data_dir
    data = load_lume(data_dir)
    if plan.relearn is not None:
        split_documents(data.forget, plan.relearn_fraction)  # one forget document: refused before any work
    started = time.perf_counter()
    dtype = plan.eval_dtype or "float32"
    model, tokenizer = load_model(plan.model, device=plan.device,
                                  dtype="auto" if dtype == "auto" else getattr(torch, dtype))
    reference = None
    if plan.reference is not None and data.member and data.nonmember:
        before, before_tokenizer = load_model(plan.reference, device=plan.device)
        reference = reference_nll(before, before_tokenizer, data.member, data.nonmember, plan.eval_batch_size)
        del before  # only its document NLLs are needed
    evaluation = evaluate_model(model, tokenizer, data, plan, reference_nll=reference)
    if plan.out is not None:
        store_evaluation(plan.out, evaluation)
        atomic_write_json(plan.out / "environment.json", {**environment(plan.device), "model": plan.model,
                                                          "data": str(data_dir), "dtype": dtype})
    evaluated(Evaluated(evaluation.to_dict(), len(evaluation.samples), time.perf_counter() - started))
    if plan.relearn is None:
        return None
    record = relearn_run(model, tokenizer, data, plan, evaluation)  # in place: the model is not used again
    if plan.out is not None:
        atomic_write_json(plan.out / RELEARN_FILE, record)
    return record
