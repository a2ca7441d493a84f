"""Memory per device of an unlearning run, on paper: weights, gradients, optimizer state, activations.

    python -m simu_bench.unlearning.memory --model olmo-7b --method so_graddiff --world-size 8 --dtype bfloat16

The model is built from its config on PyTorch's meta device (no weights, no download), so the
parameter counts are exact, and the trained set follows each method's rule: everything for
FO/SO-GradDiff; the attention projections and every layer's down projection for SIMU (its
unit mask works on whole tensors: gradients and SophiaG state cover the full down projection,
plus the masked step's copies of that weight, its momentum and curvature).

Per device, with FSDP2 over N processes (`simu_bench.unlearning.distributed`):
- weights: all parameters / N, plus two decoder layers gathered whole (the one running and the
  next, prefetched);
- gradients: trained parameters / N (in the parameters' dtype);
- optimizer state: two tensors per trained parameter / N (AdamW: exp_avg, exp_avg_sq; SophiaG:
  momentum, curvature), in ``state_dtype``; SophiaG's step adds two temporaries of that size,
  SIMU's masked step copies of the down projections;
- activations of one micro-batch slice (forget and retain sequences alive together, as the
  GradDiff loss keeps both graphs until its backward): per token and layer the inputs each
  operation saves, about 13 d + 4 d_ff values (d the width, d_ff the MLP width), plus the
  logits in the model's dtype and their float32 log-softmax, and in the backward pass the
  float32 gradient of one set's logits; with gradient checkpointing only each layer's input
  (d values) per token and one layer's full activations.
`measure_peak` checks the figure on the CPU for a small config: `tests/unit/test_memory.py`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from transformers import OlmoConfig, OlmoForCausalLM

from simu_bench.data.lume import Example, LumeData
from simu_bench.unlearning import loop, registry

GIB = 2**30
DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2}
# OLMo-1B and OLMo-7B (allenai/OLMo-1B-hf, allenai/OLMo-7B-0724-hf): the LUME targets' shapes.
SHAPES = {
    "olmo-1b": dict(vocab_size=50304, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                    num_attention_heads=16, tie_word_embeddings=True),
    "olmo-7b": dict(vocab_size=50304, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, tie_word_embeddings=False),
}
METHODS = ("fo_graddiff", "so_graddiff", "simu")


def meta_model(shape: dict):
    """An `OlmoForCausalLM` of ``shape`` on the meta device: parameters without storage."""
    with torch.device("meta"):
        return OlmoForCausalLM(OlmoConfig(**shape))


def trained_parameters(model, method: str) -> list[torch.nn.Parameter]:
    """The parameters ``method`` trains (SIMU: attention projections and down projections)."""
    if method != "simu":
        return list(model.parameters())
    chosen = []
    for layer in model.model.layers:
        chosen += list(layer.self_attn.parameters()) + [layer.mlp.down_proj.weight]
    return chosen


@dataclass
class Estimate:
    """Bytes per device, by kind."""

    weights: int
    gradients: int
    optimizer: int  # the state kept between steps
    activations: int  # saved for the backward pass, and the gradient of the logits
    step: int = 0  # temporaries of the optimizer step (SophiaG's denominator and ratio; SIMU's masked copies)
    attribution: int = 0  # SIMU's neuron attribution, before training: weights + this at its peak

    @property
    def total(self) -> int:
        """The peak, counting the step's temporaries on top of the activations: the memory the
        backward pass frees is not always back with the system when the step allocates (measured)."""
        training = self.gradients + self.optimizer + self.activations + self.step
        return self.weights + max(training, self.attribution)

    def to_dict(self) -> dict:
        return {**{k: round(v / GIB, 2) for k, v in self.__dict__.items()}, "total": round(self.total / GIB, 2)}


def estimate(model, method: str, *, world_size: int = 1, dtype_bytes: int = 4, state_bytes: int | None = None,
             batch_size: int = 1, seq_len: int = 512, checkpointing: bool = False, attribution_rows: int | None = None,
             ) -> Estimate:
    """Bytes per device of one run of ``method`` on ``model`` (see the module docstring).

    ``batch_size`` is the micro-batch of the whole run (split across ``world_size``), each row
    ``seq_len`` tokens for the forget and for the retain example. ``attribution_rows``: rows of
    one SIMU attribution pass, ``options.attribution_batch_size`` x copies per pass (default:
    8 x all (m - 1) L + 1 copies with m = 3, simu.yaml's settings).
    """
    state_bytes = dtype_bytes if state_bytes is None else state_bytes
    config = model.config
    d, d_ff, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    every = sum(p.numel() for p in model.parameters())
    trained = trained_parameters(model, method)
    count = sum(p.numel() for p in trained)
    gathered = 0 if world_size == 1 else 2 * sum(p.numel() for p in model.model.layers[0].parameters())
    weights = (every // world_size + gathered) * dtype_bytes
    gradients = count // world_size * dtype_bytes
    optimizer = 2 * count // world_size * state_bytes
    step = 0
    if method != "fo_graddiff":  # SophiaG's step holds two temporaries of its state's size (denominator, ratio)
        step += 2 * count // world_size * state_bytes
    if method == "simu":  # the masked step's copies of each down projection, its momentum and curvature
        down = sum(layer.mlp.down_proj.weight.numel() for layer in model.model.layers)
        step += down // world_size * (dtype_bytes + 2 * state_bytes)
    tokens = 2 * -(-batch_size // world_size) * seq_len  # forget + retain rows of this device's slice
    per_layer = (13 * d + 4 * d_ff) * dtype_bytes
    kept = (layers * d * dtype_bytes + per_layer) if checkpointing else layers * per_layer
    # logits, their float32 log-softmax, and in the backward pass the float32 gradient of one set's logits
    activations = tokens * (kept + vocab * (dtype_bytes + 4)) + tokens // 2 * vocab * 4
    attribution = 0
    if method == "simu":  # no gradients of weights, no optimizer: activations of every copy, logits on answers
        rows = attribution_rows if attribution_rows is not None else 8 * (2 * layers + 1)
        attribution = rows * seq_len * (layers * per_layer + vocab * (dtype_bytes + 8) // 2)
    return Estimate(weights, gradients, optimizer, activations, step, attribution)


def measure_peak(shape: dict, method: str, *, batch_size: int = 2, seq_len: int = 64,
                 steps: int = 2) -> tuple[int, int]:
    """(estimated, measured) bytes of ``steps`` unlearning steps on the CPU, in this process.

    Measured: the growth of the process's peak resident memory (`ru_maxrss`) over a baseline
    taken before the model is built; run it in a fresh process, where nothing else allocates.
    """
    import resource  # Unix only: the rest of this module works anywhere

    class Ids:  # a tokenizer of fixed-length rows of token ids, enough for the unlearning loop
        eos_token_id, pad_token_id = 1, 0

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [2 + (ord(c) % 200) for c in text]}

    prompt = "p" * (seq_len // 2)
    rows = lambda split: tuple(  # noqa: E731
        Example(f"{split}{i}sc1", prompt, "a" * (seq_len // 2 - 2), "Task1", split, "regurgitation")
        for i in range(batch_size * steps)
    )
    data = LumeData(forget=rows("forget"), retain=rows("retain"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.manual_seed(0)
    model = OlmoForCausalLM(OlmoConfig(**shape))
    config = [f"train.batch_size={batch_size}", "train.grad_accum_steps=1", "train.epochs=1",
              f"train.max_length={seq_len}"]
    loop.run(registry.create(method, config), model, Ids(), data, seed=0, progress=False)
    measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return estimate(meta_model(shape), method, batch_size=batch_size, seq_len=seq_len).total, measured


def table(models=("olmo-1b", "olmo-7b"), worlds=(1, 2, 8), dtype="bfloat16", state_dtype="float32",
          batch_size: int = 8, seq_len: int = 512, checkpointing: bool = True, budget_gib: float = 80) -> str:
    """A markdown table: GiB per device and whether it fits in ``budget_gib`` (a 80 GB GPU).

    SIMU's attribution is counted with one copy per pass (``options.copies_per_pass=1``, 8 rows).
    """
    lines = ["| model | method | " + " | ".join(f"{n} x {budget_gib:g} GB" for n in worlds) + " |",
             "|---|---|" + "---|" * len(worlds)]
    for name in models:
        model = meta_model(SHAPES[name])
        for method in METHODS:
            cells = []
            for world in worlds:
                total = estimate(model, method, world_size=world, dtype_bytes=DTYPES[dtype],
                                 state_bytes=DTYPES[state_dtype], batch_size=batch_size, seq_len=seq_len,
                                 checkpointing=checkpointing, attribution_rows=8).total / GIB
                cells.append(f"{total:.0f} GiB {'fits' if total < budget_gib * 0.93 else 'no'}")
            lines.append(f"| {name} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simu_bench.unlearning.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(SHAPES), default="olmo-1b")
    parser.add_argument("--method", choices=METHODS, default="so_graddiff")
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--state-dtype", choices=sorted(DTYPES), default=None)
    parser.add_argument("--batch-size", type=int, default=8, help="micro-batch of the whole run")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--table", action="store_true", help="the table of docs/scaling.md instead")
    args = parser.parse_args(argv)
    if args.table:
        print(table())
        return 0
    result = estimate(meta_model(SHAPES[args.model]), args.method, world_size=args.world_size,
                      dtype_bytes=DTYPES[args.dtype], state_bytes=DTYPES[args.state_dtype or args.dtype],
                      batch_size=args.batch_size, seq_len=args.seq_len, checkpointing=args.gradient_checkpointing)
    print({"GiB per device": result.to_dict(), "model": args.model, "method": args.method,
           "world_size": args.world_size, "dtype": args.dtype})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
