"""Likelihood-based evaluation with lm-evaluation-harness (v0.4) conventions.

Numbers from here are meant to be comparable with lm-eval's, so its conventions are followed
exactly where it has one:

- `loglikelihood` (`continuation_loglikelihoods`): trailing spaces of the context move to the
  continuation; a causal continuation is `tokens(context + continuation)[len(tokens(context)):]`
  (so a merge across the boundary is scored as the continuation's); seq2seq models encode the
  context with the tokenizer's special tokens (T5 appends `</s>`) and the continuation without;
  an empty context becomes the prefix token (BOS, else EOS). The result is the summed log-prob
  of the continuation and whether every continuation token is the argmax prediction.
- `loglikelihood_rolling` (`document_loglikelihoods` with `stride=None`): disjoint windows of
  `max_length`, every token predicted exactly once, the first from the prefix token, each later
  window conditioning on the previous tokens up to `max_length`. Word and byte counts are
  lm-eval's wikitext counts; perplexities are corpus-level (`weighted_perplexity`).
- LAMBADA (openai) and HellaSwag: the task files' request construction, `acc` and `acc_norm`.

Everything is scored in batches sorted longest first (padding stays small, and an OOM shows at
the first batch), one forward per batch inside `inference_context(model)` (inference and eval
mode; no autocast of its own: the caller's precision applies), and returned in the caller's order.
Log-softmax is taken in fp32 only at the positions that are scored.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from monolm.data.tokenize import encode_requests, encode_texts, prefix_token_id
from monolm.inference import inference_context
from monolm.models.loading import max_positions

# A causal request: the model input and the tokens its last len(targets) positions predict.
Window = tuple[list[int], list[int]]


@dataclass(frozen=True)
class DocumentScore:
    """One document's summed log-likelihood and the units perplexities are normalised by."""

    loglikelihood: float
    tokens: int
    words: int
    bytes: int


# --------------------------------------------------------------------------------------------
# Tokenisation and lengths


def default_max_length(model: PreTrainedModel) -> int:
    """The longest input scored at once: the position limit, or 512 for T5's relative positions.

    lm-eval reads `n_positions`/`max_position_embeddings`/`n_ctx` from the config and falls back
    to the tokenizer's limit (512 for T5's tokenizers) or 2048.
    """
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return getattr(config, "n_positions", None) or 512
    limit = max_positions(config)
    for name in ("n_positions", "n_ctx"):
        limit = limit or getattr(config, name, None)
    return limit or 2048


# --------------------------------------------------------------------------------------------
# Batched scoring


def _batches(lengths: Sequence[tuple[int, int]], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches, longest first, so each batch pads to its first item's length.

    `lengths` are (padded length, second key): ties on the first are broken by the second, also
    descending (for causal windows, the number of scored positions, which groups the final
    windows of documents, that score few tokens, so their batches can skip most of the LM head).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i][0], -lengths[i][1]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _padded(rows: Sequence[list[int]], pad_id: int, device: torch.device) -> torch.Tensor:
    width = max(len(row) for row in rows)
    return torch.tensor([row + [pad_id] * (width - len(row)) for row in rows], device=device)


def _reduce(
    logits: torch.Tensor, positions: list[tuple[int, int]], targets: list[int], rows: int
) -> list[tuple[float, bool]]:
    """Per row: summed log-prob of its targets at its positions, and whether all are argmax.

    Only the scored positions are gathered and log-softmaxed (in fp32), and everything for the
    batch comes back to the host in one transfer.
    """
    row_index = torch.tensor([r for r, _ in positions], device=logits.device)
    col_index = torch.tensor([c for _, c in positions], device=logits.device)
    target = torch.tensor(targets, device=logits.device)
    picked = logits[row_index, col_index].float()
    token_logprob = picked.log_softmax(dim=-1).gather(1, target[:, None]).squeeze(1)
    misses = (picked.argmax(dim=-1) != target).double()
    totals = torch.zeros(rows, 2, dtype=torch.float64, device=logits.device)
    totals[:, 0].index_add_(0, row_index, token_logprob.double())
    totals[:, 1].index_add_(0, row_index, misses)
    return [(loglik, miss == 0) for loglik, miss in totals.tolist()]


def _accepts_logits_to_keep(model: PreTrainedModel) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def score_causal_windows(
    model: PreTrainedModel,
    windows: Sequence[Window],
    batch_size: int,
    pad_id: int,
) -> list[tuple[float, bool]]:
    """(summed log-prob, all greedy) of each window's targets, in the order given.

    A window's targets are what its last len(targets) input positions predict. Padding is on the
    right and no attention mask is passed: a causal model's real positions never see the padding
    after them, and the unmasked call keeps the fused causal attention kernel. Where the model
    takes `logits_to_keep`, the LM head runs only from the batch's first scored position on (the
    short continuations of LAMBADA/HellaSwag need a small fraction of the vocabulary projection).
    """
    for window_inputs, window_targets in windows:
        if not window_targets or len(window_targets) > len(window_inputs):
            raise ValueError(
                f"a window of {len(window_inputs)} inputs cannot score {len(window_targets)} tokens"
            )
    device = next(model.parameters()).device
    trim = _accepts_logits_to_keep(model)
    results: list[tuple[float, bool]] = [(0.0, True)] * len(windows)
    with inference_context(model):
        for batch in _batches([(len(i), len(t)) for i, t in windows], batch_size):
            inputs = [windows[i][0] for i in batch]
            ids = _padded(inputs, pad_id, device)
            first = min(len(windows[i][0]) - len(windows[i][1]) for i in batch) if trim else 0
            kwargs = {"logits_to_keep": ids.shape[1] - first} if trim else {}
            logits = model(input_ids=ids, **kwargs).logits
            positions, targets = [], []
            for row, i in enumerate(batch):
                inp, tgt = windows[i]
                start = len(inp) - len(tgt) - first
                positions += [(row, start + k) for k in range(len(tgt))]
                targets += tgt
            for i, result in zip(
                batch, _reduce(logits, positions, targets, len(batch)), strict=True
            ):
                results[i] = result
    return results


def _score_seq2seq(
    model: PreTrainedModel,
    encoded: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    pad_id: int,
) -> list[tuple[float, bool]]:
    """Encoder reads the context; the decoder is fed `decoder_start_token_id` + continuation[:-1].

    That is what HF's `labels=` shift-right (which lm-eval's seq2seq call relies on) builds, done
    here directly so no loss is computed. Decoder padding is on the right and unmasked (causal
    decoder); encoder padding is masked.
    """
    start_id = getattr(model.config, "decoder_start_token_id", None)
    if start_id is None:
        raise ValueError("the seq2seq model's config sets no decoder_start_token_id")
    device = next(model.parameters()).device
    results: list[tuple[float, bool]] = [(0.0, True)] * len(encoded)
    with inference_context(model):
        for batch in _batches([(len(c) + len(x), len(x)) for c, x in encoded], batch_size):
            contexts = [encoded[i][0] for i in batch]
            continuations = [encoded[i][1] for i in batch]
            input_ids = _padded(contexts, pad_id, device)
            mask = _padded([[1] * len(c) for c in contexts], 0, device)
            decoder_ids = _padded([[start_id, *x[:-1]] for x in continuations], pad_id, device)
            logits = model(
                input_ids=input_ids, attention_mask=mask, decoder_input_ids=decoder_ids
            ).logits
            positions = [(row, k) for row, x in enumerate(continuations) for k in range(len(x))]
            targets = [token for x in continuations for token in x]
            for i, result in zip(
                batch, _reduce(logits, positions, targets, len(batch)), strict=True
            ):
                results[i] = result
    return results


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    # The value never matters (padding is masked or after the scored positions): any valid id.
    return (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix_token_id(tokenizer)
    )


def continuation_loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[tuple[str, str]],
    batch_size: int,
    max_length: int | None = None,
) -> list[tuple[float, bool]]:
    """lm-eval `loglikelihood`: (summed log-prob, all tokens greedy) per (context, continuation).

    Causal: the input is `(context + continuation)[-(max_length + 1):][:-1]` (left-truncated to
    `max_length` tokens), and the last len(continuation) positions are scored. Seq2seq: the
    encoder reads the last `max_length` context tokens (with the tokenizer's `</s>`), the decoder
    starts from the model's `decoder_start_token_id` (T5: the pad id) and scores the
    continuation, which gets no special tokens. A continuation longer than `max_length` is an
    error, as in lm-eval. `max_length` defaults to `default_max_length(model)`.
    """
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    max_length = max_length or default_max_length(model)
    encoded = encode_requests(tokenizer, requests, seq2seq)
    for (_, continuation), (_, continuation_ids) in zip(requests, encoded, strict=True):
        if len(continuation_ids) > max_length:
            raise ValueError(
                f"continuation {continuation[:40]!r}... has {len(continuation_ids)} tokens, more "
                f"than max_length={max_length}"
            )
    if seq2seq:
        truncated = [(c[-max_length:], x) for c, x in encoded]
        return _score_seq2seq(model, truncated, batch_size, _pad_id(tokenizer))
    windows = [((c + x)[-(max_length + 1) :][:-1], x) for c, x in encoded]
    return score_causal_windows(model, windows, batch_size, _pad_id(tokenizer))


# --------------------------------------------------------------------------------------------
# Perplexity of documents


def strided_windows(
    token_ids: list[int], prefix_token: int, max_length: int, stride: int
) -> list[Window]:
    """Windows over `[prefix_token] + token_ids` that predict every token exactly once.

    Returns (input_ids, targets): the model reads `input_ids` (at most `max_length` tokens) and
    its last len(targets) positions predict `targets`. The first window predicts the first
    min(max_length, n) tokens, the first of them from the prefix token. Each later window ends
    `stride` input positions after the previous one and scores only those new predictions, with
    the `max_length - stride` tokens before them as context. The last window is right-aligned
    (full `max_length` context); Hugging Face's strided recipe instead starts it on the stride
    grid, which can give it less. With `stride == max_length` these are exactly lm-eval's
    disjoint rolling windows (`get_rolling_token_windows(context_len=1)` +
    `make_disjoint_window`).
    """
    if not 1 <= stride <= max_length:
        raise ValueError(f"stride={stride} must be between 1 and max_length={max_length}")
    sequence = [prefix_token, *token_ids]
    windows: list[Window] = []
    scored = 0  # predictions made so far: sequence[1 : scored + 1]
    while scored < len(token_ids):
        end = min(scored + stride if windows else max_length, len(token_ids))
        begin = max(0, end - max_length)
        windows.append((sequence[begin:end], sequence[scored + 1 : end + 1]))
        scored = end
    return windows


def rolling_windows(token_ids: list[int], prefix_token: int, max_length: int) -> list[Window]:
    """lm-eval's `loglikelihood_rolling` windows: disjoint, each token predicted exactly once.

    Returns (input_ids, targets) as `strided_windows` does: the first window is
    `[prefix] + tokens[:max_length - 1]` predicting `tokens[:max_length]`; each later one predicts
    the next `max_length` tokens (fewer at the end) from the `max_length` tokens before each
    prediction's window end, i.e. inputs `tokens[end - max_length - 1 : end - 1]`.
    """
    return strided_windows(token_ids, prefix_token, max_length, stride=max_length)


def count_words(text: str) -> int:
    """lm-eval's wikitext word count (an empty text counts as one word there too)."""
    return len(re.split(r"\s+", text))


def document_loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    stride: int | None = None,
) -> list[DocumentScore]:
    """Summed log-likelihood of each whole document, every token predicted exactly once.

    `stride=None` is lm-eval's rolling convention (disjoint windows of `max_length`); a stride
    `s` scores `s` new tokens per window with `max_length - s` tokens of extra context (see
    `strided_windows`; `s == max_length` is the rolling convention). The windows of all
    documents are scored together in length-sorted batches. Documents are tokenised with the
    tokenizer's defaults, as lm-eval's `tok_encode` does. Causal models only: lm-eval's
    encoder-decoder version feeds the window to the decoder behind a one-token encoder input,
    which is not a perplexity anyone compares.
    """
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError(
            "document perplexity is defined for causal models only; this model is "
            f"encoder-decoder ({model.config.model_type})"
        )
    if max_length < 1:
        raise ValueError(f"max_length={max_length} must be >= 1")
    prefix = prefix_token_id(tokenizer)
    documents = encode_texts(tokenizer, list(texts), special=True)
    owners, windows = [], []
    for index, token_ids in enumerate(documents):
        made = strided_windows(token_ids, prefix, max_length, stride or max_length)
        owners += [index] * len(made)
        windows += made
    scored = score_causal_windows(model, windows, batch_size, _pad_id(tokenizer))
    totals = [0.0] * len(documents)
    for owner, (loglikelihood, _) in zip(owners, scored, strict=True):
        totals[owner] += loglikelihood
    return [
        DocumentScore(total, len(token_ids), count_words(text), len(text.encode("utf-8")))
        for total, token_ids, text in zip(totals, documents, texts, strict=True)
    ]


def perplexities(scores: Sequence[DocumentScore]) -> dict[str, float]:
    """Corpus-level perplexities: total log-likelihood over total units (lm-eval's
    `weighted_perplexity` and `bits_per_byte`), not a mean of per-document perplexities.

    token_perplexity depends on the tokenizer; word/byte perplexity and bits_per_byte compare
    across tokenizers. The totals are returned too.
    """
    loglikelihood = sum(s.loglikelihood for s in scores)
    totals = {
        "tokens": sum(s.tokens for s in scores),
        "words": sum(s.words for s in scores),
        "bytes": sum(s.bytes for s in scores),
    }
    if not totals["tokens"]:
        raise ValueError("no tokens were scored: perplexity is undefined")
    return {
        "token_perplexity": math.exp(-loglikelihood / totals["tokens"]),
        "word_perplexity": math.exp(-loglikelihood / totals["words"]),
        "byte_perplexity": math.exp(-loglikelihood / totals["bytes"]),
        "bits_per_byte": -loglikelihood / totals["bytes"] / math.log(2),
        "loglikelihood": loglikelihood,
        **{key: float(value) for key, value in totals.items()},
    }


# --------------------------------------------------------------------------------------------
# LAMBADA (openai)


def lambada_request(text: str) -> tuple[str, str]:
    """lm-eval's lambada_openai split: context = words but the last joined by single spaces,
    continuation = " " + last word (the text is split on " ", not on any whitespace)."""
    words = text.split(" ")
    return " ".join(words[:-1]), " " + words[-1]


def lambada_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    batch_size: int,
    max_length: int | None = None,
) -> list[dict[str, Any]]:
    """Per text: the target word's summed log-likelihood, whether every target token is the
    greedy prediction (`is_greedy`, and `correct` as 0/1: LAMBADA's accuracy), and the target."""
    requests = [lambada_request(text) for text in texts]
    scored = continuation_loglikelihoods(model, tokenizer, requests, batch_size, max_length)
    return [
        {"loglikelihood": ll, "is_greedy": greedy, "correct": int(greedy), "target": target}
        for (_, target), (ll, greedy) in zip(requests, scored, strict=True)
    ]


def lambada_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """acc = mean over examples; perplexity = exp(-mean per-example target log-likelihood).

    That is lm-eval's `perplexity` aggregation for LAMBADA: a mean over examples of the summed
    log-likelihood of the whole target word (however many tokens), not a per-token perplexity.
    """
    if not rows:
        raise ValueError("no LAMBADA rows to aggregate")
    mean_ll = sum(row["loglikelihood"] for row in rows) / len(rows)
    accuracy = sum(row["correct"] for row in rows) / len(rows)
    return {"acc": accuracy, "perplexity": math.exp(-mean_ll)}


# --------------------------------------------------------------------------------------------
# HellaSwag


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's cleanup of WikiHow artefacts: " [title]" -> ". ", drop [bracketed] text, and
    collapse one level of double spaces (a single `replace`, as lm-eval does)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_query(example: dict[str, Any]) -> tuple[str, list[str], int]:
    """(query, endings, label) as lm-eval's hellaswag `process_docs` builds them.

    Endings are returned without the leading space; they are scored as " " + ending (lm-eval's
    default target delimiter), and acc_norm divides by len(ending) without it.
    """
    context = example["ctx_a"] + " " + example["ctx_b"].capitalize()
    query = hellaswag_preprocess(example["activity_label"] + ": " + context)
    endings = [hellaswag_preprocess(ending) for ending in example["endings"]]
    return query, endings, int(example["label"])


def _first_argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def hellaswag_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[dict[str, Any]],
    batch_size: int,
    max_length: int | None = None,
) -> list[dict[str, Any]]:
    """Per example: each ending's log-likelihood and character length, pred (argmax
    log-likelihood), pred_norm (argmax log-likelihood / len(ending)), acc and acc_norm (0/1).

    The length is that of the preprocessed ending without the delimiter space, as lm-eval's
    `completion_len = len(choice)`. Ties go to the first ending (numpy's argmax).
    """
    queries = [hellaswag_query(example) for example in examples]
    requests = [(query, " " + ending) for query, endings, _ in queries for ending in endings]
    scored = iter(continuation_loglikelihoods(model, tokenizer, requests, batch_size, max_length))
    rows = []
    for _, endings, label in queries:
        loglikelihoods = [next(scored)[0] for _ in endings]
        lengths = [len(ending) for ending in endings]
        pred = _first_argmax(loglikelihoods)
        # An empty ending can never win on a per-character score (numpy gives -inf too).
        normalised = [
            ll / length if length else -math.inf
            for ll, length in zip(loglikelihoods, lengths, strict=True)
        ]
        pred_norm = _first_argmax(normalised)
        rows.append(
            {
                "loglikelihoods": loglikelihoods,
                "lengths": lengths,
                "pred": pred,
                "pred_norm": pred_norm,
                "acc": int(pred == label),
                "acc_norm": int(pred_norm == label),
                "label": label,
            }
        )
    return rows


def hellaswag_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """acc and acc_norm, means over examples."""
    if not rows:
        raise ValueError("no HellaSwag rows to aggregate")
    return {key: sum(row[key] for row in rows) / len(rows) for key in ("acc", "acc_norm")}
