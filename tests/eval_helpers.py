"""Tiny in-process models for the evaluation tests (random weights; a few thousand parameters),
the official scorer's loops, and hand-made metrics."""

from __future__ import annotations

EOS, PAD = "<|endoftext|>", "<|padding|>"


def uniform_components(forget: float, retain: float) -> dict:
    """The 12 components in the metrics JSON's shape, every forget cell `forget`, every retain
    cell `retain`: `{"forget": {"Task1": {"regurgitation": forget, "knowledge": forget}, ...}, ...}`."""
    def cells(value: float) -> dict:
        return {task: {"regurgitation": value, "knowledge": value} for task in ("Task1", "Task2", "Task3")}

    return {"forget": cells(forget), "retain": cells(retain)}


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


def official_generations(model, tokenizer, examples, max_new_tokens: int = 256) -> list[str]:
    """The official scorer's generation loop: one unpadded `generate` per row, greedy, then the
    new tokens decoded with `skip_special_tokens=True, clean_up_tokenization_spaces=True`."""
    import torch

    outputs = []
    for example in examples:
        encoded = tokenizer(example.input, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(encoded.input_ids, attention_mask=encoded.attention_mask,
                                 max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tokenizer.eos_token_id)
        new_tokens = out[:, encoded.input_ids.shape[1]:]
        decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=True)
        outputs.append(decoded[0])
    return outputs


def official_document_nll(model, tokenizer, texts) -> list[float]:
    """The official MIA loop: `model(ids, labels=ids).loss`, one document at a time."""
    import torch

    values = []
    for text in texts:
        input_ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            values.append(model(input_ids, labels=input_ids.clone()).loss.item())
    return values


def official_evaluation(model, tokenizer, data, max_new_tokens: int = 256) -> tuple[list[str], dict]:
    """Generations of every forget/retain/utility row and the metrics, computed like the official script."""
    from simu_bench.evaluation import scoring

    examples = [e for split in ("forget", "retain", "utility") for e in data.split(split)]
    was_training = model.training
    model.eval()
    try:
        generations = official_generations(model, tokenizer, examples, max_new_tokens)
        member = official_document_nll(model, tokenizer, [d.text for d in data.member])
        nonmember = official_document_nll(model, tokenizer, [d.text for d in data.nonmember])
    finally:
        model.train(was_training)
    scores = [scoring.score_row(e.kind, e.output, g) for e, g in zip(examples, generations)]
    lume = [(e.split, e.task, e.kind, s) for e, s in zip(examples, scores) if e.split != "utility"]
    world = [s for e, s in zip(examples, scores) if e.split == "utility"]
    utility = {"name": "world_facts", "value": sum(world) / len(world)} if world else None
    return generations, scoring.metrics(lume, member or None, nonmember or None, utility)

