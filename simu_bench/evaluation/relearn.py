"""Relearning attack: is forgotten knowledge gone, or only hidden?

    simu-bench run --methods all --seeds 0,1,2 --relearn 20     # relearn.json per run + a leaderboard column
    simu-bench eval --model DIR --relearn 20 --out DIR/eval

Knowledge that an unlearning method only suppressed comes back after a few fine-tuning steps on
*part* of the forget set, including on the part that was not fine-tuned on (Hu et al., "Jogging
the Memory of Unlearned LLMs Through Targeted Relearning Attacks", arXiv 2406.13356). So:

1. split the forget *documents* (rows that share an id up to the sc/qa suffix) with a fixed seed
   (`SEED`, the same split for every method and seed, so runs are paired): a fraction (default
   25%, rounded, at least one document and at least one left over) to relearn on, the rest held out;
2. fine-tune the unlearned model for STEPS optimizer steps on the forget rows of the relearn
   documents: AdamW (`LR`, no weight decay), `BATCH_SIZE` rows per step drawn without
   replacement from a seeded shuffle (reshuffled when used up), the loss the target was trained
   with (CE over the answer tokens, `losses.answer_nll`), gradient norm clipped at 1;
3. score the forget rows of the held-out documents again, exactly as the evaluation does.

The forget score is the mean of the raw forget components (regurgitation, knowledge per task)
over those held-out rows, lower is better; "before" is the unlearned model, "after" the relearned
one. `relearn` works on a copy unless told otherwise: the model handed in, and anything stored
from it, is never changed.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence

from simu_bench.data.lume import Example, LumeData
from simu_bench.errors import UserError

DEFAULT_FRACTION = 0.25  # of the forget documents to relearn on
LR = 1e-4  # fixed, recorded in relearn.json
BATCH_SIZE = 8  # forget rows per relearning step
SEED = 0  # the document split and the row order: one for every run, so methods are compared on the same rows
MAX_LENGTH = 512  # tokens per row, as the methods' default train.max_length
FILE = "relearn.json"


def check_steps(steps: int, flag: str = "--relearn") -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"{flag} {steps}: expected a positive number of fine-tuning steps, e.g. {flag} 20")


def check_fraction(fraction: float, flag: str = "--relearn-fraction") -> None:
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction < 1.0):
        raise UserError(
            f"{flag} {fraction}: expected a fraction of the forget documents strictly between 0 and 1, "
            f"e.g. {flag} {DEFAULT_FRACTION}"
        )


def split_documents(forget: Sequence[Example], fraction: float = DEFAULT_FRACTION,
                    seed: int = SEED) -> tuple[list[str], list[str]]:
    """(relearn document ids, held-out document ids), each sorted.

    round(fraction * n) of the n forget documents, at least 1 and at most n - 1, drawn with
    `random.Random(seed)` from the sorted ids. Raises UserError when there are fewer than two.
    """
    check_fraction(fraction)
    documents = sorted({example.document_id for example in forget})
    if len(documents) < 2:
        raise UserError(
            f"the relearning attack needs at least 2 forget documents (one to relearn on, one to measure); "
            f"this forget set has {len(documents)} ({', '.join(documents) or 'none'}); "
            "use data with more forget documents, or leave out --relearn"
        )
    count = min(len(documents) - 1, max(1, round(fraction * len(documents))))
    chosen = set(random.Random(seed).sample(documents, count))
    return sorted(chosen), sorted(d for d in documents if d not in chosen)


def forget_score(samples: Sequence[dict], ids: set[str]) -> tuple[float, dict]:
    """(mean of the forget components, the components) over the forget samples whose id is in `ids`.

    A component is the mean row score of one (task, kind) cell, as in the metrics JSON; only the
    cells that have rows enter the mean.
    """
    cells: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        if sample["split"] == "forget" and sample["id"] in ids:
            cells.setdefault(sample["task"], {}).setdefault(sample["kind"], []).append(float(sample["score"]))
    components = {task: {kind: math.fsum(v) / len(v) for kind, v in sorted(kinds.items())}
                  for task, kinds in sorted(cells.items())}
    values = [value for kinds in components.values() for value in kinds.values()]
    if not values:
        raise ValueError("no forget samples of the held-out documents to score")
    return math.fsum(values) / len(values), components


def fine_tune(model, tokenizer, rows: Sequence[Example], steps: int, *, lr: float = LR,
              batch_size: int = BATCH_SIZE, seed: int = SEED) -> list[float]:
    """STEPS AdamW steps on `rows` (in place); return the loss of each step."""
    # Here, not at the top: the flags' defaults and checks above are read by `--help`, which must not load torch.
    import torch

    from simu_bench.data.pairing import collate
    from simu_bench.unlearning.losses import answer_nll

    device = next(model.parameters()).device
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    params = [p.requires_grad_(True) for p in model.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    step_losses = []
    model.train()
    try:
        for _ in range(steps):
            while len(order) < min(batch_size, len(rows)):
                order += torch.randperm(len(rows), generator=generator).tolist()
            chosen, order = order[:batch_size], order[batch_size:]
            batch = collate(tokenizer, [rows[i] for i in chosen], MAX_LENGTH).to(device)
            loss = answer_nll(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_losses.append(float(loss.detach()))
    finally:
        model.train(was_training)
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
    return step_losses


def relearn(model, tokenizer, data: LumeData, steps: int, evaluate: Callable, *,
            fraction: float = DEFAULT_FRACTION, lr: float = LR, batch_size: int = BATCH_SIZE, seed: int = SEED,
            before: Sequence[dict] | None = None, in_place: bool = False) -> dict:
    """Run the attack on `model`; return the record stored as relearn.json.

    Args:
        evaluate: `evaluate(model, tokenizer, data) -> EvalResult`, called on `data` reduced to the
            held-out forget rows (the caller's evaluation settings: batch size, max_new_tokens).
        before: the unlearned model's scored samples (`EvalResult.samples`) if already evaluated;
            otherwise the held-out rows are evaluated before relearning too.
        in_place: fine-tune `model` itself (saves a copy's memory when the caller is done with it).
    """
    check_steps(steps, "steps")
    relearn_docs, heldout_docs = split_documents(data.forget, fraction, seed)
    train = [e for e in data.forget if e.document_id in set(relearn_docs)]
    heldout = tuple(e for e in data.forget if e.document_id in set(heldout_docs))
    ids = {e.id for e in heldout}
    # The task pack reads a retain file: one retain row goes along and is not scored.
    target = LumeData(forget=heldout, retain=data.retain[:1])
    started = time.perf_counter()

    def score(model) -> list[dict]:
        with warnings.catch_warnings():  # cells without rows are expected here: only held-out forget rows
            warnings.filterwarnings("ignore", message="no rows for", category=UserWarning)
            return evaluate(model, tokenizer, target).samples

    if before is None:
        before = score(model)
    score_before, components_before = forget_score(before, ids)
    if not in_place:
        model = copy.deepcopy(model)
    tuning = time.perf_counter()
    step_losses = fine_tune(model, tokenizer, train, steps, lr=lr, batch_size=batch_size, seed=seed)
    tuned = time.perf_counter()
    score_after, components_after = forget_score(score(model), ids)
    return {
        "steps": steps, "fraction": fraction, "optimizer": "adamw", "lr": lr, "weight_decay": 0.0,
        "batch_size": batch_size, "max_grad_norm": 1.0, "seed": seed,
        "relearn_documents": relearn_docs, "heldout_documents": heldout_docs,
        "relearn_rows": len(train), "heldout_rows": len(heldout),
        "forget_before": score_before, "forget_after": score_after,
        "components_before": components_before, "components_after": components_after,
        "losses": step_losses,
        "seconds": {"fine_tune": round(tuned - tuning, 3), "evaluate": round(time.perf_counter() - tuned, 3),
                    "total": round(time.perf_counter() - started, 3)},
    }
