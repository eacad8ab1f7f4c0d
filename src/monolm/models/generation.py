"""Batched summary generation for seq2seq and causal models.

Inputs are sorted by length so each batch pads little and returned in the original order. Callers
generate inside their subject's inference context (inference mode, the transform's cached weights:
one softplus per weight for the whole loop, not one per decoding step; their autocast).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _generation_kwargs(settings: Any, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    return {
        "num_beams": settings.num_beams,
        "length_penalty": settings.length_penalty,
        "min_new_tokens": settings.min_new_tokens,
        "max_new_tokens": settings.max_new_tokens,
        "no_repeat_ngram_size": settings.no_repeat_ngram_size,
        "early_stopping": settings.num_beams > 1,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _encode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sources: Sequence[str],
    max_source_tokens: int,
    settings: Any,
) -> list[list[int]]:
    """Token ids of each model input: seq2seq sources truncated at the end; causal prompts keep
    the article's start and end with the prompt suffix, leaving room for the summary."""
    if model.config.is_encoder_decoder:
        return tokenizer(list(sources), truncation=True, max_length=max_source_tokens)["input_ids"]
    suffix = tokenizer(settings.causal_prompt_suffix, add_special_tokens=False)["input_ids"]
    budget = max(1, max_source_tokens - settings.max_new_tokens - len(suffix))
    articles = tokenizer(list(sources), add_special_tokens=False)["input_ids"]
    return [ids[:budget] + suffix for ids in articles]


def generate_summaries(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sources: Sequence[str],
    settings: Any,
    max_source_tokens: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """One summary per source, decoded without special tokens."""
    encoded = _encode(model, tokenizer, sources, max_source_tokens, settings)
    return generate_from_ids(model, tokenizer, encoded, settings, progress)


def generate_from_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: Sequence[Sequence[int]],
    settings: Any,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """One summary per model input given as token ids (the attack stage's inputs are ids)."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    causal = not model.config.is_encoder_decoder
    kwargs = _generation_kwargs(settings, tokenizer)
    summaries: list[str] = [""] * len(encoded)
    for start in range(0, len(order), settings.batch_size):
        batch_ids = [list(encoded[i]) for i in order[start : start + settings.batch_size]]
        width = max(len(ids) for ids in batch_ids)
        pad = tokenizer.pad_token_id
        # Causal models continue the prompt, so their padding goes on the left.
        rows = [
            ([pad] * (width - len(ids)) + ids) if causal else (ids + [pad] * (width - len(ids)))
            for ids in batch_ids
        ]
        mask = [
            ([0] * (width - len(ids)) + [1] * len(ids))
            if causal
            else ([1] * len(ids) + [0] * (width - len(ids)))
            for ids in batch_ids
        ]
        input_ids = torch.tensor(rows, device=device)
        attention_mask = torch.tensor(mask, device=device)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if causal:
            output = output[:, width:]
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        for index, text in zip(order[start : start + settings.batch_size], texts, strict=True):
            summaries[index] = text.strip()
        if progress:
            progress(len(batch_ids))
    return summaries


@dataclass(frozen=True)
class GreedySettings:
    """`generate_from_ids` settings for plain greedy decoding: one beam, no length penalty, no
    minimum length, no n-gram blocking; generation stops at EOS or after `max_new_tokens`."""

    max_new_tokens: int
    batch_size: int
    num_beams: int = 1
    length_penalty: float = 1.0
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0


def generate_greedy_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    max_length: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """The greedy continuation of each prompt (a causal model) or the decoder's greedy output
    (seq2seq), decoded without special tokens and stripped.

    Prompts are encoded as lm-eval's `loglikelihood` encodes a context, so an answer generated
    here is the one a log-likelihood scores: with the tokenizer's special tokens (T5 appends
    `</s>`), a causal prompt's trailing whitespace left to the answer. The prompt is
    left-truncated to `max_length` tokens, less `max_new_tokens` for a causal model (whose
    window holds the answer too), as lm-eval's `generate_until` does. Causal batches are padded
    on the left (`generate_from_ids`).
    """
    causal = not model.config.is_encoder_decoder
    texts = [prompt.rstrip() for prompt in prompts] if causal else list(prompts)
    budget = max(1, max_length - max_new_tokens) if causal else max_length
    encoded = [ids[-budget:] for ids in tokenizer(texts)["input_ids"]]
    settings = GreedySettings(max_new_tokens=max_new_tokens, batch_size=batch_size)
    return generate_from_ids(model, tokenizer, encoded, settings, progress)
