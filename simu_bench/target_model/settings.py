"""The embedded target's settings: its size and training recipe (`TargetConfig`), and how much of
a real LUME folder `prepare --data DIR` trains on. Plain values, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass

# Real LUME (`prepare --data DIR`): documents per task and split to train on. Its documents are
# long (sc rows of ~250 tokens), and 5 per task and split still memorise in minutes on a CPU.
DEFAULT_DOCS_PER_TASK = 5


@dataclass(frozen=True)
class TargetConfig:
    """Size and training recipe of the tiny target. The defaults are the embedded benchmark's."""

    vocab_size: int = 2048  # upper bound; a small corpus yields fewer BPE merges
    # Six layers, so that selective methods have layers to choose among (SIMU's premise: a few
    # MLP units across many layers carry the forget set), kept narrow so that a run costs about
    # what the earlier two-layer, 128-wide target cost.
    hidden_size: int = 64
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 256  # the MLP units SIMU attributes (the inputs of down_proj)
    max_position_embeddings: int = 2048  # rotary, so long contexts cost no parameters
    max_epochs: int = 80
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0  # memorising is the goal; decay only slows it
    warmup_steps: int = 20
    stop_loss: float = 0.05  # stop once every row is memorised and the answer-token loss is below this
