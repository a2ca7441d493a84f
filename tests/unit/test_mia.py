"""MIA: per-document mean-token NLL, batched with padding masks, against one-at-a-time loss."""

from __future__ import annotations

import math

import pytest

from simu_bench.data.lume import Document
from simu_bench.evaluation.mia import document_nll, membership_inference

from eval_helpers import official_document_nll, tiny_model, tiny_tokenizer

TEXTS = [
    "The lighthouse keeper counted ships every evening.",
    "A short one.",
    "Marta was born in Velden on 3 May 1981 and works as a baker; her phone is 555-0134.",
    "Rivers run to the sea, and the sea returns as rain over the hills of Orlan.",
    "x",
]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer = tiny_tokenizer(TEXTS * 3)
    return tiny_model(tokenizer), tokenizer


def test_padded_batch_equals_one_document_at_a_time(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert len(set(lengths)) == len(lengths)  # different lengths, so batches really pad
    batched = document_nll(model, tokenizer, TEXTS, batch_size=4)
    # What the official script computes per document: `model(ids, labels=ids).loss`, alone.
    official = official_document_nll(model, tokenizer, TEXTS)
    for text, value, expected in zip(TEXTS, batched, official):
        if len(tokenizer(text)["input_ids"]) < 2:
            assert math.isnan(value) and math.isnan(expected)  # nothing to predict: NaN in both
        else:
            assert value == pytest.approx(expected, abs=1e-5)
    # The batch size changes nothing but speed.
    assert document_nll(model, tokenizer, TEXTS, batch_size=1) == pytest.approx(batched, abs=1e-5, nan_ok=True)


def test_document_nll_restores_training_mode(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    model.train()
    try:
        document_nll(model, tokenizer, TEXTS[:2])
        assert model.training
    finally:
        model.eval()


def test_membership_inference_scores_lower_nll_as_member(model_and_tokenizer):
    """Documents with lower NLL rank as members: members = the lowest-NLL texts gives AUC 1."""
    model, tokenizer = model_and_tokenizer
    texts = TEXTS[:4]
    nll = document_nll(model, tokenizer, texts)
    order = sorted(range(4), key=lambda i: nll[i])
    members = [Document(str(i), texts[i], "member") for i in order[:2]]
    nonmembers = [Document(str(i), texts[i], "nonmember") for i in order[2:]]
    result = membership_inference(model, tokenizer, members, nonmembers)
    assert result["auc"] == 1.0 and result["score"] == 0.0
    swapped = membership_inference(model, tokenizer, nonmembers, members)
    assert swapped["auc"] == 0.0 and swapped["score"] == 0.0
