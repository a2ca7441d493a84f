"""Tiny in-process models for the evaluation tests (random weights; a few thousand parameters)."""

from __future__ import annotations

EOS, PAD = "<|endoftext|>", "<|padding|>"


def tiny_tokenizer(texts):
    """A byte-level BPE like the target's: no BOS, `<|endoftext|>` EOS, a separate pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, model_max_length=512)


def tiny_model(tokenizer, seed: int = 0):
    """A random 2-layer OlmoForCausalLM with 32-dim hidden states, in eval mode."""
    import torch
    from transformers import OlmoConfig, OlmoForCausalLM

    torch.manual_seed(seed)
    config = OlmoConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=512, bos_token_id=None,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = OlmoForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
