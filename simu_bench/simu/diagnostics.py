"""Mask diagnostics: what a critical-neuron mask holds, and whether its units carry the forget set.

Every method with a SIMU mask writes them as `mask.json` beside `mask.safetensors`:

- counts, per layer and in total: |C_f|, |C_r|, their overlap (the dual units, |C_f & C_r|, and
  the Jaccard |C_f & C_r| / |C_f | C_r|), and the units selected;
- coverage: the share of the trained weights that belong to the selected units' down-projection
  columns (selected units x d_model, over every trained weight; attention is the rest);
- stability: the forget rows split into two disjoint halves (even and odd positions, so that each
  half spans every task), each half attributed on its own and cut with the run's mode, t and
  strategy (C_r from the whole retain set); the Jaccard of the two selections, per layer and over
  all units (1: the mask does not depend on which rows chose it);
- the causal check, on the model before unlearning: the mean answer NLL of the forget and of the
  retain rows (as the GradDiff loss sees them) with nothing zeroed, with the selected units zeroed
  (the down projection's input set to 0 at every position), and with as many random units per layer
  zeroed (mean over `RANDOM_DRAWS` seeded draws). If attribution finds the units that hold the
  forget set, zeroing them raises the forget NLL more than random units of the same count do, and
  more than it raises the retain NLL.

Cost: the stability check is one more attribution of the forget rows (half of SIMU's attribution of
forget + retain); the causal check is 2 + `RANDOM_DRAWS` forward passes over the forget rows and 2
over the retain rows, no backward, batched as attribution's copies are (every variant of a batch
of rows in one pass).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from simu_bench.data.pairing import Encoded, collate
from simu_bench.simu import attribution
from simu_bench.simu.masks import CriticalMask, build_mask, random_selection
from simu_bench.unlearning.losses import example_nll

RANDOM_DRAWS = 10
RANDOM_SEED = 0  # the random units of the causal check: fixed, so that two runs' checks compare


def jaccard(first: torch.Tensor, second: torch.Tensor) -> float | None:
    """|A & B| / |A | B| of two boolean masks; None when both are empty (nothing to compare)."""
    union = int((first | second).sum())
    return int((first & second).sum()) / union if union else None


def counts(mask: CriticalMask) -> dict:
    """Totals and per-layer rows of |C_f|, |C_r|, dual, their Jaccard, and the selected units."""
    forget, retain = mask.forget_critical, mask.retain_critical
    layers = [{**row, "forget_retain_jaccard": jaccard(forget[row["layer"]], retain[row["layer"]])}
              for row in mask.report()]
    return {
        "units_per_layer": int(mask.selected.shape[1]),
        "forget_critical": int(mask.forget_critical.sum()),
        "retain_critical": int(mask.retain_critical.sum()),
        "dual": int(mask.dual.sum()),
        "forget_retain_jaccard": jaccard(mask.forget_critical, mask.retain_critical),
        "selected": int(mask.selected.sum()),
        "per_layer": layers,
    }


def coverage(selected_weights: int, trained_weights: int) -> float | None:
    """Share of the trained weights that are the selected units' down-projection weights."""
    return selected_weights / trained_weights if trained_weights else None


def stability(model, tokenizer, data, mask: CriticalMask, retain_scores: torch.Tensor, *, attribute=None,
              **attribute_kwargs) -> dict:
    """Jaccard of the selections made from two disjoint halves of the forget rows (see the module doc).

    ``attribute``: the function that scores each half (default `attribution.attribute`; SIMU
    passes its run store's cache, `simu_bench.simu.cache.Cache.attribute`).
    """
    attribute = attribute or attribution.attribute
    halves = [data.forget[0::2], data.forget[1::2]]
    if not all(halves):
        return {"jaccard": None, "per_layer": [], "reason": "fewer than two forget rows"}
    selections = []
    for half in halves:
        scores = attribute(model, tokenizer, half, **attribute_kwargs)
        cut = build_mask(scores, retain_scores, strategy=mask.strategy, mode=mask.mode, t=mask.t, m=mask.m)
        selections.append(cut.selected)
    first, second = selections
    return {
        "rows": [len(halves[0]), len(halves[1])],
        "jaccard": jaccard(first, second),
        "per_layer": [jaccard(first[layer], second[layer]) for layer in range(first.shape[0])],
    }


@contextmanager
def units_zeroed(model, zeroed: list[torch.Tensor]):
    """Within the block, a batch is `len(zeroed)` copies of the same rows, and in copy c the units
    where `zeroed[c]` (bool, layers x d_ff) is True output 0 (the down projection's input is 0)."""
    handles = []
    for projection in attribution.down_projections(model):
        keep = torch.stack([~z[projection.layer] for z in zeroed]).to(projection.weight.device)  # (copies, d_ff)

        def hook(module, args, keep=keep):
            (x,) = args  # (copies * rows, seq, d_ff)
            shaped = x.view(keep.shape[0], -1, *x.shape[1:])  # (copies, rows, seq, d_ff)
            return ((shaped * keep[:, None, None, :].to(x.dtype)).view_as(x),)

        handles.append(projection.module.register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def mean_nll(model, tokenizer, examples, zeroed: list[torch.Tensor], batch_size: int, max_length: int) -> list[float]:
    """Per entry of `zeroed`: the mean over `examples` of the per-example answer NLL (prompt masked
    out, EOS included) with those units zeroed; all entries ride in one forward pass per batch."""
    device = next(model.parameters()).device
    copies = len(zeroed)
    totals = torch.zeros(copies, dtype=torch.float64)
    ordered = sorted(examples, key=lambda e: len(e.input) + len(e.output))  # similar lengths share a batch
    with units_zeroed(model, zeroed):
        for start in range(0, len(ordered), batch_size):
            batch = collate(tokenizer, ordered[start : start + batch_size], max_length)
            repeated = Encoded(*(t.repeat(copies, 1).to(device) for t in (batch.input_ids, batch.attention_mask,
                                                                           batch.labels)))
            totals += example_nll(model, repeated).double().view(copies, -1).sum(dim=1).cpu()
    return (totals / len(examples)).tolist()


def causal_check(model, tokenizer, data, selected: torch.Tensor, *, batch_size: int = 8,
                 max_length: int = 512, draws: int = RANDOM_DRAWS, seed: int = RANDOM_SEED) -> dict:
    """Forget and retain NLL increases when the `selected` units (or as many random ones) are zeroed.

    `ratio_to_random` is the selected units' forget increase over the random units' mean increase
    (None when the random mean is not positive).
    """
    nothing = torch.zeros_like(selected, dtype=torch.bool)
    generator = torch.Generator().manual_seed(seed)
    drawn = [random_selection(selected, generator) for _ in range(draws)]
    was_training = model.training
    model.eval()
    try:
        forget, selected_forget, *random = mean_nll(model, tokenizer, data.forget, [nothing, selected, *drawn],
                                                    batch_size, max_length)
        retain, selected_retain = (mean_nll(model, tokenizer, data.retain, [nothing, selected], batch_size, max_length)
                                   if data.retain else (None, None))
    finally:
        model.train(was_training)
    selected_forget -= forget
    selected_retain = None if retain is None else selected_retain - retain
    random = [value - forget for value in random]
    mean_random = sum(random) / len(random)
    return {
        "units_zeroed": int(selected.sum()),
        "forget_nll": forget,
        "retain_nll": retain,
        "forget_nll_increase": selected_forget,
        "retain_nll_increase": selected_retain,
        "random_forget_nll_increase": mean_random,
        "random_forget_nll_increase_sd": float(torch.tensor(random).std()) if len(random) > 1 else None,
        "random_draws": draws,
        "ratio_to_random": selected_forget / mean_random if mean_random > 0 else None,
    }
