"""Membership inference (MIA): LUME's loss attack and a suite of stronger ones on the same documents.

The official script scores each document alone: `model(ids, labels=ids).loss`, the mean
cross-entropy of tokens 2..n given their prefix, with the tokenizer's defaults (special tokens
as the tokenizer adds them, no truncation). `document_nll` computes the same number for many
documents at once: documents sorted by length, right-padded, padding masked out of both the
attention and the mean, so a padded batch gives the same NLL as one document at a time (up to
float rounding; `tests/test_mia.py` checks it).

The suite (`ATTACKS`) reads every attack off the same forward pass. Each attack gives a document
a statistic where lower means "looks like a member", and its AUC and score are computed exactly as
the official ones (`scoring.mia_auc` with score = -statistic, `scoring.mia_score`):

- `loss`: the mean token NLL (the official attack; its AUC is the official `mia` AUC);
- `zlib`: NLL / len(zlib.compress(text as UTF-8)), the NLL relative to how compressible the text
  is (Carlini et al., "Extracting Training Data from Large Language Models", arXiv 2012.07805);
- `min_k`: minus the mean of the lowest k% token log-probs (k = 20%; Shi et al., Min-K% Prob,
  arXiv 2310.16789);
- `min_k_plus_plus`: the same over z_t = (log p(x_t) - mu_t) / sigma_t, mu_t and sigma_t the mean
  and standard deviation of log p(v) under p(v) over the vocabulary at position t (Zhang et al.,
  Min-K%++, arXiv 2404.02936);
- `reference`: NLL(reference model) - NLL(model), the reference being the target before
  unlearning; only when its NLLs are given. Carlini et al. 2021's reference-model attack
  calibrates by a model that never saw the members (NLL(model) - NLL(ref), lower for members;
  open-unlearning uses the retain model). Here the reference saw every member and unlearning
  raises the members' NLL more than the non-members', so the statistic is minus that rise:
  lower means "looks like a member" and AUC > 0.5 means the unlearned documents stand out,
  as for every other attack. A model that did not change gives 0 for every document: AUC 0.5.

"The lowest k%" of n token values are the floor(k * n) smallest, at least one. The AUC and MIA
score live in `simu_bench.evaluation.scoring`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from simu_bench.data.lume import Document
from simu_bench.data.pairing import attention_mask, pad_right
from simu_bench.evaluation import scoring

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "reference")
MIN_K = 0.2  # the fraction of lowest token values that Min-K% and Min-K%++ average


def lowest_mean(values: Sequence[float], k: float = MIN_K) -> float:
    """Mean of the floor(k * n) smallest of n values (at least one); NaN when there are none."""
    if not values:
        return math.nan
    count = max(1, int(len(values) * k))
    return math.fsum(sorted(values)[:count]) / count


def zlib_statistic(nll: float, text: str) -> float:
    """The zlib attack's statistic: NLL divided by the zlib-compressed length of the text in bytes."""
    return nll / len(zlib.compress(text.encode("utf-8")))


def token_statistics(logits, targets, k: float = MIN_K) -> tuple[float, float]:
    """(min_k, min_k_plus_plus) statistics of one document from its next-token logits.

    Args:
        logits: (n, vocab) float logits; row t predicts `targets[t]`.
        targets: (n,) the token ids that followed.

    Both are minus a `lowest_mean`, so lower means "looks like a member", like the NLL.
    """
    log_probs = torch.log_softmax(logits, dim=-1)  # (n, vocab)
    probs = log_probs.exp()
    token = log_probs.gather(1, targets[:, None]).squeeze(1)  # (n,) log p(x_t)
    # E_p[log p] and its spread; 0 * log 0 counts as 0 where a logit is -inf.
    weighted = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs))
    mu = weighted.sum(dim=-1)  # (n,)
    spread = torch.where(probs > 0, probs * (log_probs - mu[:, None]) ** 2, torch.zeros_like(probs))
    sigma = spread.sum(dim=-1).sqrt()
    # No spread (every token equally likely) leaves every token at the mean: z = 0. The threshold
    # is above float32 rounding of log-probs, which would otherwise be divided by ~0.
    z = torch.where(sigma > 1e-5, (token - mu) / sigma.clamp_min(1e-5), torch.zeros_like(token))
    return -lowest_mean(token.tolist(), k), -lowest_mean(z.tolist(), k)


def _score_documents(model, tokenizer, texts: Sequence[str], batch_size: int, tokens: bool):
    """(NLL per text, (min_k, min_k_plus_plus) per text or None) in input order, one forward pass."""
    encoded = [tokenizer(text)["input_ids"] for text in texts]
    # Longest first, so each batch pads to a similar length.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    nll = [float("nan")] * len(encoded)
    stats = [(float("nan"), float("nan"))] * len(encoded) if tokens else None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                rows = [encoded[index] for index in batch]
                input_ids = pad_right(rows, 0)  # (batch, seq); the pad id is masked
                mask = attention_mask(rows)
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                for row, index in enumerate(batch):
                    length = len(encoded[index])
                    if length < 2:
                        continue
                    # (length-1, vocab) predictions for tokens 1..length-1, in float32 as HF's loss does
                    row_logits = logits[row, : length - 1].float()
                    targets = input_ids[row, 1:length].to(device)
                    nll[index] = float(F.cross_entropy(row_logits, targets))
                    if stats is not None:
                        stats[index] = token_statistics(row_logits, targets)
    finally:
        model.train(was_training)
    return nll, stats


def document_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> list[float]:
    """Mean next-token NLL of each text under `model` (nats per predicted token), in input order.

    A text that tokenizes to fewer than two tokens has nothing to predict and gets NaN, as the
    official `loss` would.
    """
    return _score_documents(model, tokenizer, texts, batch_size, tokens=False)[0]


def attack_auc(member_statistic: Sequence[float], nonmember_statistic: Sequence[float]) -> dict:
    """`{"auc", "score"}` of one attack: members ranked by -statistic, as the official MIA ranks -NLL."""
    auc = scoring.mia_auc(member_statistic, nonmember_statistic)
    return {"auc": auc, "score": scoring.mia_score(auc)}


def membership_inference(model, tokenizer, members: Sequence[Document], nonmembers: Sequence[Document],
                         batch_size: int = 16, reference_nll: tuple[Sequence[float], Sequence[float]] | None = None
                         ) -> dict:
    """The official MIA (NLL of every member and non-member document, the AUC with score -NLL, the
    MIA score) and the suite's `attacks`: `{name: {"auc", "score"}}` in the order of `ATTACKS`.

    `reference_nll` is (member NLLs, non-member NLLs) of the same documents under the model
    before unlearning (`document_nll`); without it the `reference` attack is left out.
    """
    member_text, nonmember_text = [d.text for d in members], [d.text for d in nonmembers]
    member_nll, member_tokens = _score_documents(model, tokenizer, member_text, batch_size, tokens=True)
    nonmember_nll, nonmember_tokens = _score_documents(model, tokenizer, nonmember_text, batch_size, tokens=True)
    auc = scoring.mia_auc(member_nll, nonmember_nll)
    statistics = {
        "loss": (member_nll, nonmember_nll),
        "zlib": tuple([zlib_statistic(nll, text) for nll, text in zip(nlls, texts)]
                      for nlls, texts in ((member_nll, member_text), (nonmember_nll, nonmember_text))),
        "min_k": ([s[0] for s in member_tokens], [s[0] for s in nonmember_tokens]),
        "min_k_plus_plus": ([s[1] for s in member_tokens], [s[1] for s in nonmember_tokens]),
    }
    if reference_nll is not None:
        ref_member, ref_nonmember = reference_nll
        if len(ref_member) != len(member_nll) or len(ref_nonmember) != len(nonmember_nll):
            raise ValueError(
                f"reference NLLs for {len(ref_member)} members and {len(ref_nonmember)} non-members, but the "
                f"MIA has {len(member_nll)} and {len(nonmember_nll)}; compute them on the same documents"
            )
        # Minus the rise of each document's NLL since the reference (see the module docstring).
        statistics["reference"] = (
            [ref - nll for nll, ref in zip(member_nll, ref_member)],
            [ref - nll for nll, ref in zip(nonmember_nll, ref_nonmember)],
        )
    return {
        "auc": auc,
        "score": scoring.mia_score(auc),
        "member_nll": member_nll,
        "nonmember_nll": nonmember_nll,
        "attacks": {name: attack_auc(*statistics[name]) for name in ATTACKS if name in statistics},
    }


def reference_nll(model, tokenizer, members: Sequence[Document], nonmembers: Sequence[Document],
                  batch_size: int = 16) -> tuple[list[float], list[float]]:
    """(member NLLs, non-member NLLs) under `model`: call it on the target before unlearning and
    pass the result to `membership_inference` (or `evaluate`) as `reference_nll`."""
    return (document_nll(model, tokenizer, [d.text for d in members], batch_size),
            document_nll(model, tokenizer, [d.text for d in nonmembers], batch_size))
