"""One unlearning run across several processes with PyTorch's FSDP2 (`fully_shard`).

    torchrun --nproc_per_node=4 -m simu_bench run --methods so_graddiff --model allenai/OLMo-1B-hf \
        --data path/to/lume --device cuda --utility-tasks mmlu

What changes when `torch.distributed` is initialised with N > 1 processes (ranks):

- The model is sharded after the method's `prepare`: `fully_shard` on every decoder layer (the
  module classes the model lists in `_no_split_modules`), then on the whole model. Every
  parameter becomes a DTensor sharded on dim 0. Gradients are summed across ranks, not
  averaged (`set_gradient_divide_factor(1)`): see the loss below.
- Data: every rank draws the same seeded forget/retain pairing (one generator per run, as in
  one process) and takes its own contiguous slice of each micro-batch of ``train.batch_size``
  pairs (`simu_bench.data.pairing.batches(shard=...)`), so no pair is seen twice and
  ``train.batch_size`` keeps its meaning: the micro-batch of the whole run. A rank left without
  a row (the last, smaller batch of an epoch) runs one row whose labels are all masked: it
  takes part in the collectives and adds nothing.
- Loss: each rank sums its answer-token NLLs and divides by the answer-token count of the
  whole micro-batch (`Encoded.answer_tokens`), so the ranks' losses add up to the one-process
  loss of the same micro-batch, and so do their gradients: N ranks x their slices give the
  update of one process with the whole batch (to float rounding: sums run in another order).
- Optimizers work on each rank's local shard: AdamW, and SophiaG whose step is elementwise;
  gradient clipping uses the global norm (`clip_grad_norm_` on DTensors). SIMU's column mask
  of a down projection, shape (1, d_ff), is unchanged by a dim-0 shard of the (d_model, d_ff)
  weight; masks along a sharded dimension are sliced like the parameter (`local_mask`).

Methods opt in with ``Unlearner.supports_distributed``; the others, Sophia-G's ``gnb`` variant
(labels sampled per row from one generator) and methods with a frozen reference copy are
refused with one line (`check_supported`).
"""

from __future__ import annotations

import datetime
import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from simu_bench.data.pairing import IGNORE, PairedBatch, collate
from simu_bench.errors import UserError

# Rank 0 evaluates while the others wait at the next collective: give it hours, not gloo's 30 minutes.
TIMEOUT = datetime.timedelta(hours=12)


def _dist():
    import torch.distributed as dist  # here: a torch built without distributed support still runs one process

    return dist


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if not is_initialized():
        return 0, 1
    dist = _dist()
    return dist.get_rank(), dist.get_world_size()


def launched() -> bool:
    """Whether this process was started by `torchrun` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> str:
    """Join the process group `torchrun` describes in the environment; return this rank's device.

    ``device`` "cpu" uses gloo; "cuda" (or "cuda:K") uses NCCL on GPU ``LOCAL_RANK``.
    """
    if not launched():
        return device
    dist = _dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu (gloo)")
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", timeout=TIMEOUT)
    return device


def check_supported(unlearner) -> None:
    """Raise UserError when ``unlearner`` cannot run across processes."""
    name = unlearner.name
    if not getattr(unlearner, "supports_distributed", False):
        raise UserError(
            f"method {name!r} cannot run across processes: its loss is not normalised by the global "
            f"answer-token count; run it in one process (without torchrun)"
        )
    if getattr(unlearner, "uses_reference", False):
        raise UserError(
            f"method {name!r} keeps a frozen reference model, which is not sharded; run it without torchrun"
        )
    optimizer = unlearner.config.optimizer
    if optimizer.name == "sophiag" and optimizer.variant == "gnb":
        raise UserError(
            f"method {name!r}: optimizer.variant gnb samples labels from one generator per row and cannot run "
            f"across processes; use optimizer.variant=soul or run without torchrun"
        )


def check_gradient_checkpointing(model_class) -> None:
    """Raise UserError unless ``model_class`` (a transformers model class) supports gradient checkpointing."""
    if not getattr(model_class, "supports_gradient_checkpointing", False):
        raise UserError(
            f"--gradient-checkpointing: {model_class.__name__} does not support gradient checkpointing; "
            f"run without the flag"
        )


def check_gradient_checkpointing_of(name: str) -> None:
    """`check_gradient_checkpointing` for a model folder or hub id, from its config alone.

    A config that cannot be read here is left to the model's loading, which reports it.
    """
    try:
        config = AutoConfig.from_pretrained(name)
        model_class = AutoModelForCausalLM._model_mapping[type(config)]
    except Exception:  # unreadable, remote code, unknown family: checked when the model loads
        return
    check_gradient_checkpointing(model_class)


def enable_gradient_checkpointing(model) -> None:
    """Recompute each decoder layer's activations in the backward pass instead of keeping them.

    Non-reentrant checkpoints (the kind FSDP2 works with); the numbers are those of a run
    without it: the same operations run again on the same inputs.
    """
    check_gradient_checkpointing(type(model))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def decoder_layers(model) -> list[torch.nn.Module]:
    """The model's repeated blocks: modules whose class is in ``model._no_split_modules``."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise UserError(
            f"{type(model).__name__} names no decoder layer class in _no_split_modules; FSDP needs one to "
            f"shard per layer: run this model in one process"
        )
    return layers


def shard_model(model) -> None:
    """FSDP2: `fully_shard` each decoder layer, then the model; gradients summed across ranks."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    for layer in decoder_layers(model):
        fully_shard(layer)
    fully_shard(model)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # the ranks' losses already add up to the batch's
            module.set_force_sum_reduction_for_comms(True)  # a plain sum: gloo has no pre-scaled sum


def shard_batch(batch, tokenizer, max_length: int):
    """This rank's contiguous slice of a micro-batch (`numpy.array_split` sizes) with the whole
    micro-batch's answer-token counts in ``answer_tokens``.

    Every rank draws the same pairing, so the slices of one micro-batch are disjoint and cover
    it. A rank left without a row takes the batch's first pair with every label masked.
    """
    rank, size = world()
    rows = len(batch.forget_examples)
    base, extra = divmod(rows, size)
    start = rank * base + min(rank, extra)
    stop = start + base + (rank < extra)
    parts = []
    for whole, examples in ((batch.forget, batch.forget_examples), (batch.retain, batch.retain_examples)):
        if whole is None:  # a method without a retain term
            parts.append(None)
            continue
        encoded = collate(tokenizer, examples[start:stop] or examples[:1], max_length)
        if start == stop:  # takes part in every collective, adds nothing
            encoded.labels.fill_(IGNORE)
        encoded.answer_tokens = int((whole.labels[:, 1:] != IGNORE).sum())  # as answer_nll counts them
        parts.append(encoded)
    return PairedBatch(parts[0], parts[1], batch.forget_examples[start:stop], batch.retain_examples[start:stop])


def is_dtensor(tensor) -> bool:
    return type(tensor).__name__ == "DTensor" and hasattr(tensor, "to_local")


def local(tensor):
    """This rank's shard of a DTensor (a view: in-place changes reach the parameter); else the tensor."""
    return tensor.to_local() if is_dtensor(tensor) else tensor


def local_mask(param, mask: torch.Tensor) -> torch.Tensor:
    """The part of ``mask`` (broadcastable to ``param``'s global shape) that covers this rank's shard.

    A dimension of size 1 in the mask broadcasts and needs no slicing (SIMU's (1, d_ff) column
    mask of a dim-0-sharded down projection); a full-size one is chunked as FSDP2 chunks the
    parameter (`torch.chunk`, the last ranks possibly short or empty).
    """
    if not is_dtensor(param):
        return mask
    from torch.distributed.tensor import Shard

    mask = mask.reshape((1,) * (param.ndim - mask.ndim) + tuple(mask.shape))
    coordinates = param.device_mesh.get_coordinate()
    for mesh_dim, placement in enumerate(param.placements):
        if not isinstance(placement, Shard) or mask.shape[placement.dim] == 1:
            continue
        chunks = torch.chunk(mask, param.device_mesh.size(mesh_dim), dim=placement.dim)
        index = coordinates[mesh_dim]
        mask = chunks[index] if index < len(chunks) else mask.narrow(placement.dim, 0, 0)
    shard = local(param).shape
    if torch.broadcast_shapes(mask.shape, shard) != shard:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not cover the local shard {tuple(shard)}")
    return mask


def total(value: float, device) -> float:
    """The sum of ``value`` over all ranks (itself in one process)."""
    if not is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    _dist().all_reduce(tensor)
    return float(tensor.item())


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (nothing in one process)."""
    if is_initialized():
        _dist().all_reduce(tensor)
    return tensor


def full_norm(norm) -> float:
    """A gradient norm as a float; the global norm of a DTensor one."""
    if is_dtensor(norm):
        norm = norm.full_tensor()
    return float(norm)


def full_state_dict(model) -> dict:
    """Every rank takes part; rank 0 gets the whole model's state on the CPU, the others {}."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if world()[0] == 0 else {}


def broadcast(value):
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not is_initialized():
        return value
    box = [value]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def together(check):
    """``check()`` on every rank; when it raises `UserError` on any rank, every rank raises the
    refusal of the first such rank, at the same moment (after a barrier).

    torchrun stops the other ranks as soon as one exits with an error, so a refusal that each
    rank met alone would end the slower ranks by a signal; refused together, every rank exits 2.
    """
    try:
        result, refusal = check(), None
    except UserError as error:
        result, refusal = None, error
    if not is_initialized():
        if refusal is not None:
            raise refusal
        return result
    texts: list = [None] * world()[1]
    _dist().all_gather_object(texts, None if refusal is None else str(refusal))
    first = next((text for text in texts if text is not None), None)
    if first is not None:
        _dist().barrier()
        raise UserError(first)
    return result


def barrier() -> None:
    if is_initialized():
        _dist().barrier()
