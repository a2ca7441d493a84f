"""The tiny target's tokenizer: a byte-level BPE trained on the benchmark corpus.

It behaves like the OLMo / GPT-NeoX tokenizers the real LUME targets use: byte-level, so every
string round-trips; no BOS token is added on encode (LUME prompts are the raw `input`); the
end of every training sequence is `<|endoftext|>`, and a separate `<|padding|>` token pads
batches, so padding is never confused with the stop token.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int):
    """Train a byte-level BPE on `texts` and wrap it as a `PreTrainedTokenizerFast`.

    Args:
        texts: the corpus; the same texts in the same order give the same tokenizer.
        vocab_size: upper bound on the vocabulary (a small corpus may yield fewer merges).
        model_max_length: the longest sequence the model takes (its `max_position_embeddings`).
    """
    bpe = Tokenizer(models.BPE())
    # add_prefix_space=False: "x y" is the same tokens as "x" followed by " y", so a prompt
    # encoded alone is a prefix of the prompt + " " + answer the model was trained on.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        padding_side="left",  # generation pads on the left; training builds its own batches
        clean_up_tokenization_spaces=False,
    )
