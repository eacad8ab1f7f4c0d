"""Attack examples as token-id segments, and the one function that packs them into model inputs.

An example is `prefix + body + suffix` (what the model reads) and a `target` (what its loss is
measured on). The prefix (T5's task prefix "summarize: ", a BOS token) and the suffix (T5's
`</s>`, a causal model's "TL;DR:" prompt) are never attacked; the body is. `pack` truncates the
body to fit the model's input budget and inserts a trigger at a fixed place *after* truncation,
so a trigger can never be truncated away; it asserts the trigger is in every packed input.

Seq2seq: target = the reference summary as the model was trained on it; the clean packed input is
exactly what the tokenizer produces with truncation (a test checks this). Causal LM: the input is
a document's context and the target its next `continuation_tokens` tokens (or, for summarisation
data, the article + prompt and the reference summary); the target follows the input directly and
only the target's tokens are scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from monolm.errors import UserError

POSITIONS = ("start", "end")  # trigger right after the prefix, or right before the suffix
# The attack.py keys that pick and cut the attacked examples, beside the dataset and the split.
SELECTION_KEYS = (
    "max_examples",
    "context_tokens",
    "continuation_tokens",
    "min_context_tokens",
    "generation.causal_prompt_suffix",
)


def example_selection(cfg: DictConfig) -> dict[str, Any]:
    """The `SELECTION_KEYS` of an attack config: a control matched to an attack (and the
    attack.json it reads them back from) must have the same."""
    return {key: OmegaConf.select(cfg, key) for key in SELECTION_KEYS}


@dataclass(frozen=True)
class ExampleSettings:
    """How attack.py cuts examples from causal LM documents and prompts causal summarisers."""

    context_tokens: int = 128  # causal LM data: context read before the continuation
    continuation_tokens: int = 32  # causal LM data: the tokens whose NLL is attacked
    min_context_tokens: int = 16  # shorter documents are left out (counted)
    causal_prompt_suffix: str = "\nTL;DR:"  # causal models summarise what follows the article

    @classmethod
    def of(cls, cfg: Any) -> ExampleSettings:
        """From an attack config (top-level keys and `generation.causal_prompt_suffix`)."""
        return cls(
            int(cfg.context_tokens),
            int(cfg.continuation_tokens),
            int(cfg.min_context_tokens),
            str(cfg.generation.causal_prompt_suffix),
        )


@dataclass(frozen=True)
class AttackExample:
    id: Any
    prefix: tuple[int, ...]
    body: tuple[int, ...]  # untruncated
    suffix: tuple[int, ...]
    target: tuple[int, ...]
    reference: str
    max_input_tokens: int  # prefix + trigger + kept body + suffix fit in this
    keep: str  # "head" or "tail": which end of the body truncation keeps


@dataclass(frozen=True)
class Packed:
    """A model input: ids, the positions an attack may change, where the trigger sits."""

    ids: tuple[int, ...]
    body: range  # positions of the (kept) body
    trigger: range  # positions of the trigger (empty without one)


def pack(example: AttackExample, trigger: Sequence[int] = (), position: str = "start") -> Packed:
    """`prefix + [trigger] + body + [trigger] + suffix` with the body cut to fit."""
    if position not in POSITIONS:
        raise ValueError(f"position={position!r}: one of {POSITIONS}")
    trigger = tuple(trigger)
    room = example.max_input_tokens - len(example.prefix) - len(example.suffix) - len(trigger)
    if room < 1:
        raise UserError(
            f"example {example.id!r}: a {len(trigger)}-token trigger leaves no room for text in "
            f"{example.max_input_tokens} input tokens"
        )
    body = example.body[:room] if example.keep == "head" else example.body[-room:]
    start = len(example.prefix)
    if position == "start":
        ids = example.prefix + trigger + body + example.suffix
        span = range(start, start + len(trigger))
        body_span = range(span.stop, span.stop + len(body))
    else:
        ids = example.prefix + body + trigger + example.suffix
        body_span = range(start, start + len(body))
        span = range(body_span.stop, body_span.stop + len(trigger))
    if ids[span.start : span.stop] != trigger or len(ids) > example.max_input_tokens:
        raise AssertionError(f"example {example.id!r}: the trigger is not in the packed input")
    return Packed(ids, body_span, span)


def _split_specials(
    tokenizer: PreTrainedTokenizerBase, text: str
) -> tuple[list[int], list[int], list[int]]:
    """(leading special ids, plain ids, trailing special ids) the tokenizer gives `text`."""
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tokenizer(text)["input_ids"]
    for offset in range(len(full) - len(plain) + 1):
        if full[offset : offset + len(plain)] == plain:
            return full[:offset], plain, full[offset + len(plain) :]
    raise ValueError("the tokenizer's special tokens are not a prefix/suffix of the plain ids")


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def seq2seq_example(
    tokenizer: PreTrainedTokenizerBase,
    example_id: Any,
    source: str,
    reference: str,
    source_prefix: str,
    max_length: int,
    max_target_length: int,
) -> AttackExample:
    """The input exactly as training tokenised it, split into task prefix, body and `</s>`."""
    lead, plain, trail = _split_specials(tokenizer, source_prefix + source)
    prefix_ids = tokenizer(source_prefix, add_special_tokens=False)["input_ids"]
    n = _common_prefix(prefix_ids, plain) if source_prefix else 0
    target = tokenizer(text_target=reference, max_length=max_target_length, truncation=True)
    return AttackExample(
        id=example_id,
        prefix=tuple(lead + plain[:n]),
        body=tuple(plain[n:]),
        suffix=tuple(trail),
        target=tuple(target["input_ids"]),
        reference=reference,
        max_input_tokens=max_length,
        keep="head",
    )


def causal_lm_example(
    tokenizer: PreTrainedTokenizerBase,
    example_id: Any,
    text: str,
    context_tokens: int,
    continuation_tokens: int,
    min_context_tokens: int,
    max_length: int,
) -> AttackExample | None:
    """A document's first `context_tokens` tokens (fewer if short) and the continuation that
    follows them, within `max_length` tokens in all; None if too short for `min_context_tokens`."""
    lead, plain, _ = _split_specials(tokenizer, text)
    budget = max_length - continuation_tokens
    cut = min(context_tokens, len(plain) - continuation_tokens, budget - len(lead))
    if cut < min_context_tokens:
        return None
    continuation = plain[cut : cut + continuation_tokens]
    return AttackExample(
        id=example_id,
        prefix=tuple(lead),
        body=tuple(plain[:cut]),
        suffix=(),
        target=tuple(continuation),
        reference=tokenizer.decode(continuation),
        max_input_tokens=budget,
        keep="tail",
    )


def causal_summary_example(
    tokenizer: PreTrainedTokenizerBase,
    example_id: Any,
    source: str,
    reference: str,
    prompt_suffix: str,
    max_length: int,
    max_target_length: int,
) -> AttackExample:
    """Article + prompt ("TL;DR:") as the input, the reference summary as the continuation."""
    lead, plain, _ = _split_specials(tokenizer, source)
    suffix = tokenizer(prompt_suffix, add_special_tokens=False)["input_ids"]
    target = tokenizer(" " + reference.strip(), add_special_tokens=False)["input_ids"]
    target = target[:max_target_length]
    return AttackExample(
        id=example_id,
        prefix=tuple(lead),
        body=tuple(plain),
        suffix=tuple(suffix),
        target=tuple(target),
        reference=reference,
        max_input_tokens=max_length - len(target),
        keep="head",
    )


def build_examples(
    rows: Any, dataset: Any, tokenizer: Any, family: str, settings: ExampleSettings
) -> tuple[list[AttackExample], int]:
    """Attack examples from raw rows, and how many rows were left out (too short)."""
    ids = list(rows["id"]) if "id" in rows.column_names else list(range(len(rows)))
    needed = (
        [dataset.text_field]
        if dataset.task == "language_modeling"
        else [dataset.source_field, dataset.target_field]
    )
    missing = [f for f in needed if f not in rows.column_names]
    if missing:
        raise UserError(
            f"dataset '{dataset.name}' has no field {missing[0]!r}; its fields: {rows.column_names}"
        )
    examples: list[AttackExample] = []
    left_out = 0
    for example_id, row in zip(ids, rows, strict=True):
        if family == "seq2seq":
            examples.append(
                seq2seq_example(
                    tokenizer,
                    example_id,
                    row[dataset.source_field],
                    row[dataset.target_field],
                    dataset.source_prefix,
                    dataset.max_length,
                    dataset.max_target_length,
                )
            )
        elif dataset.task == "language_modeling":
            example = causal_lm_example(
                tokenizer,
                example_id,
                row[dataset.text_field],
                settings.context_tokens,
                settings.continuation_tokens,
                settings.min_context_tokens,
                dataset.max_length,
            )
            left_out += example is None
            if example is not None:
                examples.append(example)
        else:
            examples.append(
                causal_summary_example(
                    tokenizer,
                    example_id,
                    dataset.source_prefix + row[dataset.source_field],
                    row[dataset.target_field],
                    settings.causal_prompt_suffix,
                    dataset.max_length,
                    dataset.max_target_length,
                )
            )
    if not examples:
        raise UserError(
            f"no example of '{dataset.name}' is long enough: documents need at least "
            f"min_context_tokens + continuation_tokens = "
            f"{settings.min_context_tokens + settings.continuation_tokens} tokens"
        )
    return examples, left_out
