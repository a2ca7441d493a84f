"""The MIA suite: each attack against a hand-worked example, and `loss` is the official MIA.

The end-to-end cases use a bigram stub model over a two-token vocabulary {a, b}, so every token
log-probability is known in closed form:

    after "a": p(a) = 0.6, p(b) = 0.4          after "b": p(a) = 0.9, p(b) = 0.1

A document "abaa" predicts b|a, a|b, a|a: log-probs ln 0.4, ln 0.9, ln 0.6.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from simu_bench.data.lume import Document
from simu_bench.evaluation import scoring
from simu_bench.evaluation.mia import (
    ATTACKS,
    document_nll,
    lowest_mean,
    membership_inference,
    reference_nll,
    token_statistics,
    zlib_statistic,
)

from eval_helpers import tiny_model, tiny_tokenizer

NEXT = {"a": {"a": 0.6, "b": 0.4}, "b": {"a": 0.9, "b": 0.1}}  # p(next | current)


class CharTokenizer:
    """One id per character: a -> 0, b -> 1; no special tokens."""

    def __call__(self, text):
        return {"input_ids": ["ab".index(c) for c in text]}


class Bigram(torch.nn.Module):
    """Logits at position t are the log-probs of NEXT[token t]: a model with known answers."""

    def __init__(self):
        super().__init__()
        table = [[math.log(NEXT[c][n]) for n in "ab"] for c in "ab"]
        self.table = torch.nn.Parameter(torch.tensor(table), requires_grad=False)  # (vocab, vocab)

    def forward(self, input_ids, attention_mask):
        class Out:
            logits = self.table[input_ids]  # (batch, seq, vocab)

        return Out()


def _log_probs(text):
    return [math.log(NEXT[c][n]) for c, n in zip(text, text[1:])]


def _z_scores(text):
    """Min-K%++'s standardised log-prob per position, from NEXT by hand."""
    out = []
    for c, n in zip(text, text[1:]):
        dist = NEXT[c]
        mu = sum(p * math.log(p) for p in dist.values())
        sigma = math.sqrt(sum(p * (math.log(p) - mu) ** 2 for p in dist.values()))
        out.append((math.log(dist[n]) - mu) / sigma)
    return out


def _auc(members, nonmembers):
    """Mann-Whitney by counting: P(member statistic < non-member statistic), ties half."""
    pairs = [(m, n) for m in members for n in nonmembers]
    return sum(1.0 if m < n else 0.5 if m == n else 0.0 for m, n in pairs) / len(pairs)


def test_lowest_mean_takes_the_floor_of_k_n_smallest_values_and_at_least_one():
    values = [-1.0, -4.0, -2.0, -8.0, -3.0]
    assert lowest_mean(values, 0.2) == -8.0  # floor(0.2 * 5) = 1 value: -8
    assert lowest_mean(values, 0.4) == -6.0  # 2 values: (-8 - 4) / 2
    assert lowest_mean([-0.5, -1.5], 0.2) == -1.5  # floor(0.4) = 0 -> still one value
    assert math.isnan(lowest_mean([], 0.2))


def test_zlib_divides_the_nll_by_the_compressed_length_in_bytes():
    # zlib.compress(b"abc"): 2 header bytes + 5 bytes of fixed-Huffman deflate (3 + 3*8 + 7 bits) + 4 Adler-32 = 11
    assert zlib_statistic(2.2, "abc") == pytest.approx(2.2 / 11)
    # A repetitive text compresses better, so the same NLL weighs more.
    assert zlib_statistic(1.0, "ab" * 50) > zlib_statistic(1.0, "the quick brown fox jumps over the lazy dog")


def test_token_statistics_by_hand():
    """Distribution (0.5, 0.25, 0.25): log p = (-ln 2, -2 ln 2, -2 ln 2), mu = -1.5 ln 2,
    sigma = 0.5 ln 2, so token 0 has z = +1 and tokens 1, 2 have z = -1. A uniform position has
    sigma = 0 and z = 0. Targets 0, 1, 2, 0 then the uniform position with target 1:
    log-probs (-ln 2, -2 ln 2, -2 ln 2, -ln 2, -ln 3); lowest 20% of 5 = the single lowest."""
    skewed = torch.log(torch.tensor([0.5, 0.25, 0.25]))
    logits = torch.stack([skewed, skewed, skewed, skewed, torch.zeros(3)])
    min_k, min_k_pp = token_statistics(logits, torch.tensor([0, 1, 2, 0, 1]))
    assert min_k == pytest.approx(2 * math.log(2))  # -(lowest log-prob) = 2 ln 2 > ln 3
    assert min_k_pp == pytest.approx(1.0)  # -(lowest z) = -(-1)
    # k = 60% of 5 = 3 values: log-probs -2 ln 2, -2 ln 2, -ln 3; z-scores -1, -1, 0.
    min_k, min_k_pp = token_statistics(logits, torch.tensor([0, 1, 2, 0, 1]), k=0.6)
    assert min_k == pytest.approx((4 * math.log(2) + math.log(3)) / 3)
    assert min_k_pp == pytest.approx(2 / 3)


def test_every_attack_on_a_bigram_model_matches_the_hand_computation():
    """Members "abaa", "abbaba"; non-members "aaab", "bbab". By hand (ln 0.6 = -0.511,
    ln 0.4 = -0.916, ln 0.9 = -0.105, ln 0.1 = -2.303):

    - loss (mean NLL): m1 0.511, m2 0.869; n1 0.646, n2 1.108. Member below non-member in 3 of
      the 4 pairs (not m2 vs n1): AUC 0.75.
    - min_k (one lowest token of 3-5): m1 0.916, m2 2.303; n1 0.916, n2 2.303. Pairs: tie, win,
      loss, tie: AUC 0.5.
    - min_k_plus_plus: after "a" mu = -0.673, sigma = 0.199, z(b|a) = -1.225; after "b"
      mu = -0.325, sigma = 0.659, z(b|b) = -3.0. Lowest z: m1 -1.225, m2 -3.0, n1 -1.225,
      n2 -3.0: the same ties as min_k, AUC 0.5.
    - reference with reference NLLs m (0.1, 0.2), n (0.3, 0.6), below the model's as after
      unlearning: statistic NLL(ref) - NLL(model), minus the rise: m1 -0.411, m2 -0.669;
      n1 -0.346, n2 -0.508. The members rose more, so they rank as members in 3 of the 4 pairs
      (not m1 vs n2): AUC 0.75 > 0.5, read like every other attack's (NLL(model) - NLL(ref)
      would read 0.25).
    """
    members = [Document("m1", "abaa", "member"), Document("m2", "abbaba", "member")]
    nonmembers = [Document("n1", "aaab", "nonmember"), Document("n2", "bbab", "nonmember")]
    ref = ([0.1, 0.2], [0.3, 0.6])
    result = membership_inference(Bigram(), CharTokenizer(), members, nonmembers, batch_size=3, reference_nll=ref)

    def nll(text):
        return -sum(_log_probs(text)) / (len(text) - 1)

    statistic = {
        "loss": nll,
        "zlib": lambda text: nll(text) / len(zlib.compress(text.encode())),
        "min_k": lambda text: -lowest_mean(_log_probs(text)),
        "min_k_plus_plus": lambda text: -lowest_mean(_z_scores(text)),
    }
    assert list(result["attacks"]) == list(ATTACKS)
    for name, f in statistic.items():
        expected = _auc([f(d.text) for d in members], [f(d.text) for d in nonmembers])
        assert result["attacks"][name]["auc"] == pytest.approx(expected), name
        assert result["attacks"][name]["score"] == pytest.approx(1 - 2 * abs(expected - 0.5)), name
    # Reference: NLL(ref) - NLL(model) per document, minus the rise since the reference.
    member_diff = [r - nll(d.text) for d, r in zip(members, ref[0])]
    nonmember_diff = [r - nll(d.text) for d, r in zip(nonmembers, ref[1])]
    assert result["attacks"]["reference"]["auc"] == pytest.approx(_auc(member_diff, nonmember_diff))
    aucs = {name: result["attacks"][name]["auc"] for name in ATTACKS}
    assert aucs["loss"] == 0.75 and aucs["min_k"] == aucs["min_k_plus_plus"] == 0.5 and aucs["reference"] == 0.75
    assert result["attacks"]["reference"]["score"] == pytest.approx(0.5)


def test_reference_attack_is_left_out_without_reference_nll_and_checks_lengths():
    members = [Document("m1", "abaa", "member")]
    nonmembers = [Document("n1", "bbab", "nonmember")]
    result = membership_inference(Bigram(), CharTokenizer(), members, nonmembers)
    assert list(result["attacks"]) == ["loss", "zlib", "min_k", "min_k_plus_plus"]
    with pytest.raises(ValueError, match="same documents"):
        membership_inference(Bigram(), CharTokenizer(), members, nonmembers, reference_nll=([0.1, 0.2], [0.3]))


def test_loss_attack_is_the_official_mia_exactly():
    """On a real (random) model: the suite's `loss` is the official AUC to the bit, and the
    official NLLs are those of `document_nll`, which the suite does not change."""
    texts = ["The lighthouse keeper counted ships every evening.", "A short one here.",
             "Marta was born in Velden on 3 May 1981 and works as a baker.", "Rivers run to the sea.",
             "Orlan hills are green in spring.", "Sixty two boats left the harbour at dawn."]
    tokenizer = tiny_tokenizer(texts * 3)
    model = tiny_model(tokenizer)
    members = [Document(str(i), t, "member") for i, t in enumerate(texts[:3])]
    nonmembers = [Document(str(i), t, "nonmember") for i, t in enumerate(texts[3:])]
    result = membership_inference(model, tokenizer, members, nonmembers, batch_size=2)
    assert result["member_nll"] == document_nll(model, tokenizer, texts[:3], batch_size=2)
    assert result["nonmember_nll"] == document_nll(model, tokenizer, texts[3:], batch_size=2)
    official = scoring.mia_auc(result["member_nll"], result["nonmember_nll"])
    assert result["auc"] == official and result["attacks"]["loss"]["auc"] == official
    assert result["attacks"]["loss"]["score"] == result["score"] == scoring.mia_score(official)
    # The model as its own reference: every difference is 0, all ties, AUC 0.5.
    same = membership_inference(model, tokenizer, members, nonmembers, batch_size=2,
                                reference_nll=reference_nll(model, tokenizer, members, nonmembers, batch_size=2))
    assert same["attacks"]["reference"] == {"auc": 0.5, "score": 1.0}


def test_eval_reference_adds_the_reference_attack(tiny_target, tmp_path, capsys):
    """`eval --reference` with the target as its own reference: every NLL difference is 0, AUC 0.5;
    the other attacks and the official MIA are what `eval` gives without it."""
    import json

    from simu_bench.cli import main

    base = ["eval", "--model", str(tiny_target.target_dir), "--data", str(tiny_target.data_dir),
            "--max-new-tokens", "16"]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*base, "--reference", str(tiny_target.target_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mia_attacks"].pop("reference") == {"auc": 0.5, "score": 1.0}
    assert metrics == plain
    assert main([*base, "--reference", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference" in err and "no such model folder" in err
