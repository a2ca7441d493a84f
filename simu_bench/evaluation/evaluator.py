"""Evaluate an in-memory model on LUME: the task pack through lm-eval, MIA, utility, final score.

    from simu_bench import evaluate
    result = evaluate(model, tokenizer, load_lume("data/"), batch_size=64)
    print(result.to_dict()["task_aggregate"])

Generation goes through lm-eval's `HFLM(pretrained=model, tokenizer=tokenizer)` on the tasks
in `tasks/` (raw input, greedy, EOS only, batched with left padding); the generations are then
scored by `simu_bench.evaluation.scoring`, the same code `simu-bench score` uses. New tokens are decoded
as the official scorer decodes them (`skip_special_tokens=True,
clean_up_tokenization_spaces=True`). The context window is widened to fit the longest prompt
plus `max_new_tokens`, because the official scorer never truncates a prompt.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from simu_bench.data.lume import SPLITS, WORLD_FACTS, LumeData
from simu_bench.errors import UserError, did_you_mean
from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS, scoring
from simu_bench.evaluation.decoding import decidable_answers, hf_lm
from simu_bench.files import write_jsonl

# lm-eval metrics tried, in order, as an external utility task's headline number.
_UTILITY_METRICS = ("acc,none", "exact_match,none", "acc_norm,none", "exact_match,strict-match")
# Few-shot examples per utility task unless `name:k` says otherwise: the official final score
# uses 5-shot MMLU (Open-Instruct's run_mmlu.py, ntrain 5). It runs as lm-eval's `mmlu` task
# (its own prompt format, which may differ slightly from run_mmlu.py's). Other tasks: 0.
FEWSHOT = {"mmlu": 5}


@dataclass
class EvalResult:
    """One evaluation: the 12 components, Task Aggregate, MIA, utility, final and the samples.

    `samples` holds one dict per scored row: id, split, task, kind, input, expected,
    generation, score. `mia` is `{"auc", "score", "member_nll", "nonmember_nll", "attacks"}` or
    None (`attacks`: the suite of `simu_bench.evaluation.mia`, `{name: {"auc", "score"}}`);
    `utility` is `{"name", "value"}` or None; `final` needs both.
    """

    components: dict
    task_aggregate: float
    mia: dict | None = None
    utility: dict | None = None
    final: float | None = None
    # the official overall scores: {"forget": {"regurgitation", "knowledge"}, "retain": {...}}
    overall: dict = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list, repr=False)
    generation: dict | None = None  # --backend vllm: {"backend", "parity_rows", "parity"} (`backends`)

    def to_dict(self) -> dict:
        """The metrics JSON (the keys `simu-bench score` prints, plus `mia_attacks`); samples are left out."""
        out: dict = {"components": self.components, "task_aggregate": self.task_aggregate}
        if self.overall:
            out["overall"] = self.overall
        if self.mia is not None:
            out["mia"] = {"auc": self.mia["auc"], "score": self.mia["score"]}
            if self.mia.get("attacks"):
                out["mia_attacks"] = {name: dict(value) for name, value in self.mia["attacks"].items()}
        if self.utility is not None:
            out["utility"] = dict(self.utility)
        if self.final is not None:
            out["final"] = self.final
        if self.generation is not None:
            out["generation"] = dict(self.generation)
        return out


def evaluate(model, tokenizer, data: LumeData, *, batch_size: int = BATCH_SIZE, max_new_tokens: int = MAX_NEW_TOKENS,
             utility_tasks: list[str] | None = None, limit: int | None = None,
             mia_batch_size: int | None = None, reference_nll: tuple[list, list] | None = None,
             verbose: bool = False, backend=None, early_stop: bool = False) -> EvalResult:
    """Evaluate `model` on `data` exactly as LUME's official scorer does, batched.

    Args:
        model, tokenizer: a causal LM and its tokenizer, already on the device to use.
        data: the LUME data; its forget/retain rows are generated from, its member/nonmember
            documents feed the MIA, its world facts are the utility unless `utility_tasks` is set.
        batch_size: rows per `generate` call (and documents per NLL forward unless
            `mia_batch_size` is set).
        max_new_tokens: new-token limit per generation (LUME: 256), for every generative task
            of the run, utility tasks included.
        utility_tasks: lm-eval task names to use as utility instead of the world facts (e.g.
            ["mmlu"] for a real model; `name:k` for k few-shot examples, mmlu defaults to 5 as the
            official final score); the utility is their mean headline metric, named by them and
            their shots, e.g. "mmlu (5-shot)".
        limit: evaluate only the first `limit` rows of each task and documents of each MIA set.
        reference_nll: (member NLLs, non-member NLLs) of all of `data`'s MIA documents under the
            model before unlearning (`mia.reference_nll`); enables the `reference` MIA attack.
        verbose: show lm-eval's logs and progress bars.
        backend: a `simu_bench.evaluation.backends.Backend` (None: HF `generate`); with vLLM the
            result's `generation` records the backend and its parity with HF on the first rows.
        early_stop: question rows stop decoding once their exact-match score is decided
            (`simu_bench.evaluation.decoding`): the same scores, shorter stored text for rows
            decided wrong. For evaluations whose text is not kept (trajectory points, tuning
            trials) and `--fast-decode`; HF backend only.

    The caller's random state (python, numpy, torch) and `model.training` are left as found.
    """
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens is {max_new_tokens}; expected a positive number of tokens")
    if batch_size < 1:
        raise UserError(f"batch_size is {batch_size}; expected at least 1")
    state = _save_random_state()
    was_training = model.training
    pad_token = tokenizer.pad_token  # HFLM sets a missing pad token on the caller's tokenizer
    try:
        with _quiet(not verbose):
            samples, utility, generation = _generate(
                model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit, backend, early_stop
            )
        mia = None
        if data.member and data.nonmember:
            from simu_bench.evaluation.mia import membership_inference

            members = data.member[:limit] if limit else data.member
            nonmembers = data.nonmember[:limit] if limit else data.nonmember
            reference = reference_nll and (reference_nll[0][: len(members)], reference_nll[1][: len(nonmembers)])
            mia = membership_inference(model, tokenizer, members, nonmembers, mia_batch_size or batch_size, reference)
    finally:
        model.train(was_training)
        _restore_random_state(state)
        if tokenizer.pad_token != pad_token:
            tokenizer.pad_token = pad_token
    lume = [s for s in samples if s["split"] in SPLITS]
    summary = scoring.metrics(
        [(s["split"], s["task"], s["kind"], s["score"]) for s in lume],
        mia and mia["member_nll"],
        mia and mia["nonmember_nll"],
        utility,
    )
    return EvalResult(
        components=summary["components"],
        task_aggregate=summary["task_aggregate"],
        mia=mia,
        utility=summary.get("utility"),
        final=summary.get("final"),
        overall=summary["overall"],
        samples=samples,
        generation=generation,
    )


def _generate(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit, backend, early_stop=False):
    """(samples, utility, generation record): HF, or vLLM checked against HF on the first rows.

    ``backend`` is a `backends.Backend` (None: HF). The record is None for HF, else
    ``{"backend", "parity_rows", "parity"}``; see `simu_bench.evaluation.backends`.
    """
    if backend is None or backend.name == "hf":
        return (*_generate_and_score(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit,
                                     early_stop=early_stop), None)
    from simu_bench.evaluation import backends

    samples, utility = _generate_and_score(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit,
                                           vllm=True)
    check = backends.first_rows(data, backend.parity_rows)
    reference, _ = _generate_and_score(model, tokenizer, check, batch_size, max_new_tokens, None, None)
    rate, compared = backends.parity(samples, reference)
    record = {"backend": "vllm", "parity_rows": compared, "parity": rate}
    if rate < 1:
        backends.warn_mismatch(rate, compared, backend.strict)
        if backend.strict:
            samples, utility = _generate_and_score(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks,
                                                   limit)
            record["backend"] = "hf (vllm fallback)"
    return samples, utility, record


def _generate_and_score(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit, vllm=False,
                        early_stop=False):
    """Run the task pack through lm-eval; return (scored samples, utility dict or None).

    ``vllm``: the task pack's generations come from vLLM (`backends.vllm_lm`); utility tasks
    named in ``utility_tasks`` still run on HF. ``early_stop``: see `evaluate`.
    """
    from simu_bench import tasks as task_pack

    cells = {(e.split, e.task, e.kind) for split in SPLITS for e in data.split(split)}
    names = [task_pack.task_name(*cell) for cell in sorted(cells)]
    if data.utility and utility_tasks is None:
        names.append(task_pack.WORLD_FACTS_TASK)
    rows = [e for split in (*SPLITS, "utility") for e in data.split(split)]
    longest = max((len(tokenizer(e.input)["input_ids"]) for e in rows), default=1)
    # A context window that fits the longest prompt plus its answer: nothing is truncated.
    generation_kwargs = {"max_gen_toks": max_new_tokens}
    if vllm:
        from simu_bench.evaluation import backends

        lm = backends.vllm_lm(model, tokenizer, max_new_tokens, max_length=longest + max_new_tokens)
        generation_kwargs.update(backends.VLLM_GENERATION)
    else:
        answers = decidable_answers(rows) if early_stop else None
        lm = hf_lm(model, tokenizer, batch_size, max_new_tokens, max_length=longest + max_new_tokens,
                      answers=answers)
    with tempfile.TemporaryDirectory(prefix="simu-bench-eval-") as tmp:
        # The task pack reads rows from a directory; write exactly this LumeData there.
        _write_data(Path(tmp), data)
        utility = None
        if utility_tasks:  # first, so that a wrong task name fails before the long generation
            # the model's own context window here: these tasks are not LUME's
            external = hf_lm(model, tokenizer, batch_size, max_new_tokens, max_length=None)
            utility = _external_utility(external, list(utility_tasks), tmp, limit, max_new_tokens)
        out = _run_tasks(lm, names, tmp, limit, generation_kwargs)
    samples = []
    for name in names:
        for sample in sorted(out["samples"][name], key=lambda s: s["doc_id"]):
            doc = sample["doc"]
            samples.append(
                {
                    "id": doc["id"],
                    "split": doc["split"],
                    "task": doc["task"],
                    "kind": doc["kind"],
                    "input": doc["input"],
                    "expected": doc["output"],
                    "generation": sample["filtered_resps"][0],
                    # the task's process_results scored the row with simu_bench.evaluation.scoring
                    "score": float(sample[scoring.METRIC_OF_KIND[doc["kind"]]]),
                }
            )
    if utility_tasks is None and data.utility:
        scores = [s["score"] for s in samples if s["split"] == "utility"]
        utility = {"name": WORLD_FACTS, "value": sum(scores) / len(scores)}
    return samples, utility


def check_utility_tasks(names) -> None:
    """Every name in ``names`` (None: the embedded world facts) must be an lm-eval task or group.

    Indexing lm-eval's registry takes seconds, so it happens only when names are given; the
    check runs before anything is written (`simu-bench run` checks its plan with it).
    """
    if not names:
        return
    names = [utility_task(spec)[0] for spec in names]
    manager = _task_manager(list(names), data_dir="")
    for name in names:
        if name not in manager.all_tasks:
            raise UserError(f"--utility-tasks: unknown lm-eval task {name!r}{did_you_mean(name, manager.all_tasks)}")


def _task_manager(names, data_dir):
    from lm_eval.tasks import TaskManager

    from simu_bench import tasks as task_pack

    ours = not any(name != task_pack.GROUP and not name.startswith("lume_") for name in names)
    # lm-eval's own registry (~15k tasks) takes seconds to index: only when a name needs it.
    return TaskManager(include_path=str(task_pack.path()), include_defaults=not ours, metadata={"data_dir": data_dir})


def _run_tasks(lm, names, data_dir, limit, gen_kwargs=None, num_fewshot: int | None = None) -> dict:
    """lm-eval's evaluator on `names` (the pack's tasks, or any registered task).

    Calls `lm_eval.evaluator.evaluate` rather than `simple_evaluate`: the latter also re-seeds
    the global random generators and collects environment details (a `pip list` subprocess),
    which costs more than generating the embedded benchmark's answers.
    """
    from lm_eval.evaluator import evaluate as lm_evaluate

    manager = _task_manager(names, data_dir)
    for name in names:
        if name not in manager.all_tasks:
            raise UserError(f"unknown lm-eval task {name!r}{did_you_mean(name, manager.all_tasks)}")
    task_dict = manager.load(names)
    for task in task_dict["tasks"].values():
        if gen_kwargs and task.get_config("output_type") == "generate_until":
            task.set_config(key="generation_kwargs", value=dict(gen_kwargs), update=True)
        if num_fewshot is not None:  # every task of the group (mmlu's 57 subjects) gets the same shots
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=1234)  # lm-eval's default few-shot seed
    return lm_evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=0, log_samples=True)


def utility_task(spec: str) -> tuple[str, int]:
    """`name` or `name:k` (k few-shot examples) -> (name, shots); mmlu defaults to `FEWSHOT`'s 5.

    Raises:
        UserError: k is not a whole number >= 0.
    """
    name, sep, shots = spec.partition(":")
    if not sep:
        return name, FEWSHOT.get(name, 0)
    if not shots.isdigit():
        raise UserError(f"--utility-tasks {spec!r}: the shots after ':' must be a whole number >= 0, e.g. mmlu:5")
    return name, int(shots)


def utility_label(spec: str) -> str:
    """The utility's name with its shot count, e.g. "mmlu (5-shot)"."""
    name, shots = utility_task(spec)
    return f"{name} ({shots}-shot)"


def _external_utility(lm, utility_tasks, data_dir, limit, max_new_tokens) -> dict:
    """Mean headline metric of lm-eval tasks (e.g. mmlu), labelled with their names and shots."""
    values = []
    for spec in utility_tasks:
        name, shots = utility_task(spec)
        out = _run_tasks(lm, [name], data_dir, limit, {"max_gen_toks": max_new_tokens}, num_fewshot=shots)
        metrics = out["results"][name]
        key = next((k for k in _UTILITY_METRICS if k in metrics), None)
        if key is None:
            raise UserError(
                f"lm-eval task {name!r} reports none of {', '.join(_UTILITY_METRICS)}; "
                "pick a task with accuracy or exact match"
            )
        values.append(float(metrics[key]))
    return {"name": "+".join(utility_label(spec) for spec in utility_tasks), "value": sum(values) / len(values)}


def _write_data(root: Path, data: LumeData) -> None:
    for split in (*SPLITS, "utility"):
        rows = [{"id": e.id, "input": e.input, "output": e.output, "task": e.task} for e in data.split(split)]
        if rows:
            write_jsonl(root / (f"{WORLD_FACTS}.jsonl" if split == "utility" else f"{split}.jsonl"), rows)


def _save_random_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_random_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence lm-eval's and transformers' logs and progress bars, and subprocess chatter
    (lm-eval asks `git` for a commit hash) by pointing stderr, file descriptor 2 included,
    at /dev/null for the duration. A fatal error of the interpreter or of native code
    (segmentation fault, abort) still reaches the real stderr: `faulthandler` writes there."""
    if not enabled:
        yield
        return
    import faulthandler

    loggers = [logging.getLogger(name) for name in ("lm-eval", "lm_eval", "transformers", "datasets")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    was_enabled = faulthandler.is_enabled()
    fatal = os.fdopen(os.dup(saved_fd), "w")
    faulthandler.enable(file=fatal, all_threads=True)
    os.dup2(devnull, 2)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved_fd, 2)
        faulthandler.disable()
        if was_enabled and sys.__stderr__ is not None:
            faulthandler.enable(file=sys.__stderr__, all_threads=True)
        fatal.close()
        os.close(saved_fd)
        os.close(devnull)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
