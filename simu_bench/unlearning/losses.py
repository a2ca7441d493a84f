"""Losses shared by the unlearning methods.

- `answer_nll`: CE, the mean next-token cross-entropy over the answer tokens of a batch.
- `joint_nll`: the per-token answer NLL of several batches (forget and retain) from one padded
  forward, so that one backward serves a loss that sums terms over them; each batch's `TokenNll`
  keeps its own means (CE over that batch's answer tokens, not over the joint batch).
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

from dataclasses import dataclass

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


@dataclass
class TokenNll:
    """One batch's answer-token NLLs, ``nll`` (batch, seq - 1) with 0 off the answer, and
    ``counts`` (batch,) its answer tokens; ``answer_tokens`` as on `Encoded` (a process's slice)."""

    nll: torch.Tensor
    counts: torch.Tensor
    answer_tokens: int | None = None

    def mean(self) -> torch.Tensor:
        """CE: the mean over this batch's answer tokens (`answer_nll`'s value)."""
        total = self.answer_tokens if self.answer_tokens is not None else int(self.counts.sum())
        return self.nll.sum() / max(total, 1)

    def log_prob(self) -> torch.Tensor:
        """log pi(y|x) per example (`sequence_log_prob`), shape (batch,)."""
        return -self.nll.sum(dim=1)

    def per_example(self) -> torch.Tensor:
        """Mean answer-token NLL per example (`sequence_nll`), shape (batch,)."""
        return self.nll.sum(dim=1) / self.counts.clamp(min=1)


def _widen(batch: Encoded, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch``'s tensors right-padded to ``width`` columns (masked out, labels ignored)."""
    extra = width - batch.input_ids.size(1)
    return (F.pad(batch.input_ids, (0, extra), value=0), F.pad(batch.attention_mask, (0, extra), value=0),
            F.pad(batch.labels, (0, extra), value=IGNORE))


def joint_nll(model: torch.nn.Module, *batches: Encoded) -> list[TokenNll]:
    """`TokenNll` of each of ``batches`` from one forward over their rows stacked (right-padded
    to the longest): one forward and one backward instead of one per batch. Right padding
    leaves what the real tokens see unchanged, so each value equals its separate pass's to float
    rounding (the matrices have another shape)."""
    width = max(b.input_ids.size(1) for b in batches)
    ids, mask, labels = (torch.cat(parts) for parts in zip(*(_widen(b, width) for b in batches)))
    nll, counts = _token_nll(model, Encoded(ids, mask, labels))
    out, start = [], 0
    for b in batches:
        rows = slice(start, start + b.input_ids.size(0))
        out.append(TokenNll(nll[rows, : b.input_ids.size(1) - 1], counts[rows], b.answer_tokens))
        start = rows.stop
    return out


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
    """GradDiff: -CE(forget) + gamma * CE(retain); minimising it ascends on the forget set.

    One forward over forget and retain together (`joint_nll`); each CE is its own split's mean.
    """
    forget, retain = joint_nll(model, batch.forget, batch.retain)
    return -forget.mean() + gamma * retain.mean()


@torch.no_grad()
def reference_log_prob(reference: torch.nn.Module, batch: Encoded) -> torch.Tensor:
    """log pi_ref(y|x) per example under the frozen ``reference`` model, shape (batch,), no gradients."""
    return sequence_log_prob(reference, batch)


def npo(model: torch.nn.Module, reference: torch.nn.Module, forget: Encoded, beta: float) -> torch.Tensor:
    """NPO's forget term: -(2/beta) * mean over examples of log sigmoid(-beta * (log pi(y|x) - log pi_ref(y|x))).

    At the start (pi = pi_ref) it is (2/beta) * log 2 and its gradient is that of gradient
    ascent on the summed answer log-prob; it flattens as the forget answers become unlikely.
    """
    return npo_of(sequence_log_prob(model, forget), reference_log_prob(reference, forget), beta)


def npo_of(log_prob: torch.Tensor, reference: torch.Tensor, beta: float) -> torch.Tensor:
    """`npo` from log pi(y|x) and log pi_ref(y|x) per example (e.g. `TokenNll.log_prob` of a joint pass)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (log_prob - reference)).mean()


def simnpo(model: torch.nn.Module, forget: Encoded, beta: float, delta: float) -> torch.Tensor:
    """SimNPO's forget term: -(2/beta) * mean of log sigmoid(beta * (NLL - delta)), NLL the mean
    answer-token NLL of each example (-(1/|y|) log pi(y|x)); no reference model.

    The margin sits inside the temperature, as in the authors' code (OPTML-Group/Unlearn-Simple,
    open-unlearning's `simnpo.py`: ``beta * (nll / |y| - delta)``); the paper's formula
    log sigmoid(-(beta/|y|) log pi - gamma) puts it outside. The two agree at delta = 0, the
    published TOFU setting.
    """
    return simnpo_of(sequence_nll(model, forget), beta, delta)


def simnpo_of(per_example_nll: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """`simnpo` from the mean answer-token NLL per example (e.g. `TokenNll.per_example` of a joint pass)."""
    return -(2.0 / beta) * F.logsigmoid(beta * (per_example_nll - delta)).mean()


def dpo(model: torch.nn.Module, reference: torch.nn.Module, preferred: Encoded, rejected: Encoded,
        beta: float) -> torch.Tensor:
    """DPO with open-unlearning's scale: -(2/beta) * mean of log sigmoid(beta * (r_w - r_l)),
    r = log pi(y|x) - log pi_ref(y|x) of the preferred (w) and the rejected (l) answer of each prompt."""
    win = sequence_log_prob(model, preferred) - reference_log_prob(reference, preferred)
    lose = sequence_log_prob(model, rejected) - reference_log_prob(reference, rejected)
    return dpo_of(win, lose, beta)


def dpo_of(win: torch.Tensor, lose: torch.Tensor, beta: float) -> torch.Tensor:
    """`dpo` from the log-ratios log pi - log pi_ref of the preferred (``win``) and rejected answers."""
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
