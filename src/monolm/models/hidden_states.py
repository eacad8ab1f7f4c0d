"""Per-layer representations of a model on a list of texts: what CKA compares (issue 16).

The representation of a layer is the residual stream after that block, as Hugging Face returns
it with `output_hidden_states=True` (the embeddings' entry is left out; the last entry is after
the final norm for GPT-NeoX, Llama and the T5 stacks, as Hugging Face computes it). A T5 has an
encoder stack and, when targets are given, a decoder stack read with teacher forcing; their
layers are named `encoder.<i>` and `decoder.<i>`, a causal model's `layer.<i>`.

Pooling: `mean` averages each sequence's non-padding positions (one row per text); `tokens`
keeps every non-padding position (one row per token, in text order). Rows come back in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

POOLINGS = ("mean", "tokens")


def _pooled(states: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    mask = mask.to(states.dtype)
    if pooling == "mean":
        return (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return states[mask.bool()]


def layer_states(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int,
    max_length: int,
    pooling: str = "mean",
    targets: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Layer name -> (rows x hidden) float64 array over `texts` (see the module docstring)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling '{pooling}': one of {', '.join(POOLINGS)}")
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        encoded = tokenizer(
            batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if seq2seq:
            found = _seq2seq_states(model, tokenizer, inputs, targets, start, batch_size,
                                    max_length, pooling)  # fmt: skip
        else:
            with torch.no_grad():
                hidden = model(**inputs, output_hidden_states=True).hidden_states[1:]
            found = {
                f"layer.{i}": _pooled(h.double(), inputs["attention_mask"], pooling)
                for i, h in enumerate(hidden)
            }
        for name, rows in found.items():
            parts.setdefault(name, []).append(rows.cpu())
    return {name: torch.cat(rows).numpy() for name, rows in parts.items()}


def _seq2seq_states(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    inputs: dict[str, torch.Tensor],
    targets: Sequence[str] | None,
    start: int,
    batch_size: int,
    max_length: int,
    pooling: str,
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        encoder = model.get_encoder()(**inputs, output_hidden_states=True).hidden_states[1:]
    found = {
        f"encoder.{i}": _pooled(h.double(), inputs["attention_mask"], pooling)
        for i, h in enumerate(encoder)
    }
    if targets is None:
        return found
    labels = tokenizer(
        text_target=list(targets[start : start + batch_size]),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    ).to(inputs["input_ids"].device)
    decoder_mask = labels["attention_mask"]
    with torch.no_grad():
        out = model(
            **inputs,
            decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels["input_ids"]),
            decoder_attention_mask=decoder_mask,
            output_hidden_states=True,
        )
    for i, h in enumerate(out.decoder_hidden_states[1:]):
        found[f"decoder.{i}"] = _pooled(h.double(), decoder_mask, pooling)
    return found


def example_of_rows(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    pooling: str = "mean",
    as_targets: bool = False,
) -> np.ndarray:
    """The text each row of `layer_states` comes from (its index in `texts`), tokenised as
    `layer_states` does: one row per text when pooled, one per kept token otherwise.
    `as_targets`: the texts are a T5 decoder's targets."""
    if pooling == "mean":
        return np.arange(len(texts))
    key = "text_target" if as_targets else "text"
    lengths = [
        len(tokenizer(**{key: text}, truncation=True, max_length=max_length)["input_ids"])
        for text in texts
    ]
    return np.repeat(np.arange(len(texts)), lengths)
