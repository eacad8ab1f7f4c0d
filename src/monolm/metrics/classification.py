"""GLUE's classification metrics as the benchmark defines them: accuracy for SST-2 and RTE,
accuracy and F1 of the positive class (label 1, "equivalent") for MRPC. F1 is
2 TP / (2 TP + FP + FN); with no positive prediction and no positive label it is 0 (scikit-
learn's `zero_division=0`, which GLUE's scorer inherits)."""

from __future__ import annotations

from collections.abc import Sequence


def _checked(predictions: Sequence[int], labels: Sequence[int]) -> None:
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("no examples to score")


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    _checked(predictions, labels)
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def positive_f1(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the `positive` class."""
    _checked(predictions, labels)
    pairs = list(zip(predictions, labels, strict=True))
    tp = sum(p == positive and y == positive for p, y in pairs)
    fp = sum(p == positive and y != positive for p, y in pairs)
    fn = sum(p != positive and y == positive for p, y in pairs)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def majority_label(labels: Sequence[int]) -> int:
    """The most frequent label (the smallest on a tie): the majority-class baseline's answer,
    taken from the training labels."""
    if not labels:
        raise ValueError("no labels")
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return min(counts, key=lambda label: (-counts[label], label))
