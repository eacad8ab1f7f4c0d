"""One metric of one run, reduced from per-example values, on all examples or on a resample.

A study stores, for one metric and one arm, a float array `[S seeds, N examples]`: every run
scores the same N examples in the same order, and NaN marks an example that is invalid or skipped
in that run (e.g. an attack skipped because the clean score is under a floor).

Every statistic is a *ratio of totals* over the run's valid examples, then a transform:

- `mean`: sum(values) / count: the mean over valid examples;
- `rate`: values are 1 (success) or 0 (failure): successes / (successes + failures);
- `exp_mean`: exp(sum(values) / sum(weights)): perplexity when values are each example's summed
  NLL and weights its token count.

With `weights`, the denominator is sum(weights) for every statistic (values are then per-example
totals: summed NLL, successes out of `weights` trials, a score summed over `weights` units);
without, each valid example weighs 1. Non-linear metrics are never averaged from per-example
ratios: a resample recomputes the totals from the drawn examples, then the ratio.

Resampling examples with replacement is done through counts: drawing N indices and summing the
drawn values is `counts @ values`, where counts[i] is how often example i was drawn. One matrix
product then scores every run of a chunk of resamples at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monolm.errors import did_you_mean

STATISTICS = ("mean", "rate", "exp_mean")

ArrayLike = Sequence[float] | Sequence[Sequence[float]] | np.ndarray


def check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise ValueError(
            f"unknown statistic '{statistic}': {did_you_mean(str(statistic), STATISTICS)}"
        )


def as_runs(values: ArrayLike, name: str) -> np.ndarray:
    """A `[S seeds, N examples]` float array; NaN (invalid example) allowed, infinities not."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be two-dimensional [seeds, examples], got shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} has shape {array.shape}: it needs at least one seed and example")
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite values (mark an invalid example with NaN)")
    return array


def check_same_shape(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} has shape {a.shape} and {names[1]} has shape {b.shape}: paired arms need "
            "the same seeds and the same examples in the same order"
        )


@dataclass(frozen=True)
class RunTotals:
    """Per-example numerators and denominators of one arm's runs, zero where an example is invalid.

    `counts @ numerators[s]` and `counts @ denominators[s]` are run s's totals over a resample
    with those example counts, so invalid examples drop out of every resample by themselves.
    """

    statistic: str
    valid: np.ndarray
    numerators: np.ndarray
    denominators: np.ndarray

    def observed(self) -> np.ndarray:
        """The statistic of every run on all its valid examples, shape `[S]`."""
        return finish(self.statistic, self.numerators.sum(axis=1), self.denominators.sum(axis=1))

    def resampled(self, counts: np.ndarray) -> np.ndarray:
        """The statistic of every run on each resample, shape `[resamples, S]`.

        `counts[r, i]`: how often example i was drawn in resample r. A run none of whose valid
        examples was drawn gives NaN (its statistic is undefined on that resample).
        """
        return finish(self.statistic, counts @ self.numerators.T, counts @ self.denominators.T)

    def part(self, run: int, examples: np.ndarray) -> RunTotals:
        """Run `run` alone, on the examples `examples` selects (a boolean mask)."""
        return RunTotals(
            self.statistic,
            self.valid[run : run + 1, examples],
            self.numerators[run : run + 1, examples],
            self.denominators[run : run + 1, examples],
        )


def run_totals(
    values: np.ndarray, weights: ArrayLike | None, statistic: str, name: str
) -> RunTotals:
    """Checked totals of one arm: `values` from `as_runs`, `weights` None or the same shape.

    Raises ValueError for an unknown statistic, weights of another shape or negative where the
    value is valid, rate values that are not successes, or a run with no valid example.
    """
    check_statistic(statistic)
    valid = ~np.isnan(values)
    if weights is None:
        denominators = valid.astype(np.float64)
    else:
        denominators = _checked_weights(weights, values.shape, valid, name)
    if statistic == "rate":
        _check_rate_values(values[valid], denominators[valid], weights is not None, name)
    totals = RunTotals(statistic, valid, np.where(valid, values, 0.0), denominators)
    empty = np.flatnonzero(totals.denominators.sum(axis=1) <= 0)
    if empty.size:
        raise ValueError(
            f"{name}: run(s) {empty.tolist()} have no valid example with positive weight; each run "
            "needs at least one"
        )
    return totals


def _checked_weights(
    weights: ArrayLike, shape: tuple[int, ...], valid: np.ndarray, name: str
) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(
            f"weights of {name} have shape {array.shape}, its values have {shape}: they must match"
        )
    used = array[valid]
    bad = ~np.isfinite(used) | (used < 0)
    if bad.any():
        raise ValueError(
            f"weights of {name} must be finite and >= 0 where the value is valid, "
            f"got {used[bad][0]}"
        )
    return np.where(valid, array, 0.0)


def _check_rate_values(used: np.ndarray, trials: np.ndarray, weighted: bool, name: str) -> None:
    """A rate counts successes: 0 or 1 per example, or 0..weight successes out of weight trials."""
    if not weighted:
        bad, allowed = (used != 0) & (used != 1), "0 or 1"
    else:
        bad, allowed = (used < 0) | (used > trials), "between 0 and its weight"
    if bad.any():
        raise ValueError(
            f"{name}: statistic 'rate' needs each valid value {allowed} (NaN = skipped), got "
            f"{used[bad][0]}"
        )


def finish(statistic: str, numerators: np.ndarray, denominators: np.ndarray) -> np.ndarray:
    """The statistic from totals; a zero denominator gives NaN (undefined), never a warning."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(denominators > 0, numerators / denominators, np.nan)
    if statistic == "exp_mean":
        with np.errstate(over="ignore"):
            return np.exp(ratio)
    return ratio


def example_counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """`[rows, n]` draw counts: each row is n example indices drawn with replacement."""
    indices = rng.integers(0, n, size=(rows, n))
    indices += (np.arange(rows) * n)[:, None]
    return np.bincount(indices.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
