"""The `simu` unlearner: GradDiff with SophiaG on the attention projections and critical neurons.

Paper: SIMU: Selective Influence Machine Unlearning (Agarwal, Pamnani, Hakkani-Tur; NeurIPS 2025
COML workshop; arXiv 2510.07822), on top of SO-GradDiff (SOUL, arXiv 2404.18239).

1. `prepare`: integrated-gradients scores of every MLP unit for the forget and the retain set
   (`simu_bench.simu.attribution`; `options.positions`: scale the positions that predict an
   answer token, as the knowledge-neuron line of work does, or every position), then the
   critical-neuron mask (`simu_bench.simu.masks`):
   C_f, C_r and the units the strategy keeps (`dual`: all of C_f; `forget_only`: C_f - C_r).
   A mask saved by an earlier run (`options.mask_path`) replaces this step.
2. Training: loss = -CE(forget) + gamma * CE(retain), SophiaG (SOUL's step). Trained: every
   attention projection in full and, in each layer's down projection, only the weights of the
   selected units (nn.Linear: columns weight[:, j]; GPT-2 Conv1D: rows weight[j, :]).
   Everything else is frozen (requires_grad False), the down projection's bias included.
   The unit mask M is applied at every SophiaG step to momentum, curvature and weights,
   x = M * x_new + (1 - M) * x_old, so frozen coordinates keep their values bit for bit and
   weight decay never moves them; their gradients are also zeroed before clipping, so that
   the clipped norm is the norm of what trains.

Variants, each registered under its own name with its own YAML (the class is the same):
- ``loss: npo | simnpo`` (`simu_npo`, `simu_simnpo`): the mask is independent of the loss, so
  SIMU's mask can train NPO's or SimNPO's loss (`simu_bench.unlearning.losses`; ``gamma`` is
  then the retain weight alpha; NPO keeps a frozen reference model).
- ``selection: random`` (`random_mask`): the control for attribution vs sparsity: the selected
  units are replaced by as many random units per layer (seeded by ``mask_seed``, or by the run's
  seed when null); the mask is saved in SIMU's format with ``selection: random``.
- ``weighting: soft`` (`simu_soft`, the paper's "soft or weighted masking" future work): M[l, j]
  is the selected unit's normalised forget attribution, dual units times ``dual_factor``
  (`simu_bench.simu.masks.soft_weights`), so each unit's update is scaled rather than gated.
- ``parts: attention | units`` (`attention_only`, `simu_mlp_only`): the controls that isolate
  the mask. `attention_only` trains SIMU's attention projections and no MLP unit (it computes no
  mask); `simu_mlp_only` trains SIMU's selected units with attention frozen. With
  ``strategy: forget_only`` (`simu_forget_only`) the selection is C_f minus C_r.
A mask loaded from ``mask_path`` is used as saved (its selection is not redrawn).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from simu_bench.errors import UserError
from simu_bench.files import atomic_write_json
from simu_bench.simu import attribution, diagnostics
from simu_bench.simu.cache import Cache
from simu_bench.simu.masks import (
    MODES,
    SELECTIONS,
    STRATEGIES,
    CriticalMask,
    build_mask,
    random_selection,
    soft_weights,
)
from simu_bench.unlearning import losses
from simu_bench.unlearning.config import setting
from simu_bench.unlearning.distributed import local, local_mask
from simu_bench.unlearning.unlearner import Unlearner

LOSSES = ("graddiff", "npo", "simnpo")
WEIGHTINGS = ("hard", "soft")
PARTS = ("both", "attention", "units")  # what trains: attention and the selected units, or one of them


@dataclass
class SimuOptions:
    """SIMU's own settings (the `options` block of simu.yaml)."""

    gamma: float = setting(1.0, ge=0.0, doc="GradDiff: weight of the retain loss")
    t: float = setting(
        0.5, gt=0.0, le=1.0, doc="threshold: fraction of the layer's max score; top_fraction: share of units"
    )
    m: int = setting(3, ge=1, doc="integrated-gradients steps from zero to the activation")
    strategy: str = setting("dual", choices=STRATEGIES, doc="dual: all of C_f | forget_only: C_f minus C_r")
    mode: str = setting("threshold", choices=MODES, doc="threshold (score >= t * layer max) | top_fraction")
    positions: str = setting(
        attribution.POSITIONS[0], choices=attribution.POSITIONS,
        doc="attribution scales the positions that predict an answer token (predicting) or every position (all)",
    )
    attribution_batch_size: int = setting(8, ge=1, doc="examples per attribution pass (times (m-1)*L+1 copies)")
    copies_per_pass: int | None = setting(None, ge=1, doc="split the attribution copies over passes to save memory")
    mask_path: str | None = setting(None, doc="load this mask.safetensors instead of computing one")
    loss: str = setting("graddiff", choices=LOSSES, doc="graddiff | npo | simnpo (gamma is the retain weight)")
    beta: float = setting(0.1, gt=0.0, doc="npo / simnpo: inverse temperature")
    delta: float = setting(0.0, doc="simnpo: reward margin")
    forget_weight: float = setting(1.0, gt=0.0, doc="npo / simnpo: weight of the forget term")
    selection: str = setting("attribution", choices=SELECTIONS, doc="attribution | random (same count per layer)")
    mask_seed: int | None = setting(None, ge=0, doc="random selection: its seed; null: the run's seed")
    weighting: str = setting("hard", choices=WEIGHTINGS, doc="hard (0/1) | soft (normalised attribution)")
    dual_factor: float = setting(0.5, ge=0.0, le=1.0, doc="soft weighting: factor on dual units")
    diagnostics: bool = setting(True, doc="write mask.json: counts, stability over forget halves, causal check")
    parts: str = setting(
        "both", choices=PARTS, doc="what trains: both (attention and the selected units) | attention | units"
    )


class Simu(Unlearner):
    """SIMU: GradDiff + SophiaG restricted to attention and the critical MLP neurons."""

    paper = "SIMU: Selective Influence Machine Unlearning (arXiv 2510.07822)"
    Options = SimuOptions
    retain_weight = "gamma"

    @property
    def supports_distributed(self) -> bool:
        """Across processes with GradDiff's loss (answer_nll terms); per-example losses are not normalised so."""
        return getattr(self.options, "loss", "graddiff") == "graddiff"

    @classmethod
    def check_config(cls, config, model=None) -> list[str]:
        """The optimizer and the mask file; with the target's shape, also that the mask fits it."""
        problems = attribution.unsupported(model.model_type) if model is not None else []
        if config.optimizer.name != "sophiag":
            problems.append(f"optimizer.name: got {config.optimizer.name!r}, expected 'sophiag' (SIMU masks "
                            "SophiaG's momentum, curvature and weights): leave optimizer.name as sophiag")
        if config.options.mask_path:
            try:
                mask = CriticalMask.load(Path(config.options.mask_path).expanduser())
            except UserError as error:
                problems.append(f"options.mask_path: {error}; or set options.mask_path=null to compute the mask")
                return problems
            found, expected = tuple(mask.selected.shape), model and (model.layers, model.units)
            if model is not None and (found != expected or mask.family != model.model_type):
                problems.append(f"options.mask_path {config.options.mask_path}: mask of a {mask.family!r} model with "
                                f"(layers, units) {found}; this {model.model_type!r} model has {expected}; use a mask "
                                "saved by a run on the same target, or set options.mask_path=null to compute one")
        return problems

    def __init__(self, config):
        super().__init__(config)
        problems = self.check_config(config)
        if problems:
            raise UserError(f"{config.source or 'simu config'}: {'; '.join(problems)}")
        self.uses_reference = self.options.loss == "npo"  # NPO compares with the frozen model
        self.mask: CriticalMask | None = None
        self.attribution_seconds = 0.0
        self.diagnostics: dict | None = None  # mask.json, from `prepare` (the model before unlearning)
        self._trained_weights = (0, 0)  # (the selected units' down-projection weights, all trained weights)
        self._projections: list[attribution.DownProjection] = []
        self._unit_masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

    # -- step 1: the mask ---------------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        """The attribution scores kept in the run store (``cache_dir``), shared by seeds and variants."""
        folder = None if self.cache_dir is None else Path(self.cache_dir) / "attribution"
        if getattr(self, "_cache", None) is None or self._cache.folder != folder:
            self._cache = Cache(folder)
        return self._cache

    def prepare(self, model, tokenizer, data) -> None:
        self._projections = attribution.down_projections(model)
        started = time.perf_counter()
        if self.options.parts == "attention":  # trains no unit: a mask would go unused
            return
        if self.options.mask_path:
            self.mask = CriticalMask.load(self.options.mask_path)
            self._check_loaded(model)
        else:
            forget = self.cache.attribute(model, tokenizer, data.forget, **self._attribution_kwargs())
            retain = self.cache.attribute(model, tokenizer, data.retain, **self._attribution_kwargs())
            self.mask = build_mask(
                forget,
                retain,
                strategy=self.options.strategy,
                mode=self.options.mode,
                t=self.options.t,
                m=self.options.m,
                family=attribution.model_family(model),
            )
            if self.options.selection == "random":
                seed = self.options.mask_seed if self.options.mask_seed is not None else torch.initial_seed()
                self.mask.selected = random_selection(self.mask.selected, torch.Generator().manual_seed(seed))
                self.mask.selection = "random"
        if self.options.weighting == "soft" and "forget" not in self.mask.scores:
            raise UserError(f"options.mask_path {self.options.mask_path}: the mask has no forget scores, which "
                            f"weighting: soft needs; use a mask saved by a SIMU run, or weighting: hard")
        self.attribution_seconds = time.perf_counter() - started
        if self.options.diagnostics:
            self._diagnose(model, tokenizer, data)

    def _attribution_kwargs(self) -> dict:
        return dict(
            m=self.options.m,
            batch_size=self.options.attribution_batch_size,
            copies_per_pass=self.options.copies_per_pass,
            max_length=self.config.train.max_length,
            positions=self.options.positions,
        )

    def _diagnose(self, model, tokenizer, data) -> None:
        """The mask's counts, stability and causal check (`simu_bench.simu.diagnostics`), before training."""
        started = time.perf_counter()
        if self.options.mask_path:  # a loaded mask repeats a run without attribution: its own run measured it
            stable = {"jaccard": None, "per_layer": [], "reason": f"loaded from {self.options.mask_path}"}
        else:
            stable = diagnostics.stability(model, tokenizer, data, self.mask, self.mask.scores["retain"],
                                           attribute=self.cache.attribute, **self._attribution_kwargs())
        causal = diagnostics.causal_check(model, tokenizer, data, self.mask.selected,
                                          batch_size=self.options.attribution_batch_size,
                                          max_length=self.config.train.max_length)
        self.diagnostics = {"counts": diagnostics.counts(self.mask), "stability": stable, "causal_check": causal,
                            "seconds": round(time.perf_counter() - started, 3)}

    def _check_loaded(self, model) -> None:
        expected = (len(self._projections), self._projections[0].units)
        family = attribution.model_family(model)
        if tuple(self.mask.selected.shape) != expected or self.mask.family != family:
            raise UserError(
                f"options.mask_path {self.options.mask_path}: mask of a {self.mask.family!r} model with "
                f"(layers, units) {tuple(self.mask.selected.shape)}; this {family!r} model has {expected}; "
                f"use a mask saved by a run on the same target, or remove mask_path to compute one"
            )

    def save_artifacts(self, run_dir) -> list:
        """The run's critical-neuron mask, `mask.safetensors` (reusable as options.mask_path), and its
        diagnostics, `mask.json`."""
        if self.mask is None:
            return []
        written = [self.mask.save(Path(run_dir) / "mask.safetensors")]
        if self.diagnostics is not None:
            selected, trained = self._trained_weights
            record = {"method": self.name, "selection": self.mask.selection, "strategy": self.mask.strategy,
                      "parts": self.options.parts, "trained_weights": trained, "mask_weights": selected,
                      "mask_share_of_trained": diagnostics.coverage(selected, trained), **self.diagnostics}
            atomic_write_json(Path(run_dir) / "mask.json", record)
            written.append(Path(run_dir) / "mask.json")
        return written

    # -- step 2: masked second-order GradDiff -------------------------------------------------

    def parameters_to_train(self, model):
        family = attribution.model_family(model)
        layers_path, _ = attribution.FAMILIES[family]
        attention_name = attribution.ATTENTION[family]
        chosen = []
        self._unit_masks = []
        parts = self.options.parts
        weights = self._unit_weights()
        in_mask = 0  # trained down-projection weights: d_model per selected unit
        for index, layer in enumerate(model.get_submodule(layers_path)):
            attention = layer.get_submodule(attention_name)
            for module in attention.modules() if parts != "units" else ():  # OLMo-2's q/k norms stay frozen
                if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
                    chosen.extend(module.parameters(recurse=False))
            projection = self._projections[index]
            units = weights[index].to(projection.weight.device)  # (d_ff,): bool, or float in [0, 1] when soft
            if parts != "attention" and units.any():
                # (1, d_ff) selects columns of a Linear (d_model, d_ff); (d_ff, 1) rows of a Conv1D.
                shape = (1, -1) if projection.unit_dim == 1 else (-1, 1)
                chosen.append(projection.weight)
                in_mask += int((units != 0).sum()) * (projection.weight.numel() // projection.units)
                self._unit_masks.append((projection.weight, units.view(shape)))
        if not chosen:
            raise UserError(f"{self.name}: the mask selects no MLP unit in any layer and options.parts is "
                            f"{parts!r}, so nothing would train; lower options.t or set options.parts=both")
        masked = {id(weight) for weight, _ in self._unit_masks}
        self._trained_weights = (in_mask, in_mask + sum(p.numel() for p in chosen if id(p) not in masked))
        names = {id(p): n for n, p in model.named_parameters()}
        return [(names[id(p)], p) for p in chosen]

    def _unit_weights(self) -> torch.Tensor:
        """(layers, d_ff): 1 where a unit's down-projection weights train (soft: its share); none when
        only attention trains."""
        if self.mask is None:
            return torch.zeros(len(self._projections), self._projections[0].units, dtype=torch.bool)
        if self.options.weighting == "hard":
            return self.mask.selected
        return soft_weights(self.mask, self.options.dual_factor)

    def loss(self, model, batch):
        options = self.options
        if options.loss == "graddiff":
            return losses.graddiff(model, batch, options.gamma)
        forget, retain = losses.joint_nll(model, batch.forget, batch.retain)  # one forward for both
        if options.loss == "npo":
            term = losses.npo_of(forget.log_prob(), losses.reference_log_prob(self.reference, batch.forget),
                                 options.beta)
        else:
            term = losses.simnpo_of(forget.per_example(), options.beta, options.delta)
        return options.forget_weight * term + options.gamma * retain.mean()

    def on_train_start(self, state) -> None:
        for weight, units in self._unit_masks:
            state.optimizer.set_mask(weight, units)

    def before_step(self, state) -> None:
        for weight, units in self._unit_masks:
            if weight.grad is not None:  # on this process's shard when the model is sharded
                local(weight.grad).mul_(local_mask(weight, units))

    def summary(self) -> dict:
        if self.mask is None:
            return {}
        report = self.mask.report()
        units = self.mask.selected.numel()
        return {
            "mask": {
                "strategy": self.mask.strategy,
                "mode": self.mask.mode,
                "t": self.mask.t,
                "m": self.mask.m,
                "positions": None if self.options.mask_path else self.options.positions,
                "family": self.mask.family,
                "loaded_from": self.options.mask_path,
                "selection": self.mask.selection,
                "weighting": self.options.weighting,
                "selected": int(self.mask.selected.sum()),
                "forget_critical": int(self.mask.forget_critical.sum()),
                "retain_critical": int(self.mask.retain_critical.sum()),
                "dual": int(self.mask.dual.sum()),
                "fraction_selected": float(self.mask.selected.sum()) / units,
                "per_layer": report,
            },
            "loss": self.options.loss,
            "attribution_seconds": round(self.attribution_seconds, 3),
            "diagnostics_seconds": self.diagnostics["seconds"] if self.diagnostics else None,
        }
