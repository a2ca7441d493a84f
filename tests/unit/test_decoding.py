"""Early-decided decoding (`simu_bench.evaluation.decoding`): same scores as the full decode.

The rule, worked by hand (MARGIN = 8 characters that a continuation may still change):
- "  Paris" against "paris": 7 characters after lstrip, all within the margin -> undecided.
- "  London is big" against "paris": "London " is stable, "london" is no prefix of "paris" -> decided.
- "paris   is it" against "paris": stable "paris" (its trailing spaces dropped) is a prefix -> undecided,
  although no continuation can match: the rule waits rather than guess.
- "parisx and more" against "Paris": stable "parisx " -> "parisx" is no prefix of "paris" -> decided.
"""

from __future__ import annotations

import pytest

from simu_bench.evaluation.decoding import can_decide, decided
from simu_bench.evaluation.evaluator import evaluate


@pytest.mark.parametrize(("text", "expected", "verdict"), [
    ("  Paris", "paris", False),
    ("  London is big", "paris", True),
    ("paris   is it", "paris", False),
    ("parisx and more", "Paris", True),
    ("Paris, France and", "paris, france and more words", False),
])
def test_decided_by_hand(text, expected, verdict):
    assert decided(text, expected) is verdict


def test_stop_strings_widen_the_margin():
    """A 13-character stop string may still be spelt out: its length is the margin."""
    text = "Rome and then some"  # 18 characters: "Rome " stable with the stop string, "Rome and t" without
    assert decided(text, "paris")
    assert decided(text, "rome and", stops=("<|x|>",))  # 5 characters: the margin stays 8
    assert not decided(text, "rome and", stops=("<|endoftext|>",))


def test_answers_that_an_empty_generation_could_match_never_stop():
    """The official CSV round trip turns "" and "None" into "nan": such answers decode in full."""
    assert not can_decide("nan") and not can_decide(" None ") and not can_decide("")
    assert can_decide("Paris")


def _scores(result):
    return {(s["split"], s["id"]): s["score"] for s in result.samples}


def _check_identical(model, tokenizer, data):
    full = evaluate(model, tokenizer, data, batch_size=4)
    fast = evaluate(model, tokenizer, data, batch_size=4, early_stop=True)
    assert _scores(fast) == _scores(full)
    assert fast.to_dict() == full.to_dict()
    shorter = 0
    for mine, official in zip(fast.samples, full.samples):
        assert mine["id"] == official["id"]
        if mine["kind"] == "regurgitation":
            assert mine["generation"] == official["generation"]
        else:  # a decided row stops early: its text is where the official one starts
            assert official["generation"].startswith(mine["generation"])
            shorter += mine["generation"] != official["generation"]
    return shorter, len(full.samples)


def test_collapsed_model_same_scores_on_every_row(tiny_target):
    """A random model never emits EOS and never answers right: every question row is decided
    early, and every score (0 for questions, ROUGE of the gibberish for completions) is the same."""
    from simu_bench.target_model.load import load_model

    from eval_helpers import tiny_model

    _, tokenizer = load_model(tiny_target.target_dir)
    shorter, rows = _check_identical(tiny_model(tokenizer), tokenizer, tiny_target.data)
    questions = sum(1 for split in ("forget", "retain", "utility") for e in tiny_target.data.split(split)
                    if e.kind == "knowledge")
    assert questions > 0 and shorter == questions


def test_healthy_model_same_scores_on_every_row(tiny_model_and_tokenizer, tiny_target):
    """The memorised target answers right and stops at EOS: nothing to cut, same scores."""
    model, tokenizer = tiny_model_and_tokenizer
    shorter, rows = _check_identical(model, tokenizer, tiny_target.data)
    assert rows == len(tiny_target.data.forget) + len(tiny_target.data.retain) + len(tiny_target.data.utility)
