"""Percentile bootstrap intervals for a mean, and the paired bootstrap for comparing two arms.

Conventions (docs/science.md, sections 3 and 5): 1000 resamples, a 95% percentile interval, and
a seeded `numpy.random.default_rng`, so the same values and seed give the same interval on any
machine.
Two arms scored on the same examples are compared with a *paired* bootstrap: resampling examples,
not each arm's scores separately, keeps the per-example pairing and cancels the (large) variation
between examples that both arms share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Index cells drawn per chunk: (rows x n) int64 indices plus the gathered floats stay ~32 MB.
_CHUNK_CELLS = 1 << 21


def finite_vector(
    values: Sequence[float] | np.ndarray, name: str = "values", unit: str = "value"
) -> np.ndarray:
    """`values` as a one-dimensional float64 array of finite numbers, at least one (one per
    `unit`), or a ValueError naming `name` and what is wrong."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one per {unit}), got {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: it needs at least one {unit}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values: {array.tolist()[:10]}")
    return array


def _check_settings(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of `resamples` resamples (with replacement, same size) of `values`.

    Indices are drawn in chunks of rows so memory stays bounded for large n; the chunk size
    depends only on n, so the result depends only on (values, resamples, seed).
    """
    rng = np.random.default_rng(seed)
    n = values.size
    rows = max(1, _CHUNK_CELLS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def _percentile_interval(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Percentile bootstrap interval for the mean of `values`.

    `mean` is the sample mean; `low`/`high` are the (1 - confidence)/2 and (1 + confidence)/2
    quantiles of the resampled means. One value gives a degenerate interval (low == high == mean).
    """
    _check_settings(resamples, confidence)
    array = finite_vector(values)
    low, high = _percentile_interval(resampled_means(array, resamples, seed), confidence)
    return {
        "mean": float(array.mean()),
        "low": low,
        "high": high,
        "n": array.size,
        "resamples": resamples,
        "confidence": confidence,
    }


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Paired bootstrap of the mean difference a - b; a[i] and b[i] score the same example.

    Each resample draws the same example indices for both arms, which is the same as resampling
    the per-example differences a[i] - b[i]: that is how it is computed.

    `p_value_two_sided`: the fraction of resampled mean differences on the other side of 0 from
    the observed one (0 itself counts as the other side), doubled and capped at 1; an observed
    difference of exactly 0 gives 1. It is a resampling estimate: 0 means no resample crossed 0,
    i.e. p below about 2 / resamples, not p = 0.
    """
    _check_settings(resamples, confidence)
    first, second = finite_vector(a, "a"), finite_vector(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"a has {first.size} values and b has {second.size}: a paired bootstrap needs the "
            "same examples in both"
        )
    differences = first - second
    observed = float(differences.mean())
    means = resampled_means(differences, resamples, seed)
    low, high = _percentile_interval(means, confidence)
    if observed > 0:
        other_side = float(np.mean(means <= 0))
    elif observed < 0:
        other_side = float(np.mean(means >= 0))
    else:
        other_side = 1.0
    return {
        "mean_difference": observed,
        "low": low,
        "high": high,
        "n": differences.size,
        "resamples": resamples,
        "confidence": confidence,
        "p_value_two_sided": min(1.0, 2.0 * other_side),
    }
