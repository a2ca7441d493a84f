"""Early-decided greedy decoding: question rows stop once their exact-match score is decided.

A knowledge (question) row scores 1 when ``generation.strip().lower() == expected.strip().lower()``
(`scoring.exact_match`). Once the text generated so far can no longer become the expected answer
under any continuation, the row's score is 0 whatever comes next, and decoding it further is
wasted. `decided` says when that is so; `greedy` decodes a batch greedily and drops each row from
the batch as soon as it is finished (EOS, a stop string, or decided). Regurgitation rows
(ROUGE-L recall, which can still grow) always decode to EOS or the token limit.

The scores are those of the official 256-token decode; the stored text of a decided row is
shorter, so this is used only where no generation text is kept (trajectory points, tuning
trials) or where `--fast-decode` asks for it.

Why `decided` is safe: the text decoded from a prefix of the tokens is a prefix of the final
text except near its end (byte-level tokens that complete a character later, the tokenizer's
clean-up of " ." and " n't" across a token boundary, Python's context-dependent lower-casing of a
final sigma, a stop string still being spelt out). So the last `MARGIN` characters (and at least
the longest stop string) are ignored; if what remains, without leading whitespace, lower-cased
and without trailing whitespace, is not a prefix of the expected answer, no continuation can
make ``strip().lower()`` equal it.
"""

from __future__ import annotations

import inspect

import torch
from lm_eval.models.huggingface import HFLM
from transformers import DynamicCache

from simu_bench.evaluation.scoring import CSV_NA

MARGIN = 8  # characters at the end of the decoded text that a continuation may still change


def can_decide(expected: str) -> bool:
    """Whether a row with this answer may stop early: not when an empty or "None"-like generation
    could match it through the official CSV round trip (`scoring.through_csv`)."""
    na = {text.strip().lower() for text in CSV_NA}
    return expected not in CSV_NA and expected.strip().lower() not in na


def decided(text: str, expected: str, stops: tuple[str, ...] = ()) -> bool:
    """True when no continuation of ``text`` can make ``strip().lower()`` equal ``expected``'s.

    ``stops``: the stop strings whose first occurrence cuts the final text (lm-eval's ``until``).
    """
    margin = max([MARGIN, *(len(stop) for stop in stops)])
    stable = text.lstrip()[:-margin] if len(text.lstrip()) > margin else ""
    return not expected.strip().lower().startswith(stable.lower().rstrip())


def _cut(text: str, stops: tuple[str, ...]) -> bool:
    return any(stop and stop in text for stop in stops)


def greedy(model, input_ids, attention_mask, max_new_tokens: int, *,
           eos_ids: set[int], pad_id: int, decode, answers: list[str | None], stops: tuple[str, ...] = ()):
    """Greedy decoding of a left-padded batch; returns (batch, prompt + max_new_tokens) token ids.

    Row i stops at EOS, at a stop string, or (``answers[i]`` not None) once `decided` against that
    answer; the rest of its row is ``pad_id``, and the row leaves the batch (its KV cache rows are
    dropped), so later steps cost only what is still running. ``decode(ids) -> text`` decodes new
    tokens as the scorer does. The forward passes match transformers' `generate` (position ids
    from the attention mask, one logit position per step, a dynamic cache).
    """
    # transformers 5.25 renamed `past_key_values` to `cache`; older releases know only the former
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    batch, width = input_ids.shape
    out = torch.full((batch, width + max_new_tokens), pad_id, dtype=input_ids.dtype, device=input_ids.device)
    out[:, :width] = input_ids
    active = torch.arange(batch, device=input_ids.device)  # original row of each running row
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # (batch, width)
    eos = torch.tensor(sorted(eos_ids), device=input_ids.device)
    cache, step_ids = DynamicCache(config=model.config), input_ids
    with torch.no_grad():
        for step in range(max_new_tokens):
            logits = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                           logits_to_keep=1, **{key: cache}).logits[:, -1]
            token = logits.float().argmax(-1)  # (running,)
            out[active, width + step] = token
            done = torch.isin(token, eos)
            for k, row in enumerate(active.tolist()):
                if not done[k] and (stops or answers[row] is not None):
                    text = decode(out[row, width : width + step + 1].tolist())
                    done[k] = _cut(text, stops) or (answers[row] is not None and decided(text, answers[row], stops))
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                active, token, mask, positions = active[keep], token[keep], mask[keep], positions[keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            positions, step_ids = positions[:, -1:] + 1, token[:, None]
    return out


def decidable_answers(rows) -> dict[str, str | None]:
    """Prompt -> the expected answer a row with that prompt may stop early against, or None.

    None where a prompt is shared by a regurgitation row (which decodes in full) or by rows with
    different answers, and where `decoding.can_decide` refuses the answer.
    """
    answers: dict[str, str | None] = {}
    for e in rows:
        answer = e.output if e.kind == "knowledge" and can_decide(e.output) else None
        answers[e.input] = answer if answers.get(e.input, answer) == answer else None
    return answers


def hf_lm(model, tokenizer, batch_size, max_new_tokens, max_length, answers=None):
    """lm-eval's HFLM on the in-memory model; with ``answers`` (prompt -> answer or None) its
    generation is `decoding.greedy`, which stops question rows once their score is decided."""
    class OfficialDecodeHFLM(HFLM):
        """HFLM that decodes new tokens with the official scorer's arguments."""

        def tok_decode(self, tokens, skip_special_tokens: bool = True):
            return self.tokenizer.decode(
                tokens, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=True
            )

        def tok_batch_encode(self, strings, *args, **kwargs):
            self._prompts = list(strings)  # the prompts of the batch `_model_generate` runs next
            return super().tok_batch_encode(strings, *args, **kwargs)

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            if answers is None:
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
            eos = self.model.generation_config.eos_token_id
            eos = {self.tokenizer.eos_token_id} if eos is None else set(eos if isinstance(eos, list) else [eos])
            return greedy(self.model, context, generation_kwargs["attention_mask"], max_length - context.shape[1],
                          eos_ids=eos, pad_id=self.tokenizer.pad_token_id, decode=self.tok_decode,
                          answers=[answers.get(prompt) for prompt in self._prompts], stops=tuple(stop))

    return OfficialDecodeHFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length, max_gen_toks=max_new_tokens
    )
