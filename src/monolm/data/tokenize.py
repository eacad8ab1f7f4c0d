"""Tokenisation, cached by `datasets` under a fingerprint of everything that shapes the result.

Causal LM: every document gets EOS appended, documents are concatenated and cut into blocks of
exactly `block_size` tokens (the tail of each 1000-document group that does not fill a block is
dropped, as in Hugging Face's run_clm). Seq2seq: `source_prefix + source` truncated to
`max_length`, target truncated to `max_target_length`; padding happens per batch in the collator.
"""

from __future__ import annotations

import hashlib
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

PACK_GROUP = 1000  # documents concatenated per map batch before cutting blocks


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
