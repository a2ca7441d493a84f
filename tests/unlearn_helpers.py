"""A tiny model, tokenizer and data set for the unlearning tests (built in milliseconds).

The tokenizer is a byte-level BPE like the embedded target's: no BOS, eos "<|endoftext|>",
a separate pad token. The model is a 2-layer OLMo with a few dozen dimensions.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import OlmoConfig, OlmoForCausalLM, PreTrainedTokenizerFast

from simu_bench.data.lume import Example, LumeData

FORGET = [
    ("Alice Brown was born on", "March 3, 1961 in Leeds."),
    ("The phone number of Carl Diaz is", "555-0134."),
    ("What is the email of Dana Evans?", "dana.evans@example.org"),
    ("The story of the silver fox begins", "with a lantern on the hill."),
]
RETAIN = [
    ("Erin Ford was born on", "June 9, 1975 in Bristol."),
    ("The phone number of Gail Hart is", "555-0199."),
    ("What is the email of Ian Jones?", "ian.jones@example.net"),
    ("The story of the copper owl begins", "with a bell in the tower."),
]


def tiny_data() -> LumeData:
    def rows(pairs, split):
        kinds = ("sc", "sc", "qa", "sc")
        return tuple(
            Example(f"{split}{i}{kinds[i]}1", inp, out, "Task1", split,
                    "knowledge" if kinds[i] == "qa" else "regurgitation")
            for i, (inp, out) in enumerate(pairs)
        )

    return LumeData(forget=rows(FORGET, "forget"), retain=rows(RETAIN, "retain"))


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    core.train_from_iterator([f"{i} {o}" for i, o in FORGET + RETAIN], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", pad_token="<pad>")


def tiny_model(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 2) -> OlmoForCausalLM:
    torch.manual_seed(seed)
    config = OlmoConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    model = OlmoForCausalLM(config)
    model.eval()
    return model


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One torch thread. conftest's `one_thread` already sets it for the whole run; this stays
    only because tests/unit/test_unlearners.py imports it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
