"""Tokenisation, cached by `datasets` under a fingerprint of everything that shapes the result.

Causal LM: every document gets EOS appended, documents are concatenated and cut into blocks of
exactly `block_size` tokens (the tail of each 1000-document group that does not fill a block is
dropped, as in Hugging Face's run_clm). Seq2seq: `source_prefix + source` truncated to
`max_length`, target truncated to `max_target_length`; padding happens per batch in the collator.

Prompted tasks (classification, question answering): each row is a (prompt, answer) pair,
tokenised by `encode_requests`, the tokenisation evaluation scores with (lm-eval's
`loglikelihood` convention), so the answer tokens trained are the tokens evaluation scores.
Only the answer (and the EOS after it) is trained; see `tokenize_prompted`.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from monolm.data import prompts
from monolm.errors import UserError

PACK_GROUP = 1000  # documents concatenated per map batch before cutting blocks
IGNORE_INDEX = -100  # label value the loss skips (prompt tokens, padding)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    state = tokenizer.backend_tokenizer.to_str() if tokenizer.is_fast else repr(tokenizer)
    return hashlib.sha256(state.encode()).hexdigest()


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def pack_for_causal_lm(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    text_field: str,
    block_size: int,
    num_proc: int | None = None,
) -> Dataset:
    """Blocks of `block_size` token ids (column `input_ids`), documents separated by EOS."""
    eos = tokenizer.eos_token_id

    def pack(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch[text_field], add_special_tokens=False)["input_ids"]
        stream = [token for ids in encoded for token in (*ids, eos)]
        usable = len(stream) - len(stream) % block_size
        return {"input_ids": [stream[i : i + block_size] for i in range(0, usable, block_size)]}

    return ds.map(
        pack,
        batched=True,
        batch_size=PACK_GROUP,
        remove_columns=ds.column_names,
        num_proc=num_proc,
        new_fingerprint=_fingerprint(
            "causal-v1", ds._fingerprint, tokenizer_fingerprint(tokenizer), text_field, block_size
        ),
        desc=f"tokenise + pack into blocks of {block_size}",
    )


def tokenize_for_seq2seq(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    source_field: str,
    target_field: str,
    source_prefix: str,
    max_length: int,
    max_target_length: int,
    num_proc: int | None = None,
) -> Dataset:
    """Columns `input_ids` (prefixed, truncated source) and `labels` (truncated target)."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        sources = [source_prefix + text for text in batch[source_field]]
        inputs = tokenizer(sources, max_length=max_length, truncation=True)["input_ids"]
        labels = tokenizer(
            text_target=batch[target_field], max_length=max_target_length, truncation=True
        )["input_ids"]
        return {"input_ids": inputs, "labels": labels}

    return ds.map(
        encode,
        batched=True,
        remove_columns=ds.column_names,
        num_proc=num_proc,
        new_fingerprint=_fingerprint(
            "seq2seq-v1",
            ds._fingerprint,
            tokenizer_fingerprint(tokenizer),
            source_field,
            target_field,
            source_prefix,
            max_length,
            max_target_length,
        ),
        desc="tokenise sources and targets",
    )


# --------------------------------------------------------------------------------------------
# (context, continuation) requests, as lm-evaluation-harness tokenises them


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """lm-eval's conditioning token for empty contexts and first windows: BOS, else EOS."""
    token = tokenizer.bos_token_id
    if token is None:
        token = tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to condition on")
    return token


def encode_texts(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], special: bool
) -> list[list[int]]:
    """Token ids of each text, with the tokenizer's special tokens or without."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=special)["input_ids"]


def _move_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval moves trailing whitespace to the continuation ("a " + "b" -> "a" + " b"), so the
    space is tokenised with the word it precedes, as in running text."""
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def encode_requests(
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[tuple[str, str]],
    seq2seq: bool,
) -> list[tuple[list[int], list[int]]]:
    """(context tokens, continuation tokens) per request, as lm-eval's `loglikelihood` makes them.

    Special tokens follow the tokenizer's defaults wherever lm-eval's `tok_encode` does: for the
    context, and for the whole causal text (GPT-NeoX and the bundled causal tokenizer add none);
    never for a seq2seq continuation or a continuation that follows an empty context.

    A causal continuation is `tokens(context + continuation)[len(tokens(context)):]` (a merge
    across the boundary is the continuation's). It lives in the data layer because training on
    prompted tasks tokenises with it too (the same tokens trained and scored);
    `monolm.metrics.likelihood` scores what it returns.
    """
    prefix = prefix_token_id(tokenizer)
    pairs = [_move_trailing_spaces(c, x) if c else (c, x) for c, x in requests]
    contexts = encode_texts(tokenizer, [c for c, _ in pairs if c], special=True)
    if seq2seq:
        tails = encode_texts(tokenizer, [x for c, x in pairs if c], special=False)
    else:
        tails = encode_texts(tokenizer, [c + x for c, x in pairs if c], special=True)
    bare = encode_texts(tokenizer, [x for c, x in pairs if not c], special=False)
    contexts_it, tails_it, bare_it = iter(contexts), iter(tails), iter(bare)
    encoded = []
    for context, continuation in pairs:
        if context:
            context_ids, tail = next(contexts_it), next(tails_it)
            continuation_ids = tail if seq2seq else tail[len(context_ids) :]
        else:
            continuation_ids = next(bare_it)
            # lm-eval: the prefix token is the context, unless the continuation starts with it.
            if continuation_ids and continuation_ids[0] == prefix:
                context_ids, continuation_ids = continuation_ids[:1], continuation_ids[1:]
            else:
                context_ids = [prefix]
        if not continuation_ids:
            raise ValueError(
                f"continuation {continuation!r} of context {context[-40:]!r} has no tokens of its "
                "own to score"
            )
        encoded.append((context_ids, continuation_ids))
    return encoded


# --------------------------------------------------------------------------------------------
# Prompted tasks: prompt -> answer pairs

PROMPTED_VERSION = "prompted-v1"  # bump when the layout below changes


def _source_digest(*objects: Any) -> str:
    """A hash of the code that shapes prompted rows (prompt filling, request tokenisation), so
    a change to it re-tokenises instead of reading a stale cache."""
    return hashlib.sha256("".join(inspect.getsource(o) for o in objects).encode()).hexdigest()


def prompted_pair(
    context_ids: list[int],
    continuation_ids: list[int],
    eos_id: int,
    family: str,
    max_length: int,
    max_target_length: int,
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one prompted example from its `encode_requests` tokens.

    The trained answer is the continuation followed by EOS (so generation learns to stop), at
    most `max_target_length` tokens in all. Causal: the prompt is left-truncated so that prompt
    + answer fit `max_length` (the end of a prompt holds the question and the "Answer:" cue),
    and labels are IGNORE_INDEX over the prompt (the model shifts labels itself). Seq2seq: the
    source is the prompt's last `max_length` tokens (with the tokenizer's specials, e.g. T5's
    closing `</s>`), as evaluation truncates it.
    """
    answer = [*continuation_ids[: max_target_length - 1], eos_id]
    if family == "seq2seq":
        return context_ids[-max_length:], answer
    keep = max(1, max_length - len(answer))  # validate_train_config: max_length > answer
    context = context_ids[-keep:]
    return context + answer, [IGNORE_INDEX] * len(context) + answer


def tokenize_prompted(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    ds_cfg: Any,
    family: str,
    num_proc: int | None = None,
) -> Dataset:
    """Columns `input_ids` and `labels` of a classification or question-answering dataset.

    Each row becomes the request (`prompts.prompt_text`, `prompts.continuation` of
    `prompts.training_target`) that evaluation scores, tokenised by `encode_requests` and laid
    out by `prompted_pair`. A classification answer (a verbalised label) that would be cut by
    `max_target_length` is an error: evaluation compares the whole words.
    """
    seq2seq = family == "seq2seq"
    eos_id = tokenizer.eos_token_id
    max_length, max_target_length = int(ds_cfg.max_length), int(ds_cfg.max_target_length)
    classification = ds_cfg.task == "classification"

    def encode(batch: dict[str, list]) -> dict[str, list]:
        size = len(next(iter(batch.values())))
        rows = [{name: column[i] for name, column in batch.items()} for i in range(size)]
        requests = [
            (
                prompts.prompt_text(ds_cfg, row),
                prompts.continuation(ds_cfg, prompts.training_target(ds_cfg, row), family),
            )
            for row in rows
        ]
        try:
            encoded = encode_requests(tokenizer, requests, seq2seq)
        except ValueError as exc:
            raise UserError(f"dataset '{ds_cfg.name}': {exc}") from None
        inputs, labels = [], []
        for (_, answer), (context_ids, continuation_ids) in zip(requests, encoded, strict=True):
            if classification and len(continuation_ids) >= max_target_length:
                raise UserError(
                    f"dataset '{ds_cfg.name}': the answer {answer!r} is {len(continuation_ids)} "
                    f"tokens + EOS, more than dataset.max_target_length={max_target_length}: "
                    f"set it to at least {len(continuation_ids) + 1}"
                )
            input_ids, label_ids = prompted_pair(
                context_ids, continuation_ids, eos_id, family, max_length, max_target_length
            )
            inputs.append(input_ids)
            labels.append(label_ids)
        return {"input_ids": inputs, "labels": labels}

    settings = [
        ds_cfg.task,
        ds_cfg.prompt,
        ds_cfg.target_delimiter,
        ds_cfg.label_field,
        list(ds_cfg.choices),
        ds_cfg.answers_field,
        ds_cfg.no_answer,
    ]
    return ds.map(
        encode,
        batched=True,
        remove_columns=ds.column_names,
        num_proc=num_proc,
        new_fingerprint=_fingerprint(
            PROMPTED_VERSION,
            _source_digest(prompts, sys.modules[__name__]),
            ds._fingerprint,
            tokenizer_fingerprint(tokenizer),
            family,
            settings,
            max_length,
            max_target_length,
        ),
        desc=f"tokenise {ds_cfg.task} prompts and answers",
    )
