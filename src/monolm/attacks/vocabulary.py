"""Which embedding rows an attack may put into an input.

An embedding matrix has rows that are not real text: special tokens (pad, eos, unk, T5's
`<extra_id_*>` sentinels), rows past the tokenizer's vocabulary (T5: 32128 rows for 32100 tokens;
Pythia: 50304 rows for about 50277 tokens) and tokens that do not survive a decode/encode round
trip. An attack that uses them produces an input no one could type, so they are never candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class CandidateVocabulary:
    """A boolean mask over embedding rows, with why the excluded rows are out."""

    mask: torch.Tensor  # [rows] bool: True = may be inserted
    excluded: dict[str, int]  # reason -> number of rows

    @property
    def ids(self) -> torch.Tensor:
        return self.mask.nonzero().squeeze(1)

    def summary(self) -> dict[str, int]:
        return {
            "rows": int(self.mask.numel()),
            "candidates": int(self.mask.sum()),
            **{f"excluded_{k}": v for k, v in self.excluded.items()},
        }


def special_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every special token id, sentinels and added special tokens included."""
    ids = set(tokenizer.all_special_ids)
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if added.special:
            ids.add(int(token_id))
    return ids


def round_trip_failures(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> set[int]:
    """Ids whose lone decode does not encode back to exactly that id."""
    texts = tokenizer.batch_decode([[i] for i in token_ids], clean_up_tokenization_spaces=False)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return {i for i, ids in zip(token_ids, encoded, strict=True) if ids != [i]}


def candidate_vocabulary(tokenizer: PreTrainedTokenizerBase, rows: int) -> CandidateVocabulary:
    """The rows of an embedding matrix with `rows` rows that an attack may use."""
    mask = torch.zeros(rows, dtype=torch.bool)
    in_vocab = min(rows, len(tokenizer))
    mask[:in_vocab] = True
    special = {i for i in special_ids(tokenizer) if i < in_vocab}
    mask[sorted(special)] = False
    remaining = mask.nonzero().squeeze(1).tolist()
    failures = round_trip_failures(tokenizer, remaining)
    mask[sorted(failures)] = False
    excluded = {
        "padded_rows": rows - in_vocab,
        "special": len(special),
        "no_round_trip": len(failures),
    }
    return CandidateVocabulary(mask, excluded)
