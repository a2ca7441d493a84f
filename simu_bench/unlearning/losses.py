"""Losses shared by the unlearning methods.

- `answer_nll`: CE, the mean next-token cross-entropy over the answer tokens of a batch.
- `sequence_log_prob`: log pi(y|x) per example, the summed answer-token log-probability, with
  gradients (NPO-style losses compare it with a reference model); `sequence_nll` the mean
  per answer token.
- `graddiff`: GradDiff = -CE(forget) + gamma * CE(retain).
- `npo`, `simnpo`, `dpo`: the preference-style forget terms (NPO, SimNPO, DPO) over per-sequence
  log-probabilities; `reference_log_prob` is log pi_ref(y|x) of the frozen model, without gradients.
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
    """Mean next-token cross-entropy over all answer tokens of the batch (a scalar).

    On one process's slice of a micro-batch split across processes (``batch.answer_tokens``
    set): the sum over the slice divided by the whole micro-batch's answer-token count, so that
    the processes' values add up to the mean over the micro-batch.
    """
    logits = _logits(model, batch)
    targets = batch.labels[:, 1:]  # (batch, seq - 1)
    if batch.answer_tokens is not None:
        summed = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                 ignore_index=IGNORE, reduction="sum")
        return summed / max(batch.answer_tokens, 1)
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


@torch.no_grad()
def reference_log_prob(reference: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    """log pi_ref(y|x) per example under the frozen ``reference`` model, shape (batch,), no gradients."""
    return sequence_log_prob(reference, batch)


def npo(model: torch.nn.Module, reference: torch.nn.Module, forget: Encoded, beta: float) -> torch.Tensor:
    """NPO's forget term: -(2/beta) * mean over examples of log sigmoid(-beta * (log pi(y|x) - log pi_ref(y|x))).

    At the start (pi = pi_ref) it is (2/beta) * log 2 and its gradient is that of gradient
    ascent on the summed answer log-prob; it flattens as the forget answers become unlikely.
    """
    log_ratio = sequence_log_prob(model, forget) - reference_log_prob(reference, forget)  # (batch,)
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def simnpo(model: torch.nn.Module, forget: Encoded, beta: float, delta: float) -> torch.Tensor:
    """SimNPO's forget term: -(2/beta) * mean of log sigmoid(beta * (NLL - delta)), NLL the mean
    answer-token NLL of each example (-(1/|y|) log pi(y|x)); no reference model.

    The margin sits inside the temperature, as in the authors' code (OPTML-Group/Unlearn-Simple,
    open-unlearning's `simnpo.py`: ``beta * (nll / |y| - delta)``); the paper's formula
    log sigmoid(-(beta/|y|) log pi - gamma) puts it outside. The two agree at delta = 0, the
    published TOFU setting.
    """
    return -(2.0 / beta) * F.logsigmoid(beta * (sequence_nll(model, forget) - delta)).mean()


def dpo(model: torch.nn.Module, reference: torch.nn.Module, preferred: Encoded, rejected: Encoded,
        beta: float) -> torch.Tensor:
    """DPO with open-unlearning's scale: -(2/beta) * mean of log sigmoid(beta * (r_w - r_l)),
    r = log pi(y|x) - log pi_ref(y|x) of the preferred (w) and the rejected (l) answer of each prompt."""
    win = sequence_log_prob(model, preferred) - reference_log_prob(reference, preferred)
    lose = sequence_log_prob(model, rejected) - reference_log_prob(reference, rejected)
    return -(2.0 / beta) * F.logsigmoid(beta * (win - lose)).mean()


def sampled_label_loss(model: torch.nn.Module, batch: Encoded, generator: torch.Generator) -> torch.Tensor:
    """CE of the answer positions against labels drawn from the model's own distribution."""
    logits = _logits(model, batch)  # (batch, seq - 1, vocab)
    keep = batch.labels[:, 1:] != IGNORE  # (batch, seq - 1)
    chosen = logits[keep].float()  # (answer tokens, vocab)
    with torch.no_grad():
        probs = torch.softmax(chosen, dim=-1)
        sampled = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(chosen.device)
    return F.cross_entropy(chosen, sampled)
