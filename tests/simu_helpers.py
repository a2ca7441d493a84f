"""Tiny randomly initialised causal LMs of every family SIMU supports (no downloads).

Each model has 2 layers, hidden size 32 and 48 MLP units per layer, so a test builds one in
milliseconds. The tokenizer and data are those of `unlearn_helpers`.
"""

from __future__ import annotations

import torch
import transformers

FAMILIES = ("olmo", "olmo2", "llama", "qwen2", "gpt_neox", "gpt2")
HIDDEN, UNITS, LAYERS = 32, 48, 2


def family_model(family: str, tokenizer, seed: int = 0):
    """A tiny `family` model in eval mode whose vocabulary matches `tokenizer`."""
    torch.manual_seed(seed)
    ids = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
               eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    if family == "gpt2":
        config = transformers.GPT2Config(n_embd=HIDDEN, n_inner=UNITS, n_layer=LAYERS, n_head=4,
                                         n_positions=128, **ids)
    elif family == "gpt_neox":
        config = transformers.GPTNeoXConfig(hidden_size=HIDDEN, intermediate_size=UNITS, num_hidden_layers=LAYERS,
                                            num_attention_heads=4, max_position_embeddings=128, **ids)
    else:
        cls = {"olmo": transformers.OlmoConfig, "olmo2": transformers.Olmo2Config,
               "llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[family]
        config = cls(hidden_size=HIDDEN, intermediate_size=UNITS, num_hidden_layers=LAYERS, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=128, **ids)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.eval()
    return model
