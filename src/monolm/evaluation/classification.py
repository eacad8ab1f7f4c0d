"""Classification as text (GLUE): each verbalised label scored after the prompt, the most likely
one predicted, as lm-evaluation-harness's multiple-choice tasks do.

Per example: the choices' log-likelihoods (`continuation_loglikelihoods`: lm-eval's
`loglikelihood`, the prompt as context, `continuation(choice)` as continuation), the argmax (the
first choice on a tie), and `correct`. Metrics: accuracy with the usual bootstrap CI and, for a
dataset with `positive_label` (MRPC), F1 of that class with a percentile bootstrap that
recomputes F1 on every resample (F1 is a ratio of counts, not a mean of per-example values).
Baselines (`evaluation/baselines.py`) predict without a model and are scored by the same rows
and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monolm.data.prompts import choices, continuation, gold_label, prompt_text
from monolm.evaluation.tasks import (
    PlannedTask,
    TaskContext,
    TaskResult,
    bootstrap_interval,
    example_ids,
    scored_in_chunks,
    task_rows,
)
from monolm.metrics.classification import positive_f1

_RESAMPLE_CELLS = 1 << 21  # index cells drawn at once (rows x n int64: ~16 MB)


def first_argmax(values: Sequence[float]) -> int:
    """The index of the largest value, the first on a tie (numpy's argmax, as lm-eval)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def resampled_positive_f1(
    predictions: Sequence[int], labels: Sequence[int], positive: int, resamples: int, seed: int
) -> np.ndarray:
    """F1 of the `positive` class on each of `resamples` resamples of the examples.

    Resample r draws n example indices with replacement from `numpy.random.default_rng(seed)`,
    in chunks of whole resamples (one `integers(0, n, size=(rows, n))` per chunk, as
    `bootstrap_ci` draws its indices). F1 = 2 TP / (2 TP + FP + FN) = sum(2 [tp]) / sum([predicted
    positive] + [labelled positive]) over the drawn examples; 0 when the resample has neither
    (scikit-learn's zero_division=0, as `metrics.classification.positive_f1`).
    """
    predicted = np.asarray(predictions) == positive
    labelled = np.asarray(labels) == positive
    numerator = 2.0 * (predicted & labelled)
    denominator = predicted.astype(np.float64) + labelled
    n = len(numerator)
    rng = np.random.default_rng(seed)
    rows = max(1, _RESAMPLE_CELLS // n)
    values = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        indices = rng.integers(0, n, size=(stop - start, n))
        top, bottom = numerator[indices].sum(axis=1), denominator[indices].sum(axis=1)
        values[start:stop] = np.divide(top, bottom, out=np.zeros_like(top), where=bottom > 0)
    return values


def positive_f1_ci(
    predictions: Sequence[int], labels: Sequence[int], positive: int, settings: Any
) -> dict[str, float]:
    """The official F1 of the positive class and its percentile bootstrap interval (the same
    resamples, confidence and seed as every other metric's)."""
    resampled = resampled_positive_f1(
        predictions, labels, positive, settings.resamples, settings.seed
    )
    tail = (1.0 - settings.confidence) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return {
        "mean": positive_f1(predictions, labels, positive),
        "low": float(low),
        "high": float(high),
        "n": len(labels),
        "resamples": settings.resamples,
        "confidence": settings.confidence,
    }


def classification_rows(
    ids: Sequence[Any],
    prompts: Sequence[str],
    labels: Sequence[int],
    predictions: Sequence[int],
    names: Sequence[str],
    loglikelihoods: Sequence[Sequence[float]] | None = None,
) -> list[dict[str, Any]]:
    """One row per example: id, input, reference (the gold choice), label, prediction (a label
    id) and its choice, the choices' log-likelihoods (when a model scored them), correct (0/1)."""
    rows = []
    for index, (ident, prompt, label, prediction) in enumerate(
        zip(ids, prompts, labels, predictions, strict=True)
    ):
        row = {
            "id": ident,
            "input": prompt,
            "reference": names[label],
            "label": label,
            "prediction": prediction,
            "predicted_choice": names[prediction],
        }
        if loglikelihoods is not None:
            row["loglikelihoods"] = list(loglikelihoods[index])
        row["correct"] = int(prediction == label)
        rows.append(row)
    return rows


def classification_result(
    task: PlannedTask, rows: list[dict[str, Any]], settings: Any, how: str
) -> TaskResult:
    """acc (and F1 of `dataset.positive_label`) from the rows, with the conventions stated;
    `how` says how the predictions were made."""
    ds = task.dataset
    labels = [row["label"] for row in rows]
    predictions = [row["prediction"] for row in rows]
    metrics = {"acc": bootstrap_interval([row["correct"] for row in rows], settings)}
    conventions = {
        "prediction": how,
        "acc": "share of examples whose prediction is the gold label",
        "choices": list(choices(ds)),
        "split": task.split,
        "examples": "the split's first max_examples rows"
        if task.max_examples is not None
        else "the whole split",
    }
    if ds.positive_label is not None:
        positive = int(ds.positive_label)
        metrics["f1"] = positive_f1_ci(predictions, labels, positive, settings)
        conventions["f1"] = (
            f"F1 of label {positive} ('{choices(ds)[positive]}'): 2 TP / (2 TP + FP + FN), 0 "
            "without any positive prediction or label (GLUE's scorer, scikit-learn's "
            "zero_division=0); its interval is a percentile bootstrap that recomputes F1 on "
            "each resample of the examples"
        )
    return TaskResult(metrics, rows, {"conventions": conventions})


@dataclass(frozen=True)
class ClassificationExamples:
    """The evaluated rows of a classification task as the model reads them."""

    ids: list[Any]
    prompts: list[str]
    labels: list[int]
    names: list[str]  # the verbalised labels, index = label id


def classification_examples(task: PlannedTask, seed: int) -> ClassificationExamples:
    ds = task.dataset
    data = task_rows(task, seed)
    examples = [dict(row) for row in data]
    return ClassificationExamples(
        example_ids(data),
        [prompt_text(ds, row) for row in examples],
        [gold_label(ds, row) for row in examples],
        choices(ds),
    )


def run_classification(task: PlannedTask, ctx: TaskContext, progress: Any) -> TaskResult:
    from monolm.metrics.likelihood import continuation_loglikelihoods

    found = classification_examples(task, ctx.subject.seed)
    count = len(found.names)
    continuations = [continuation(task.dataset, name, ctx.subject.family) for name in found.names]
    requests = [(prompt, text) for prompt in found.prompts for text in continuations]
    with ctx.inference():
        scored = scored_in_chunks(
            lambda part: continuation_loglikelihoods(
                ctx.subject.model, ctx.subject.tokenizer, part, ctx.batch_size
            ),
            requests,
            512,
            progress,
            f"{task.name}: scoring",
        )
    per_choice = [
        [loglikelihood for loglikelihood, _ in scored[i * count : (i + 1) * count]]
        for i in range(len(found.prompts))
    ]
    predictions = [first_argmax(values) for values in per_choice]
    rows = classification_rows(
        found.ids, found.prompts, found.labels, predictions, found.names, per_choice
    )
    how = (
        "argmax over the choices of the log-likelihood of continuation(choice) after the prompt "
        "(lm-eval loglikelihood, the context left-truncated to the model's length; the first "
        f"choice on a tie); continuations scored: {continuations}"
    )
    return classification_result(task, rows, ctx.bootstrap, how)
