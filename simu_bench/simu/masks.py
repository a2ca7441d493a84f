"""Critical-neuron masks: from attribution scores to the units SIMU may train.

A unit of layer l is critical for a set when its score passes the layer's cut:
- `threshold` mode: score >= t * max(score of layer l), t in (0, 1], and only when that max is
  positive (a layer in which no unit supports the answers has no critical unit). ">=" rather
  than ">" so that t = 1 keeps the top unit instead of none.
- `top_fraction` mode: the ceil(t * d_ff) highest-scoring units of every layer.

C_f comes from the forget set's scores and C_r from the retain set's. The strategies (SIMU, arXiv 2510.07822):
- `dual`: all of C_f, the dual neurons (in C_f and C_r) included; the paper's best.
- `forget_only`: C_f minus C_r.

A `CriticalMask` keeps C_f, C_r, the selection and the scores, reports counts per layer, and is
saved as safetensors with its settings in the metadata, so that a run can be repeated from it.

Variants of the selection (the `random_mask` control and `simu_soft`):
- `random_selection`: per layer, as many units as the attribution selected, drawn uniformly at
  random (seeded): the same sparsity without the attribution. The mask keeps the attribution's
  C_f and C_r, so a random mask and SIMU's can be compared unit by unit (``selection`` says
  which one ``selected`` is).
- `soft_weights`: instead of 0/1, each selected unit's update is scaled by its normalised
  forget attribution, w[l, j] = clamp(s_f[l, j] / max_j s_f[l, j], 0, 1), and a dual unit's
  (in C_f and C_r) weight is further multiplied by ``dual_factor``; unselected units get 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from simu_bench.errors import UserError, did_you_mean

STRATEGIES = ("dual", "forget_only")
SELECTIONS = ("attribution", "random")  # how `selected` was drawn: SIMU's cut, or the random control
MODES = ("threshold", "top_fraction")
FORMAT = "simu-bench critical mask v1"


def critical_units(scores: torch.Tensor, mode: str = "threshold", t: float = 0.5) -> torch.Tensor:
    """Boolean (layers, d_ff): the critical units of each layer for one set's `scores`."""
    check_selection(mode, t)
    scores = scores.float()
    if mode == "threshold":
        best = scores.max(dim=1, keepdim=True).values  # (layers, 1)
        return (scores >= t * best) & (best > 0)
    count = min(scores.shape[1], math.ceil(t * scores.shape[1]))
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen.scatter_(1, scores.topk(count, dim=1).indices, True)
    return chosen


def check_selection(mode: str, t: float, strategy: str = "dual") -> None:
    """Raise UserError for an unknown mode or strategy, or t outside (0, 1]."""
    if mode not in MODES:
        raise UserError(f"mask mode {mode!r} is unknown{did_you_mean(mode, MODES)}")
    if strategy not in STRATEGIES:
        raise UserError(f"mask strategy {strategy!r} is unknown{did_you_mean(strategy, STRATEGIES)}")
    if not isinstance(t, (int, float)) or not 0 < t <= 1:
        raise UserError(
            f"mask t={t!r}; expected a number in (0, 1] (a fraction of the layer's max score or of its units)"
        )


@dataclass
class CriticalMask:
    """The units SIMU trains in each layer's down projection, and how they were chosen."""

    selected: torch.Tensor  # bool (layers, d_ff): the units whose down-projection weights train
    forget_critical: torch.Tensor  # bool (layers, d_ff): C_f
    retain_critical: torch.Tensor  # bool (layers, d_ff): C_r
    strategy: str
    mode: str
    t: float
    m: int
    family: str
    scores: dict[str, torch.Tensor] = field(default_factory=dict)  # "forget"/"retain" -> (layers, d_ff)
    selection: str = "attribution"  # one of SELECTIONS

    @property
    def dual(self) -> torch.Tensor:
        """The dual neurons: critical for both the forget and the retain set."""
        return self.forget_critical & self.retain_critical

    def report(self) -> list[dict]:
        """One row per layer: |C_f|, |C_r|, dual count, selected count and fraction of units."""
        units = self.selected.shape[1]
        return [
            {
                "layer": layer,
                "forget_critical": int(self.forget_critical[layer].sum()),
                "retain_critical": int(self.retain_critical[layer].sum()),
                "dual": int(self.dual[layer].sum()),
                "selected": int(self.selected[layer].sum()),
                "fraction_selected": float(self.selected[layer].sum()) / units,
            }
            for layer in range(self.selected.shape[0])
        ]

    def save(self, path: str | Path) -> Path:
        """Write the mask (and the scores) to `path` as safetensors; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "selected": self.selected.to(torch.uint8).cpu().contiguous(),
            "forget_critical": self.forget_critical.to(torch.uint8).cpu().contiguous(),
            "retain_critical": self.retain_critical.to(torch.uint8).cpu().contiguous(),
        }
        tensors.update({f"scores.{name}": s.float().cpu().contiguous() for name, s in self.scores.items()})
        metadata = {
            "format": FORMAT,
            "strategy": self.strategy,
            "mode": self.mode,
            "t": repr(float(self.t)),
            "m": str(self.m),
            "family": self.family,
            "selection": self.selection,
        }
        temporary = path.with_name(path.name + ".tmp")
        save_file(tensors, str(temporary), metadata=metadata)
        temporary.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CriticalMask":
        """Read a mask written by `save`.

        Raises:
            UserError: the file is missing or is not a simu-bench mask.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"mask file {path} does not exist; "
                "expected a .safetensors file written by a SIMU run (its mask.safetensors)"
            )
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as error:  # safetensors raises its own error types for a bad header
            raise UserError(
                f"mask file {path} could not be read as safetensors ({error}); expected a mask written by a SIMU run"
            ) from None
        if metadata.get("format") != FORMAT or "selected" not in tensors:
            raise UserError(
                f"mask file {path} is not a simu-bench critical mask (format {metadata.get('format')!r}); "
                f"expected {FORMAT!r}"
            )
        return cls(
            selected=tensors["selected"].bool(),
            forget_critical=tensors["forget_critical"].bool(),
            retain_critical=tensors["retain_critical"].bool(),
            strategy=metadata["strategy"],
            mode=metadata["mode"],
            t=float(metadata["t"]),
            m=int(metadata["m"]),
            family=metadata["family"],
            scores={key.split(".", 1)[1]: value for key, value in tensors.items() if key.startswith("scores.")},
            selection=metadata.get("selection", "attribution"),
        )


def build_mask(
    forget_scores: torch.Tensor,
    retain_scores: torch.Tensor,
    *,
    strategy: str = "dual",
    mode: str = "threshold",
    t: float = 0.5,
    m: int = 3,
    family: str = "",
) -> CriticalMask:
    """C_f and C_r from the two sets' scores, and the units the strategy selects."""
    check_selection(mode, t, strategy)
    if forget_scores.shape != retain_scores.shape:
        raise UserError(
            f"forget scores {tuple(forget_scores.shape)} and retain scores {tuple(retain_scores.shape)} "
            "differ in shape; expected both (layers, d_ff) from the same model"
        )
    forget = critical_units(forget_scores, mode, t)
    retain = critical_units(retain_scores, mode, t)
    selected = forget if strategy == "dual" else forget & ~retain
    return CriticalMask(
        selected.clone(),
        forget,
        retain,
        strategy,
        mode,
        float(t),
        int(m),
        family,
        scores={"forget": forget_scores.detach().float().cpu(), "retain": retain_scores.detach().float().cpu()},
    )


def random_selection(selected: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Bool (layers, d_ff): in each layer, as many units as ``selected`` has there, drawn at random."""
    chosen = torch.zeros_like(selected, dtype=torch.bool)
    for layer in range(selected.shape[0]):
        count = int(selected[layer].sum())
        if count:
            chosen[layer, torch.randperm(selected.shape[1], generator=generator)[:count]] = True
    return chosen


def soft_weights(mask: CriticalMask, dual_factor: float) -> torch.Tensor:
    """Float (layers, d_ff) in [0, 1]: each selected unit's share of its update (see the module doc)."""
    forget = mask.scores["forget"].float()  # (layers, d_ff)
    best = forget.max(dim=1, keepdim=True).values.clamp(min=torch.finfo(torch.float32).tiny)
    weights = (forget / best).clamp(0, 1) * mask.selected
    return torch.where(mask.dual, weights * dual_factor, weights)
