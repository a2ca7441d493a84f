"""Step 1 of SIMU: which MLP units carry a set of examples (integrated-gradients attribution).

The candidates are the MLP intermediate units of every layer: the inputs of the layer's down
projection (`d_ff` per layer). A unit's score on a set of examples is the integrated gradient
(Sundararajan et al., 2017, arXiv 1703.01365) of the target with respect to the unit's
activation, with a zero baseline and the path taken in `m` Riemann steps:

    score[l, j] = sum over examples and positions of
                  a[l, j] * (1/m) * sum_{k=1..m} d target / d a[l, j] evaluated at (k/m) * a[l, :]

where `a[l, :]` is layer l's activation and only layer l is scaled along the path (all other
layers run unscaled). The 1/m makes the sum a Riemann approximation of the path integral, so
the scores of a layer add up to about target(x) - target(layer l's MLP output zeroed), the
completeness property of integrated gradients, whatever m is.

The target is the gold answer's log-probability: the sum over the answer tokens and the final
EOS (the prompt is masked out: the same tokens the GradDiff loss sees) of log p(token | prefix),
summed over the examples of the set. A unit that
supports the memorised answer therefore scores high (the loss would flip the sign).

Which positions are scaled (`positions`):
- `predicting` (the default): only the activations at the positions whose next token is an
  answer token (the positions the target's log-probabilities are read at). This is what the
  knowledge-neuron line of work that SIMU's attribution rests on does: Knowledge Neurons (Dai et
  al., 2022, arXiv 2104.08696) scales the intermediate activation at the [MASK] position, the
  one that predicts the answer, and DEPN (Wu et al., 2023, arXiv 2310.20138) attributes the
  positions that predict the private tokens. The prompt's positions keep their activations, so a
  unit scores by what it adds where the answer is produced.
- `all`: every position of the sequence, the prompt included (the scale multiplies the whole
  down-projection input). The scores then also credit a unit for how it shapes the prompt's
  representation that later positions attend to.
The SIMU paper (arXiv 2510.07822) says it scales "the activation" of each unit and does not say
at which positions. On the embedded target the two give different masks (see docs/differences.md,
"Measured"), so the choice is an option and the default follows the cited line of
work; `all` was this module's only behaviour before the option existed.

Why one layer at a time: the SIMU paper's per-layer criterion and Knowledge Neurons (Dai et al., 2022, arXiv 2104.08696)
attribute layer l's units along a path on which only layer l moves; scaling every layer at
once would measure a different path (later layers would see inputs already weakened by earlier
scaled layers) and its scores would not add up to layer l's own contribution.

How it is batched: each example is repeated once per "copy", a copy being (layer l, step k):
copy (l, k) scales layer l by k/m and leaves the other layers alone. At k = m no layer is
scaled, so that step is one shared copy for all layers: (m - 1) * L + 1 copies in all, run
together in one forward and one backward (`copies_per_pass` splits them when memory is short).
Per layer, a scale tensor `s` of shape (copies, d_ff) multiplies the down projection's input
(at the chosen positions; the others pass unscaled) through a forward pre-hook; d target /
d s[c, j] is exactly the sum over the chosen positions of a[j] * d target / d(scaled a[j]) for
copy c, so the backward pass hands back each copy's term of
the Riemann sum directly. Parameters are frozen during attribution, so the backward pass
computes activation gradients only, and the output layer runs on answer positions only.
Cost: (m - 1) * L + 1 forward + backward passes over the set (below m * L).

Across processes (`torchrun`, `simu_bench.unlearning.distributed`) each process attributes
every N-th batch on its whole, unsharded model and the scores are summed over the processes:
attribution needs the weights and the activations only, no gradients of the weights and no
optimizer state (OLMo-7B in bf16: 14 GB of weights), so it runs before the model is sharded.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from simu_bench.data.pairing import IGNORE, collate
from simu_bench.errors import UserError, did_you_mean
from simu_bench.unlearning import distributed

# Which sequence positions attribution scales (see the module docstring); the first is the default.
POSITIONS = ("predicting", "all")

# model_type -> (where the decoder layers are, the down projection inside one layer).
FAMILIES = {
    "olmo": ("model.layers", "mlp.down_proj"),
    "olmo2": ("model.layers", "mlp.down_proj"),
    "llama": ("model.layers", "mlp.down_proj"),
    "qwen2": ("model.layers", "mlp.down_proj"),
    "gpt_neox": ("gpt_neox.layers", "mlp.dense_4h_to_h"),
    "gpt2": ("transformer.h", "mlp.c_proj"),
}
# model_type -> the attention block inside one layer (SIMU trains its projections in full).
ATTENTION = {"olmo": "self_attn", "olmo2": "self_attn", "llama": "self_attn", "qwen2": "self_attn",
             "gpt_neox": "attention", "gpt2": "attn"}


@dataclass(frozen=True)
class DownProjection:
    """One layer's down projection: the module whose inputs are the layer's MLP units.

    `unit_dim` is the weight dimension that indexes the units: nn.Linear stores its weight as
    (out=d_model, in=d_ff), so unit j is the column weight[:, j] (unit_dim 1); GPT-2's Conv1D
    stores (in=d_ff, out=d_model), so unit j is the row weight[j, :] (unit_dim 0).
    """

    layer: int
    name: str  # module name, e.g. "model.layers.3.mlp.down_proj"
    module: nn.Module
    unit_dim: int

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight"

    @property
    def units(self) -> int:
        return self.module.weight.shape[self.unit_dim]


def unsupported(model_type: str) -> list[str]:
    """[the problem] when the neuron attribution (SIMU, WAGLE, RMU, selective pruning) cannot map
    a model of ``model_type`` (from its config.json), else []."""
    if model_type in FAMILIES:
        return []
    return [f"model family {model_type!r} is not mapped to its layers and MLP down projections; expected one of: "
            f"{', '.join(sorted(FAMILIES))}; to add one, map its model_type in FAMILIES in "
            "simu_bench/simu/attribution.py"]


def model_family(model) -> str:
    return getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__


def down_projections(model) -> list[DownProjection]:
    """Every layer's down projection, in layer order.

    Raises:
        UserError: the model's family has no known down projection.
    """
    family = model_family(model)
    if family not in FAMILIES:
        raise UserError(
            f"model family {family!r} ({type(model).__name__}) is not supported by SIMU's neuron "
            f"attribution; expected one of: {', '.join(sorted(FAMILIES))} (OLMo, Llama, Qwen2, "
            f"GPT-NeoX/Pythia, GPT-2); to add one, map its model_type to its layers and down "
            f"projection in FAMILIES in simu_bench/simu/attribution.py"
        )
    layers_path, down_path = FAMILIES[family]
    layers = model.get_submodule(layers_path)
    found = []
    for index, layer in enumerate(layers):
        module = layer.get_submodule(down_path)
        if isinstance(module, nn.Linear):
            unit_dim = 1
        elif type(module).__name__ == "Conv1D":
            unit_dim = 0
        else:
            raise UserError(
                f"{layers_path}.{index}.{down_path} of the {family!r} model is a "
                f"{type(module).__name__}; expected nn.Linear or transformers' Conv1D"
            )
        found.append(DownProjection(index, f"{layers_path}.{index}.{down_path}", module, unit_dim))
    return found


def answer_log_prob(model, input_ids, attention_mask, answer_mask) -> torch.Tensor:
    """Sum over rows and answer tokens of log p(token | prefix); logits only where needed."""
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    predicts = answer_mask[:, 1:]  # position p predicts token p + 1
    logits = model.get_output_embeddings()(hidden[:, :-1][predicts])  # (answer tokens, vocab)
    targets = input_ids[:, 1:][predicts]
    return torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).sum()


def _copies(layers: int, m: int) -> list[tuple[int | None, float]]:
    """(layer scaled, alpha) per copy: the shared unscaled copy first (layer None, alpha 1)."""
    return [(None, 1.0)] + [(layer, k / m) for layer in range(layers) for k in range(1, m)]


def predicting_positions(answer: torch.Tensor) -> torch.Tensor:
    """Bool (batch, seq): True at position p when token p + 1 is an answer token (p predicts it)."""
    predicting = torch.zeros_like(answer)
    predicting[:, :-1] = answer[:, 1:]
    return predicting


def attribute(model, tokenizer, examples: Sequence, *, m: int = 3, batch_size: int = 8,
              copies_per_pass: int | None = None, max_length: int = 512,
              positions: str = POSITIONS[0]) -> torch.Tensor:
    """Integrated-gradients scores of every MLP unit for `examples` (see the module docstring).

    Args:
        model: a causal LM of a supported family (see FAMILIES); left unchanged.
        tokenizer: its tokenizer (needs an EOS token).
        examples: objects with `.input` and `.output` (e.g. `simu_bench.data.lume.Example`),
            tokenised exactly as the unlearning loss sees them (`simu_bench.data.pairing.collate`).
        m: Riemann steps along the path from zero to the activation.
        batch_size: examples per pass; a pass holds batch_size x copies rows.
        copies_per_pass: at most this many copies per pass (default: all (m - 1) * L + 1).
        max_length: tokens per example, as in the unlearning run (`train.max_length`).
        positions: "predicting" (scale only the positions that predict an answer token) or
            "all" (every position, the prompt included); see the module docstring.

    Returns:
        float32 tensor (layers, d_ff), on the model's device: score[l, j] for unit j of layer l.

    Raises:
        UserError: bad m / batch_size / positions, an empty set, or an unsupported model family.
    """
    _check_arguments(m, batch_size, copies_per_pass, positions, examples)
    projections = down_projections(model)
    device = projections[0].weight.device
    scores = torch.zeros(len(projections), projections[0].units, dtype=torch.float32, device=device)
    copies = _copies(len(projections), m)
    per_pass = copies_per_pass or len(copies)
    chunks = [copies[i : i + per_pass] for i in range(0, len(copies), per_pass)]

    scales: dict[int, torch.Tensor | None] = {}
    rows_per_copy = [0]
    where: list[torch.Tensor | None] = [None]  # (rows, seq) bool: the positions scaled; None: all
    handles = [p.module.register_forward_pre_hook(_scale_input(p, scales, rows_per_copy, where)) for p in projections]
    try:
        with _frozen(model), torch.enable_grad():
            # Similar lengths share a batch, so that few padded rows ride through every copy.
            ordered = sorted(examples, key=lambda e: len(e.input) + len(e.output))
            rank, size = distributed.world()  # across processes: batch i on process i % size
            for start in range(rank * batch_size, len(ordered), batch_size * size):
                batch = collate(tokenizer, ordered[start : start + batch_size], max_length)
                ids, attention = batch.input_ids.to(device), batch.attention_mask.to(device)
                answer = (batch.labels != IGNORE).to(device)  # the tokens the GradDiff loss sees
                rows_per_copy[0] = ids.shape[0]
                where[0] = predicting_positions(answer) if positions == "predicting" else None
                for chunk in chunks:
                    _attribute_pass(model, projections, chunk, scales, scores, m, ids, attention, answer)
    finally:
        for handle in handles:
            handle.remove()
        scales.clear()
    return distributed.all_reduce_sum_(scores)  # the sum over every process's batches


def _check_arguments(m, batch_size: int, copies_per_pass, positions: str, examples: Sequence) -> None:
    if positions not in POSITIONS:
        raise UserError(f"attribution positions {positions!r} is unknown{did_you_mean(str(positions), POSITIONS)}")
    if not isinstance(m, int) or m < 1:
        raise UserError(f"attribution steps m={m!r}; expected an integer >= 1 (the paper uses 3 or 5)")
    if batch_size < 1 or (copies_per_pass is not None and copies_per_pass < 1):
        raise UserError(f"batch_size={batch_size}, copies_per_pass={copies_per_pass}; expected >= 1")
    if len(examples) == 0:
        raise UserError("attribution needs at least one example; the set given is empty")


def _scale_input(projection: DownProjection, scales: dict, rows_per_copy: list[int], where: list):
    """A forward pre-hook on `projection` that scales its input by `scales[layer]`, one scale row
    per copy of the batch (`rows_per_copy[0]` rows each), at the positions `where[0]` (None: all)."""
    def hook(module, args):
        scale = scales.get(projection.layer)
        if scale is None:
            return None
        (x,) = args  # (copies * batch, seq, d_ff)
        copies_here = scale.shape[0]
        shaped = x.view(copies_here, rows_per_copy[0], *x.shape[1:])  # (copies, rows, seq, d_ff)
        factor = scale[:, None, None, :].to(x.dtype)  # (copies, 1, 1, d_ff)
        if where[0] is not None:  # 1 + (s - 1) * [chosen]: unscaled elsewhere, same gradient at chosen
            factor = 1 + (factor - 1) * where[0][None, :, :, None].to(x.dtype)
        return ((shaped * factor).view_as(x),)
    return hook


@contextmanager
def _frozen(model):
    """`model` in eval mode with no parameter requiring a gradient; both restored after."""
    was_training = model.training
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for parameter, _ in frozen:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, requires_grad in frozen:
            parameter.requires_grad_(requires_grad)
        model.train(was_training)


def _attribute_pass(model, projections, chunk, scales, scores, m, ids, attention, answer) -> None:
    """One forward + backward over `ids` repeated once per copy in `chunk`; adds into scores."""
    targeted = {}  # layer -> indices of the copies in this chunk that contribute to it
    for index, (layer, _) in enumerate(chunk):
        for target_layer in range(len(projections)) if layer is None else [layer]:
            targeted.setdefault(target_layer, []).append(index)
    for projection in projections:
        layer = projection.layer
        if layer not in targeted:
            scales[layer] = None
            continue
        alphas = [alpha if copy_layer == layer else 1.0 for copy_layer, alpha in chunk]
        scale = torch.tensor(alphas, device=ids.device)[:, None].expand(-1, projection.units)
        scales[layer] = scale.clone().requires_grad_(True)  # (copies, d_ff), a leaf
    copies = len(chunk)
    target = answer_log_prob(model, ids.repeat(copies, 1), attention.repeat(copies, 1), answer.repeat(copies, 1))
    layers = sorted(targeted)
    grads = torch.autograd.grad(target, [scales[layer] for layer in layers])
    for layer, grad in zip(layers, grads):
        # grad[c, j] = sum over rows and positions of a_j * d target / d(scaled a_j), copy c
        scores[layer] += grad[targeted[layer]].sum(dim=0).float() / m
