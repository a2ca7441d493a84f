"""The embedded target's recipe: a small OLMo-architecture model (transformers' `OlmoForCausalLM`,
the family of the paper's OLMo-1B) with a byte-level BPE tokenizer trained on the corpus,
fine-tuned on forget + retain + world facts until it has memorised them (see
`simu_bench.target_model.finetune`). The source of this module, `finetune` and `tokenizer` is
part of the cache key (`simu_bench.target_model.cache`): a change to the recipe rebuilds the
target instead of reusing a stale one.

Command line: `simu-bench prepare` (see `simu_bench.commands.prepare`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import OlmoConfig, OlmoForCausalLM
from transformers.utils import logging as hf_logging

from simu_bench.data.lume import LumeData
from simu_bench.target_model.finetune import finetune
from simu_bench.target_model.settings import TargetConfig
from simu_bench.target_model.tokenizer import train_tokenizer

# The modules whose code decides the weights: their source is part of the cache key.
RECIPE_MODULES = ("build.py", "finetune.py", "tokenizer.py")  # the data is hashed by content


def build_model(config: TargetConfig, tokenizer):
    """A randomly initialised `OlmoForCausalLM` sized by `config`, with the tokenizer's ids."""
    model_config = OlmoConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = OlmoForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def train_target(data: LumeData, config: TargetConfig, seed: int, out_dir: Path, progress: bool = True) -> dict:
    """Train tokenizer and model on `data`'s forget + retain + utility rows; save into `out_dir`.

    The tokenizer is trained on every text of the corpus, held-out documents included: they
    are tokenized like the rest (so MIA compares NLLs at the same granularity), but the model
    never trains on them. Returns the build statistics.
    """
    rows = [{"input": e.input, "output": e.output} for e in (*data.forget, *data.retain, *data.utility)]
    corpus = [row["input"] + " " + row["output"] for row in rows]
    corpus += [document.text for document in (*data.member, *data.nonmember)]
    tokenizer = train_tokenizer(corpus, config.vocab_size, config.max_position_embeddings)
    torch.manual_seed(seed)
    model = build_model(config, tokenizer)
    started = time.perf_counter()
    # One intra-op thread: the matrices are too small to gain from more, a busy machine makes
    # extra threads spin (several times slower), and the weights then do not depend on the
    # machine's core count (summation order), so a seed gives the same bytes everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = finetune(model, tokenizer, rows, config, seed, progress=progress)
    finally:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar says nothing
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out_dir)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "training_rows": len(rows),
        "epochs": result.epochs,
        "steps": result.steps,
        "tokens_trained": result.tokens_trained,
        "final_loss": round(result.final_loss, 6),
        "final_answer_loss": round(result.final_answer_loss, 6),
        "memorised_rows": round(result.memorised, 4),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
