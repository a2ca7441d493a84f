"""Loss-based membership inference (MIA) as LUME runs it: per-document mean-token NLL.

The official script scores each document alone: `model(ids, labels=ids).loss`, the mean
cross-entropy of tokens 2..n given their prefix, with the tokenizer's defaults (special tokens
as the tokenizer adds them, no truncation). `document_nll` computes the same number for many
documents at once: documents sorted by length, right-padded, padding masked out of both the
attention and the mean, so a padded batch gives the same NLL as one document at a time (up to
float rounding; `tests/test_mia.py` checks it).

The AUC and MIA score live in `simu_bench.evaluation.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence

from simu_bench.data.lume import Document
from simu_bench.data.pairing import attention_mask, pad_right
from simu_bench.evaluation import scoring


def document_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 16) -> list[float]:
    """Mean next-token NLL of each text under `model` (nats per predicted token), in input order.

    A text that tokenizes to fewer than two tokens has nothing to predict and gets NaN, as the
    official `loss` would.
    """
    import torch
    import torch.nn.functional as F

    encoded = [tokenizer(text)["input_ids"] for text in texts]
    # Longest first, so each batch pads to a similar length.
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    nll = [float("nan")] * len(encoded)
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
    finally:
        model.train(was_training)
    return nll


def membership_inference(model, tokenizer, members: Sequence[Document], nonmembers: Sequence[Document],
                         batch_size: int = 16) -> dict:
    """NLL of every member and non-member document, the AUC (score -NLL) and the MIA score."""
    member_nll = document_nll(model, tokenizer, [d.text for d in members], batch_size)
    nonmember_nll = document_nll(model, tokenizer, [d.text for d in nonmembers], batch_size)
    auc = scoring.mia_auc(member_nll, nonmember_nll)
    return {
        "auc": auc,
        "score": scoring.mia_score(auc),
        "member_nll": member_nll,
        "nonmember_nll": nonmember_nll,
    }
