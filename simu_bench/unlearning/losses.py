"""Losses shared by the unlearning methods.

- `answer_nll`: CE, the mean next-token cross-entropy over the answer tokens of a batch.
- `sequence_log_prob`: log pi(y|x) per example, the summed answer-token log-probability, with
  gradients (NPO-style losses compare it with a reference model); `sequence_nll` the mean
  per answer token.
- `graddiff`: GradDiff = -CE(forget) + gamma * CE(retain).
- `sampled_label_loss`: CE against labels sampled from the model's own logits, whose gradient
  feeds Sophia-G's Gauss-Newton-Bartlett curvature estimate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simu_bench.data.pairing import IGNORE, Encoded, PairedBatch


def _logits(model: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    return out.logits[:, :-1]  # (batch, seq - 1, vocab): position t predicts token t + 1


def answer_nll(model: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    """Mean next-token cross-entropy over all answer tokens of the batch (a scalar)."""
    logits = _logits(model, batch)
    targets = batch.labels[:, 1:]  # (batch, seq - 1)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE)


def _token_nll(model: torch.nn.Module, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token NLL (batch, seq - 1), 0 off the answer; answer-token counts (batch,))."""
    logits = _logits(model, batch).float()
    targets = batch.labels[:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return nll, (targets != IGNORE).sum(dim=1)


def sequence_log_prob(model: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    """log pi(y|x) per example: the summed log-probability of its answer tokens, shape (batch,)."""
    nll, _ = _token_nll(model, batch)
    return -nll.sum(dim=1)


def sequence_nll(model: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    """Mean answer-token NLL per example, shape (batch,), with gradients."""
    nll, counts = _token_nll(model, batch)
    return nll.sum(dim=1) / counts.clamp(min=1)


@torch.no_grad()
def example_nll(model: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    """`sequence_nll` without gradients (for measuring, not training)."""
    return sequence_nll(model, batch)


def graddiff(model: torch.nn.Module, batch: PairedBatch, gamma: float) -> torch.Tensor:
    """GradDiff: -CE(forget) + gamma * CE(retain); minimising it ascends on the forget set."""
    return -answer_nll(model, batch.forget) + gamma * answer_nll(model, batch.retain)


def sampled_label_loss(model: torch.nn.Module, batch: Encoded, generator: torch.Generator) -> torch.Tensor:
    """CE of the answer positions against labels drawn from the model's own distribution."""
    logits = _logits(model, batch)  # (batch, seq - 1, vocab)
    keep = batch.labels[:, 1:] != IGNORE  # (batch, seq - 1)
    chosen = logits[keep].float()  # (answer tokens, vocab)
    with torch.no_grad():
        probs = torch.softmax(chosen, dim=-1)
        sampled = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(chosen.device)
    return F.cross_entropy(chosen, sampled)
