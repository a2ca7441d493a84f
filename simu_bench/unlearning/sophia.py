"""SophiaG, the second-order optimizer of SO-GradDiff and SIMU, with per-parameter masks.

Sophia: A Scalable Stochastic Second-order Optimizer for Language Model Pre-training
(Liu, Li, Hall, Liang, Ma; arXiv 2305.14342), in two variants:

- ``variant="soul"`` (default): the step exactly as SOUL runs it (Jia et al., "SOUL: Unlocking
  the Power of Second-Order Optimization for LLM Unlearning", EMNLP 2024, arXiv 2404.18239).
  Per parameter, with the (clipped) gradient g and state starting at zero::

      h     = beta2 * h + (1 - beta2) * g * g          # curvature: squared gradient, every step
      m     = beta1 * m + (1 - beta1) * g
      theta = theta * (1 - lr * weight_decay)           # decoupled weight decay
      m     = beta1 * m + (1 - beta1) * g               # SOUL updates the momentum a second time
      theta = theta - lr * sign(m) * min(|m| / (rho * curvature_scale * h + 1e-15), 1)

  The two momentum updates are applied as one, ``m = beta1^2 * m + (1 - beta1^2) * g``, which
  is the same value up to float rounding and saves a pass over memory.

- ``variant="gnb"``: textbook Sophia-G. The step updates the momentum once and never touches
  ``h``; the curvature comes from `update_hessian()`, which the training loop calls every
  ``hessian_interval`` steps right after a backward pass on the loss of labels sampled from the
  model's own logits (the Gauss-Newton-Bartlett estimator): ``h = beta2 * h + (1 - beta2) * g*g``.

Precision: state (momentum, curvature) is created in the parameter's dtype, as SOUL does, so a
bfloat16 model has bfloat16 state and every step rounds to bfloat16 (at SOUL's lr 5e-6 most
sign-steps of size lr are below half a bfloat16 ulp of the weight and round away, as in SOUL's
own runs). ``state_dtype=torch.float32`` keeps momentum and curvature in float32 instead (the
gradient is cast up, the weight update is rounded once to the weight's dtype). In float32 the
"soul" variant applies its two momentum updates as one ``lerp`` (equal to within a rounding)
and batches tensors with foreach ops; with low-precision state it runs SOUL's code tensor by
tensor, operation by operation (a foreach op would first round its scalars to bfloat16), so a
bfloat16 run matches SOUL's arithmetic bit for bit (``tests/test_precision.py``).

``curvature_scale`` multiplies the curvature as the ``bs`` argument of both reference
implementations does (5120 there; for the GNB estimator it stands for the number of tokens
behind one gradient, so for ``gnb`` the training loop's curvature refresh sets it to the
answer-token count of each refresh's batch: `simu_bench.unlearning.optimizers.CurvatureRefresh`).

Masks: ``optimizer.set_mask(param, mask)`` with a tensor broadcastable to ``param`` and values
in [0, 1]. After every step (and every `update_hessian`), each of momentum, curvature and weights
becomes ``M * new + (1 - M) * old``, so coordinates with M = 0 keep their old values exactly and
weight decay never moves them. SIMU uses this to train only the columns of its critical neurons.

Sharded parameters (FSDP2 DTensors, `simu_bench.unlearning.distributed`): the step is elementwise,
so it runs on each process's local shard, with state and masks of the shard's shape.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from simu_bench.unlearning.distributed import local, local_mask

VARIANTS = ("soul", "gnb")


def check_hyperparameters(
    lr: float,
    betas: tuple[float, float],
    rho: float,
    weight_decay: float,
    curvature_scale: float,
    variant: str,
    hessian_interval: int,
) -> list[tuple[str, str]]:
    """Return (parameter, problem) pairs for invalid SophiaG settings; empty when all are valid."""
    problems: list[tuple[str, str]] = []

    def finite(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not finite(lr) or lr < 0:
        problems.append(("lr", f"got {lr!r}, expected a finite number >= 0"))
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        problems.append(("betas", f"got {betas!r}, expected two numbers (beta1, beta2) in [0, 1)"))
    else:
        for index, beta in enumerate(betas):
            if not finite(beta) or not 0.0 <= beta < 1.0:
                problems.append((f"betas[{index}]", f"got {beta!r}, expected a number in [0, 1)"))
    if not finite(rho) or rho <= 0:
        problems.append(("rho", f"got {rho!r}, expected a finite number > 0 (SOUL uses 0.04)"))
    if not finite(weight_decay) or weight_decay < 0:
        problems.append(("weight_decay", f"got {weight_decay!r}, expected a finite number >= 0"))
    if not finite(curvature_scale) or curvature_scale <= 0:
        problems.append(("curvature_scale", f"got {curvature_scale!r}, expected a number > 0 (SOUL uses 5120)"))
    if variant not in VARIANTS:
        problems.append(("variant", f"got {variant!r}, expected one of {', '.join(VARIANTS)}"))
    if isinstance(hessian_interval, bool) or not isinstance(hessian_interval, int) or hessian_interval < 1:
        problems.append(("hessian_interval", f"got {hessian_interval!r}, expected an integer >= 1"))
    return problems


def _data(p: torch.Tensor) -> torch.Tensor:
    """The tensor that holds ``p``'s values here: ``p.data``, or a DTensor's local shard."""
    return p.data if local(p) is p else local(p)


def _soul_step(p, g, m, h, *, lr, beta1, beta2, rho, weight_decay, curvature_scale) -> None:
    """SOUL's SophiaG update of one tensor, in place, operation by operation as its code writes it."""
    h.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    p.mul_(1 - lr * weight_decay)
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    ratio = (m.abs() / (rho * curvature_scale * h + 1e-15)).clamp(None, 1)
    p.addcmul_(m.sign(), ratio, value=-lr)


class SophiaG(torch.optim.Optimizer):
    """SophiaG (arXiv 2305.14342); ``variant="soul"`` reproduces SOUL's step (arXiv 2404.18239).

    Args:
        params: parameters or parameter groups (groups may set their own ``weight_decay``).
        lr: step size; the update of one coordinate is at most ``lr`` per step.
        betas: (beta1 for the momentum m, beta2 for the curvature h).
        rho: clipping scale of the preconditioned update.
        weight_decay: decoupled weight decay, ``theta *= 1 - lr * weight_decay``.
        curvature_scale: curvature scale (5120 in SOUL and in Sophia's reference code).
        variant: "soul" (squared gradient every step, momentum twice) or "gnb" (textbook
            Sophia-G: curvature only from `update_hessian`, momentum once).
        hessian_interval: for "gnb", how many steps between curvature refreshes (read by the
            training loop, which performs the refresh).
        state_dtype: None keeps momentum and curvature in each parameter's dtype (SOUL);
            torch.float32 keeps them in float32 for low-precision parameters.

    Raises:
        ValueError: naming each invalid hyperparameter, its value and the valid range.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        curvature_scale: float = 5120,
        variant: str = "soul",
        hessian_interval: int = 10,
        state_dtype: torch.dtype | None = None,
    ):
        problems = check_hyperparameters(
            lr, betas, rho, weight_decay, curvature_scale, variant, hessian_interval
        )
        if problems:
            raise ValueError("SophiaG: " + "; ".join(f"{name}: {text}" for name, text in problems))
        defaults = dict(
            lr=lr, betas=tuple(betas), rho=rho, weight_decay=weight_decay, curvature_scale=curvature_scale
        )
        super().__init__(params, defaults)
        self.variant = variant
        self.hessian_interval = hessian_interval if variant == "gnb" else None
        self.state_dtype = state_dtype

    # -- masks ---------------------------------------------------------------------------

    def set_mask(self, param: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Restrict updates of ``param`` to the coordinates where ``mask`` is 1 (None removes it).

        ``mask`` must broadcast to ``param`` (e.g. shape (1, d_ff) for the columns of a
        (d_model, d_ff) weight) and hold values in [0, 1]. The mask is part of `state_dict`.
        """
        if not any(param is p for group in self.param_groups for p in group["params"]):
            raise ValueError("SophiaG.set_mask: the parameter is not optimized by this optimizer")
        state = self.state[param]
        if mask is None:
            state.pop("mask", None)
            return
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"SophiaG.set_mask: mask must be a tensor, got {type(mask).__name__}")
        try:
            torch.broadcast_shapes(mask.shape, param.shape)
            broadcasts = torch.broadcast_shapes(mask.shape, param.shape) == param.shape
        except RuntimeError:
            broadcasts = False
        if not broadcasts:
            raise ValueError(
                f"SophiaG.set_mask: mask of shape {tuple(mask.shape)} does not broadcast to the "
                f"parameter's shape {tuple(param.shape)}"
            )
        mask = local_mask(param, mask)  # the part of the mask over this process's shard
        if mask.dtype == torch.bool:
            state["mask"] = mask.to(param.device)
            return
        mask = mask.detach().to(device=param.device, dtype=param.dtype)
        if not bool(((mask >= 0) & (mask <= 1)).all()):
            raise ValueError("SophiaG.set_mask: mask values must lie in [0, 1]")
        binary = bool(((mask == 0) | (mask == 1)).all())
        # A 0/1 mask is stored as bool so that `torch.where` keeps frozen values bit for bit.
        state["mask"] = mask.bool() if binary else mask.clone()

    def mask_of(self, param: torch.Tensor) -> torch.Tensor | None:
        """The mask set for ``param``, or None."""
        return self.state.get(param, {}).get("mask")

    @staticmethod
    def _blend(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> None:
        # new <- M * new + (1 - M) * old, in place.
        if mask.dtype == torch.bool:
            new.copy_(torch.where(mask, new, old))
        else:
            new.mul_(mask).add_(old * (1 - mask))

    # -- state ---------------------------------------------------------------------------

    def _state_of(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if "exp_avg" not in state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(local(p), memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(local(p), memory_format=torch.preserve_format)
        if self.state_dtype is not None and state["exp_avg"].dtype != self.state_dtype:
            state["exp_avg"] = state["exp_avg"].to(self.state_dtype)
            state["hessian"] = state["hessian"].to(self.state_dtype)
        return state

    def _masked_snapshot(self, params: list[torch.Tensor], keys: tuple[str, ...]) -> list:
        """(param, mask, {key: old tensor}) for every masked parameter among ``params``."""
        snapshot = []
        for p in params:
            state = self.state[p]
            mask = state.get("mask")
            if mask is not None:
                old = {key: (local(p) if key == "param" else state[key]).detach().clone() for key in keys}
                snapshot.append((p, mask, old))
        return snapshot

    def _restore_masked(self, snapshot: list) -> None:
        for p, mask, old in snapshot:
            state = self.state[p]
            for key, value in old.items():
                self._blend(mask, _data(p) if key == "param" else state[key], value)

    # -- updates -------------------------------------------------------------------------

    @torch.no_grad()
    def update_hessian(self) -> None:
        """Fold the current gradients into the curvature: h = beta2 * h + (1 - beta2) * g*g.

        For the "gnb" variant the loop calls this after a backward pass on sampled labels.
        """
        for group in self.param_groups:
            _, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            hessians = [self._state_of(p)["hessian"] for p in params]
            grads = [local(p.grad) for p in params]
            grads = [g.to(h.dtype) for g, h in zip(grads, hessians)]  # float32 state: the gradient cast up
            snapshot = self._masked_snapshot(params, ("hessian",))
            torch._foreach_mul_(hessians, beta2)
            torch._foreach_addcmul_(hessians, grads, grads, value=1 - beta2)
            self._restore_masked(snapshot)

    @torch.no_grad()
    def step(self, closure=None):
        """One SophiaG step over every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("SophiaG does not support sparse gradients")
            beta1, beta2 = group["betas"]
            lr, rho, wd = group["lr"], group["rho"], group["weight_decay"]
            curvature_scale = group["curvature_scale"]
            states = [self._state_of(p) for p in params]
            grads = [local(p.grad) for p in params]
            weights = [local(p) for p in params]  # the parameters themselves in one process
            moms = [s["exp_avg"] for s in states]
            hessians = [s["hessian"] for s in states]
            grads = [g.to(m.dtype) for g, m in zip(grads, moms)]  # float32 state: the gradient cast up
            snapshot = self._masked_snapshot(params, ("param", "exp_avg", "hessian"))
            for s in states:
                s["step"] += 1
            if self.variant == "soul" and moms[0].dtype != torch.float32:
                # Low precision: SOUL's code, one tensor at a time. A foreach op rounds its scalar
                # (beta2, rho * bs, ...) to the tensor's dtype first, SOUL's per-tensor ops do not.
                for p, g, m, h in zip(params, grads, moms, hessians):
                    _soul_step(_data(p), g, m, h, lr=lr, beta1=beta1, beta2=beta2, rho=rho, weight_decay=wd,
                               curvature_scale=curvature_scale)
                self._restore_masked(snapshot)
                continue

            if self.variant == "soul":
                torch._foreach_mul_(hessians, beta2)
                torch._foreach_addcmul_(hessians, grads, grads, value=1 - beta2)
                # Two momentum updates: beta1*(beta1*m + (1-beta1)*g) + (1-beta1)*g.
                torch._foreach_lerp_(moms, grads, 1 - beta1 * beta1)
            else:
                torch._foreach_lerp_(moms, grads, 1 - beta1)
            if wd != 0:
                torch._foreach_mul_(weights, 1 - lr * wd)
            # sign(m) * min(|m| / d, 1) == clamp(m / d, -1, 1) for d > 0.
            denom = torch._foreach_mul(hessians, rho * curvature_scale)
            torch._foreach_add_(denom, 1e-15)
            ratio = torch._foreach_div(moms, denom)
            del denom
            torch._foreach_clamp_min_(ratio, -1.0)
            torch._foreach_clamp_max_(ratio, 1.0)
            torch._foreach_add_(weights, ratio, alpha=-lr)
            self._restore_masked(snapshot)
        return loss

    def state_dict(self):
        state = super().state_dict()
        state["variant"] = self.variant
        state["hessian_interval"] = self.hessian_interval
        return state

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        variant = state_dict.pop("variant", self.variant)
        if variant != self.variant:
            raise ValueError(
                f"SophiaG.load_state_dict: state was saved with variant={variant!r}, this "
                f"optimizer runs variant={self.variant!r}"
            )
        self.hessian_interval = state_dict.pop("hessian_interval", self.hessian_interval)
        super().load_state_dict(state_dict)
        # torch casts loaded state to the parameter's dtype; keep 0/1 masks boolean.
        for state in self.state.values():
            mask = state.get("mask")
            if mask is not None and mask.dtype != torch.bool and bool(((mask == 0) | (mask == 1)).all()):
                state["mask"] = mask.bool()
