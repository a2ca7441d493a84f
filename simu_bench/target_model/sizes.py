"""Named target sizes: `simu-bench prepare --size NAME` (and `run`/`tune --size NAME`).

Each name fixes the shape of the embedded OLMo-architecture target; everything else about the
recipe (data, tokenizer, fine-tuning until memorised, seed) is the default's, and each size is
its own cached target (the cache key holds the shape), built with the same pinned kernels and
one thread.

| name   | layers | hidden | heads x head size | MLP units per layer |
|--------|--------|--------|-------------------|---------------------|
| tiny   | 6      | 64     | 4 x 16            | 256                 |
| small  | 6      | 128    | 4 x 32            | 512                 |
| medium | 6      | 256    | 8 x 32            | 1024                |

`tiny` is the embedded default, unchanged, so `results/` stays valid; its head size of 16 is
below the 32 that vLLM's CPU backend accepts, so `--backend vllm` on CPU needs `small` or wider.
The wider sizes double and quadruple the width (hidden and MLP units) at the same depth, so that
a ladder changes one thing: how many units share the work of holding the facts.
"""

from __future__ import annotations

from dataclasses import replace

from simu_bench.errors import UserError, did_you_mean
from simu_bench.target_model.settings import TargetConfig

DEFAULT_SIZE = "tiny"
SIZES: dict[str, TargetConfig] = {
    "tiny": TargetConfig(),
    "small": replace(TargetConfig(), hidden_size=128, num_heads=4, intermediate_size=512),
    "medium": replace(TargetConfig(), hidden_size=256, num_heads=8, intermediate_size=1024),
}
# The share of training rows a target must have memorised (every answer token the top choice
# with the gold answer fed in) before methods may run on it: unlearning a target that never
# learned its facts measures nothing.
MIN_MEMORISED = 0.95


def target_config(name: str) -> TargetConfig:
    """The `TargetConfig` of size `name`; `UserError` with suggestions for an unknown name."""
    if name not in SIZES:
        raise UserError(f"--size {name!r} is not a target size{did_you_mean(name, list(SIZES))}")
    return SIZES[name]


def describe(name: str) -> str:
    """One line: the shape of size `name`."""
    config = SIZES[name]
    return (f"{config.num_layers} layers, hidden {config.hidden_size}, {config.num_heads} heads of "
            f"{config.hidden_size // config.num_heads}, {config.intermediate_size} MLP units per layer")


def check_memorised(name: str, info: dict) -> None:
    """Refuse a target whose build did not memorise its rows (`info`: its manifest.json).

    Raises:
        UserError: with the measured share of rows memorised and the final answer-token loss.
    """
    memorised = info.get("memorised_rows", 0.0)
    if memorised < MIN_MEMORISED:
        raise UserError(
            f"target size {name!r} did not memorise its training rows: {memorised:.1%} memorised, final "
            f"answer-token loss {info.get('final_answer_loss', float('nan')):.3f} after {info.get('epochs', 0)} "
            f"epochs (expected >= {MIN_MEMORISED:.0%}); methods cannot be compared on it: use another size"
        )
