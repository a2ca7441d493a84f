"""Forget/retain pairing and tokenisation for unlearning.

Each forget example is paired with a random retain example; both are tokenised the way the
target was trained, ``input + " " + output + eos``, with the prompt tokens masked out of the
labels (-100) so that losses cover the answer (and its eos) only. Batches are right-padded.
All randomness comes from one seeded ``torch.Generator`` owned by the caller. A method without a
retain term (gradient ascent) may run on an empty retain set: its batches then have
``retain=None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from simu_bench.data.lume import Example
from simu_bench.errors import UserError

IGNORE = -100  # label of tokens that no loss sees (prompt, padding)


@dataclass
class Encoded:
    """A right-padded batch: all tensors (batch, seq).

    ``answer_tokens`` is set on one process's slice of a micro-batch split across processes:
    the answer-token count of the whole micro-batch, which `answer_nll` divides by instead of
    taking the mean over the slice (`simu_bench.unlearning.distributed`). None in one process.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    answer_tokens: int | None = None

    def to(self, device) -> "Encoded":
        moved = (t.to(device) for t in (self.input_ids, self.attention_mask, self.labels))
        return Encoded(*moved, answer_tokens=self.answer_tokens)


@dataclass
class PairedBatch:
    """``forget[i]`` is paired with ``retain[i]``; the examples are kept for hooks."""

    forget: Encoded
    retain: Encoded | None  # None when the run has no retain set (methods without a retain term)
    forget_examples: tuple[Example, ...] = ()
    retain_examples: tuple[Example, ...] = ()

    def parts(self) -> tuple[Encoded, ...]:
        return (self.forget,) if self.retain is None else (self.forget, self.retain)


def encode_example(tokenizer, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one example; labels are -100 on the prompt.

    The prompt is tokenised with the tokenizer's defaults (as at generation time, so a BOS is
    kept where the tokenizer adds one), the answer ``" " + output`` without special tokens,
    then eos: the same ids the embedded target was trained on (`simu_bench.target_model.finetune`).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos token; unlearning needs one to end answers")
    prompt = list(tokenizer(example.input)["input_ids"])
    if len(prompt) > 1 and prompt[-1] == eos:  # tokenizers that append eos to every text
        prompt.pop()
    answer = tokenizer(" " + example.output, add_special_tokens=False)["input_ids"]
    ids = (prompt + list(answer) + [eos])[:max_length]
    labels = ([IGNORE] * len(prompt) + list(answer) + [eos])[:max_length]
    return ids, labels


def pad_right(rows: Sequence[Sequence], value, dtype=torch.long) -> torch.Tensor:
    """(len(rows), longest row) tensor: row i is ``rows[i]`` followed by ``value``.

    The one padding path of the project: unlearning batches, the target's fine-tuning and the
    MIA's document batches all pad with it (right padding: with a causal mask the padding
    never changes what the real tokens see).
    """
    width = max((len(row) for row in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(list(row), dtype=dtype)
    return out


def attention_mask(rows: Sequence[Sequence]) -> torch.Tensor:
    """(len(rows), longest row) mask: 1 on each row's tokens, 0 on the padding `pad_right` adds."""
    return pad_right([[1] * len(row) for row in rows], 0)


def collate(tokenizer, examples: Sequence[Example], max_length: int) -> Encoded:
    """Tokenise and right-pad ``examples`` into one `Encoded` batch."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [encode_example(tokenizer, e, max_length) for e in examples]
    ids = [ids for ids, _ in rows]
    return Encoded(pad_right(ids, pad), attention_mask(ids), pad_right([labels for _, labels in rows], IGNORE))


def pair(
    forget: Sequence[Example], retain: Sequence[Example], generator: torch.Generator, *, need_retain: bool = True
) -> list[tuple[Example, Example | None]]:
    """Shuffle the forget examples and give each a random retain partner.

    Partners are drawn without replacement while the retain set lasts (a fresh permutation
    every ``len(retain)`` pairs), so a 1:1 forget/retain split uses every retain example once.
    With ``need_retain=False`` an empty retain set is allowed and every partner is None.
    """
    if not forget or (need_retain and not retain):
        raise UserError(
            f"unlearning needs forget and retain examples; got {len(forget)} forget and "
            f"{len(retain)} retain; check the data directory"
        )
    order = torch.randperm(len(forget), generator=generator).tolist()
    if not retain:
        return [(forget[i], None) for i in order]
    rounds = math.ceil(len(forget) / len(retain))
    partners = torch.cat([torch.randperm(len(retain), generator=generator) for _ in range(rounds)]).tolist()
    return [(forget[i], retain[partners[k]]) for k, i in enumerate(order)]


def batches(
    tokenizer,
    forget: Sequence[Example],
    retain: Sequence[Example],
    *,
    batch_size: int,
    max_length: int,
    generator: torch.Generator,
    need_retain: bool = True,
) -> Iterator[PairedBatch]:
    """One epoch of paired batches (the last one may be smaller); see `pair` for ``need_retain``."""
    pairs = pair(forget, retain, generator, need_retain=need_retain)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        f = tuple(p[0] for p in chunk)
        r = tuple(p[1] for p in chunk if p[1] is not None)
        yield PairedBatch(collate(tokenizer, f, max_length), collate(tokenizer, r, max_length) if r else None, f, r)
