"""Evaluate an in-memory model on LUME: the task pack through lm-eval, MIA, utility, final score.

    from simu_bench import evaluate
    result = evaluate(model, tokenizer, load_lume("data/"), batch_size=64)
    print(result.to_dict()["task_aggregate"])

Generation goes through lm-eval's `HFLM(pretrained=model, tokenizer=tokenizer)` on the tasks
in `tasks/` (raw input, greedy, EOS only, batched with left padding); the generations are then
scored by `simu_bench.evaluation.scoring`, the same code `simu-bench score` uses. New tokens are decoded
as the official scorer decodes them (`skip_special_tokens=True,
clean_up_tokenization_spaces=True`). The context window is widened to fit the longest prompt
plus `max_new_tokens`, because the official scorer never truncates a prompt. Running lm-eval
itself (task manager, utility tasks, quiet logs, the caller's random state) is in `harness`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from simu_bench import tasks as task_pack
from simu_bench.data.lume import SPLITS, WORLD_FACTS, LumeData
from simu_bench.errors import UserError
from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS, backends, harness, scoring
from simu_bench.evaluation.decoding import decidable_answers, hf_lm
from simu_bench.evaluation.mia import membership_inference


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
            (`simu_bench.evaluation.decoding`): the same scores, shorter text for rows decided
            wrong; for trajectory points, tuning trials and `--fast-decode` (HF backend only).

    The caller's random state (python, numpy, torch) and `model.training` are left as found.
    """
    if max_new_tokens < 1:
        raise UserError(f"max_new_tokens is {max_new_tokens}; expected a positive number of tokens")
    if batch_size < 1:
        raise UserError(f"batch_size is {batch_size}; expected at least 1")
    state = harness.save_random_state()
    was_training = model.training
    pad_token = tokenizer.pad_token  # HFLM sets a missing pad token on the caller's tokenizer
    try:
        with harness.quiet(not verbose):
            samples, utility, generation = _generate(
                model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit, backend, early_stop
            )
        mia = _membership(model, tokenizer, data, limit, mia_batch_size or batch_size, reference_nll)
    finally:
        model.train(was_training)
        harness.restore_random_state(state)
        if tokenizer.pad_token != pad_token:
            tokenizer.pad_token = pad_token
    lume = [(s["split"], s["task"], s["kind"], s["score"]) for s in samples if s["split"] in SPLITS]
    summary = scoring.metrics(lume, mia and mia["member_nll"], mia and mia["nonmember_nll"], utility)
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


def _membership(model, tokenizer, data: LumeData, limit, batch_size: int, reference_nll) -> dict | None:
    """The MIA suite on the first `limit` documents of each set (all when None); None without documents."""
    if not (data.member and data.nonmember):
        return None
    members = data.member[:limit] if limit else data.member
    nonmembers = data.nonmember[:limit] if limit else data.nonmember
    reference = reference_nll and (reference_nll[0][: len(members)], reference_nll[1][: len(nonmembers)])
    return membership_inference(model, tokenizer, members, nonmembers, batch_size, reference)


def _generate(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit, backend, early_stop=False):
    """(samples, utility, generation record): HF, or vLLM checked against HF on the first rows.

    ``backend`` is a `backends.Backend` (None: HF). The record is None for HF, else
    ``{"backend", "parity_rows", "parity"}``; see `simu_bench.evaluation.backends`.
    """
    if backend is None or backend.name == "hf":
        return (*_generate_and_score(model, tokenizer, data, batch_size, max_new_tokens, utility_tasks, limit,
                                     early_stop=early_stop), None)
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
    cells = {(e.split, e.task, e.kind) for split in SPLITS for e in data.split(split)}
    names = [task_pack.task_name(*cell) for cell in sorted(cells)]
    if data.utility and utility_tasks is None:
        names.append(task_pack.WORLD_FACTS_TASK)
    rows = [e for split in (*SPLITS, "utility") for e in data.split(split)]
    longest = max((len(tokenizer(e.input)["input_ids"]) for e in rows), default=1)
    # A context window that fits the longest prompt plus its answer: nothing is truncated.
    generation_kwargs = {"max_gen_toks": max_new_tokens}
    if vllm:
        lm = backends.vllm_lm(model, tokenizer, max_new_tokens, max_length=longest + max_new_tokens)
        generation_kwargs.update(backends.VLLM_GENERATION)
    else:
        answers = decidable_answers(rows) if early_stop else None
        lm = hf_lm(model, tokenizer, batch_size, max_new_tokens, max_length=longest + max_new_tokens,
                      answers=answers)
    with tempfile.TemporaryDirectory(prefix="simu-bench-eval-") as tmp:
        # The task pack reads rows from a directory; write exactly this LumeData there.
        harness.write_data(Path(tmp), data)
        utility = None
        if utility_tasks:  # first, so that a wrong task name fails before the long generation
            # the model's own context window here: these tasks are not LUME's
            external = hf_lm(model, tokenizer, batch_size, max_new_tokens, max_length=None)
            utility = harness.external_utility(external, list(utility_tasks), tmp, limit, max_new_tokens)
        out = harness.run_tasks(lm, names, tmp, limit, generation_kwargs)
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
