"""Fine-tune the tiny target until it has memorised its training rows.

This is how LUME's official targets were made, at CPU size: a causal LM trained on every
forget, retain and utility row until greedy decoding from the raw `input` reproduces the
`output` and then stops at EOS. Held-out (non-member) documents are never trained on.

One training sequence per row: `tokens(input) + tokens(" " + output) + [eos]`. Encoding the
prompt on its own (instead of the joined string) makes the trained prefix exactly the tokens
the evaluation feeds the model; for byte-level BPE without prefix space the two are the same
in all but odd whitespace cases. The loss is the mean next-token cross-entropy over ALL tokens
of the sequence (prompt too), as a model fine-tuned on whole documents would be, so member
documents get a low NLL everywhere, not only in their second half (what the MIA measures).
Training stops early once every row is memorised and the answer-token loss is below
`stop_loss`. A row counts as memorised when, with the gold answer fed in (teacher forcing),
every answer token and the EOS are the model's top choice: then greedy decoding from the
prompt follows exactly the gold path and stops at EOS. The loss margin guards against near
ties. The training statistics of an epoch mix weights from before and after each step, so
when they say "memorised" a check pass over all rows with the final weights (no update)
decides. (The all-token loss is no stopping signal: the prompt's first tokens can never be
predicted, so it has a floor above zero.)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from simu_bench.data.pairing import attention_mask, pad_right


@dataclass(frozen=True)
class FinetuneResult:
    epochs: int
    steps: int
    tokens_trained: int  # non-padding tokens over all steps
    final_loss: float  # all-token loss of the last epoch
    final_answer_loss: float  # answer-token loss, final weights (the check pass)
    memorised: float  # fraction of rows whose answer is the top choice at every token, final weights


def encode_rows(tokenizer, rows: list[dict], max_length: int) -> list[tuple[list[int], int]]:
    """Return (token ids, answer start) per row: prompt, " " + answer, eos; cut to max_length."""
    encoded = []
    for row in rows:
        prompt = tokenizer(row["input"], add_special_tokens=False)["input_ids"]
        answer = tokenizer(" " + row["output"], add_special_tokens=False)["input_ids"]
        ids = (prompt + answer + [tokenizer.eos_token_id])[:max_length]
        encoded.append((ids, len(prompt)))
    return encoded


def _batches(encoded, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then group rows of similar length so that batches carry little padding.

    Sorting within windows of 8 batches keeps the order random at the large scale (every epoch
    sees batches in a new order) while wasting few tokens on padding.
    """
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = batch_size * 8
    grouped = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(encoded[i][0]))
        grouped.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(grouped)
    return grouped


def _collate(encoded, indices: list[int], pad_id: int):
    """Right-pad a batch; returns input ids, attention mask and answer-token mask, each (batch, seq)."""
    tokens = [encoded[i][0] for i in indices]
    answer = [[False] * start + [True] * (len(ids) - start) for ids, start in (encoded[i] for i in indices)]
    return pad_right(tokens, pad_id), attention_mask(tokens), pad_right(answer, False, dtype=torch.bool)


def _answer_stats(model, batch):
    """Per-token losses and the rows whose answer tokens are all the top choice.

    Returns (token losses (batch, seq-1), valid mask, answer mask, memorised rows (batch,)).
    """
    ids, attention, answer = batch
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]  # (batch, seq-1, vocab)
    targets = ids[:, 1:]
    valid = attention[:, 1:].bool()
    answer_mask = answer[:, 1:]
    token_losses = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
    ).view_as(targets)
    wrong = (logits.detach().argmax(-1) != targets) & answer_mask
    return token_losses, valid, answer_mask, ~wrong.any(dim=1)


@torch.no_grad()
def check_memorised(model, encoded, pad_id: int, batch_size: int) -> tuple[float, float]:
    """With the current weights: (fraction of rows memorised, mean answer-token loss)."""
    was_training = model.training
    model.eval()
    rows = answer_sum = answer_count = 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    for start in range(0, len(order), batch_size):
        batch = _collate(encoded, order[start : start + batch_size], pad_id)
        token_losses, _, answer_mask, memorised = _answer_stats(model, batch)
        rows += int(memorised.sum())
        answer_sum += float(token_losses[answer_mask].sum())
        answer_count += int(answer_mask.sum())
    model.train(was_training)
    return rows / len(encoded), answer_sum / max(1, answer_count)


def _schedule(optimizer, config, total_steps: int):
    """Linear warm-up over the first `config.warmup_steps` steps, then a cosine decay to 10% at `total_steps`."""
    def learning_rate_factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_fraction = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_fraction)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor)


def finetune(model, tokenizer, rows: list[dict], config, seed: int, progress: bool = True) -> FinetuneResult:
    """Train `model` in place on `rows` (dicts with input/output); deterministic for a seed.

    AdamW at `config.lr` with a linear warm-up over the first `config.warmup_steps` steps and a
    cosine decay to 10% over `config.max_epochs`; stops early once every row is memorised and
    the answer-token loss is below `config.stop_loss` with the final weights.
    """
    encoded = encode_rows(tokenizer, rows, config.max_position_embeddings)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98), foreach=True
    )
    scheduler = _schedule(optimizer, config, math.ceil(len(encoded) / config.batch_size) * config.max_epochs)
    model.train()
    step = tokens_trained = epoch = 0
    loss_value = answer_value = float("nan")
    memorised = 0.0
    bar = tqdm(range(config.max_epochs), desc="training target", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        loss_sum = answer_sum = 0.0
        token_count = answer_count = rows_memorised = 0
        for indices in _batches(encoded, config.batch_size, rng):
            batch = _collate(encoded, indices, tokenizer.pad_token_id)
            token_losses, valid, answer_mask, memorised_rows = _answer_stats(model, batch)
            loss = token_losses[valid].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            tokens_trained += int(batch[1].sum())  # non-padding tokens
            detached = token_losses.detach()
            loss_sum += float(detached[valid].sum())
            token_count += int(valid.sum())
            answer_sum += float(detached[answer_mask].sum())
            answer_count += int(answer_mask.sum())
            rows_memorised += int(memorised_rows.sum())
        loss_value = loss_sum / max(1, token_count)
        answer_value = answer_sum / max(1, answer_count)
        memorised = rows_memorised / len(encoded)
        bar.set_postfix(loss=f"{loss_value:.3f}", answer_loss=f"{answer_value:.4f}", memorised=f"{memorised:.0%}")
        if memorised == 1.0 and answer_value < config.stop_loss:
            memorised, answer_value = check_memorised(model, encoded, tokenizer.pad_token_id, config.batch_size)
            if memorised == 1.0 and answer_value < config.stop_loss:
                break
    else:  # out of epochs: report what the final weights have memorised
        memorised, answer_value = check_memorised(model, encoded, tokenizer.pad_token_id, config.batch_size)
    bar.close()
    model.eval()
    return FinetuneResult(epoch + 1, step, tokens_trained, loss_value, answer_value, memorised)
