"""Tests within one seed (A vs B on the same examples), and corrections for many comparisons.

Within a seed the two arms' trained models are fixed: these tests are evidence about those
artefacts, not about the training procedure (for that, see `across_seeds`). Only examples valid
in both arms are paired (NaN marks an invalid example); every result says how many were dropped.

- `wilcoxon_signed_rank`: continuous per-example scores. scipy's default drops zero differences
  (which shrinks n and biases towards a difference); `zero_method="pratt"` ranks them and then
  drops them, the recommended handling of ties at zero.
- `exact_mcnemar`: binary outcomes (1 success, 0 failure). Only discordant examples carry
  information; under the null each is equally likely either way, so the exact test is a
  two-sided binomial test of b successes-for-A-only among b + c discordant examples.
- `holm` (primary family, controls the family-wise error) and `benjamini_hochberg` (q-values,
  false discovery rate, for the rest), written out here: statsmodels' `multipletests` defaults to
  Holm-Sidak, an easy slip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def _paired(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The examples valid in both arms, and counts of what was dropped."""
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for name, array in (("a", first), ("b", second)):
        if array.ndim != 1:
            raise ValueError(
                f"{name} must be one-dimensional (one seed's per-example values), got shape "
                f"{array.shape}"
            )
        if np.isinf(array).any():
            raise ValueError(f"{name} contains infinite values (mark an invalid example with NaN)")
    if first.shape != second.shape:
        raise ValueError(
            f"a has {first.size} examples and b has {second.size}: paired tests need the same "
            "examples in the same order"
        )
    valid_a, valid_b = ~np.isnan(first), ~np.isnan(second)
    both = valid_a & valid_b
    n_paired = int(both.sum())
    if n_paired == 0:
        raise ValueError(
            f"no example is valid in both arms ({int(valid_a.sum())} valid in a, "
            f"{int(valid_b.sum())} in b, of {first.size}): nothing to pair"
        )
    counts = {
        "n_paired": n_paired,
        "n_dropped": int(first.size - n_paired),
        "n_invalid_a": int((~valid_a).sum()),
        "n_invalid_b": int((~valid_b).sum()),
    }
    return first[both], second[both], counts


def wilcoxon_signed_rank(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of a - b on the examples valid in both arms.

    `scipy.stats.wilcoxon(a - b, zero_method="pratt")` (scipy chooses the exact or normal
    method). All differences zero: no evidence either way, p = 1 (scipy would give NaN).
    """
    first, second, counts = _paired(a, b)
    differences = first - second
    result: dict[str, Any] = {
        "method": "Wilcoxon signed-rank, zero_method='pratt', two-sided",
        "statistic": 0.0,
        "p_value_two_sided": 1.0,
        "median_difference": float(np.median(differences)),
        "n_zero_differences": int(np.count_nonzero(differences == 0)),
        **counts,
        "note": None,
    }
    if result["n_zero_differences"] == differences.size:
        result["note"] = "every paired difference is zero: p = 1"
        return result
    test = stats.wilcoxon(differences, zero_method="pratt")
    result.update(statistic=float(test.statistic), p_value_two_sided=float(test.pvalue))
    return result


def exact_mcnemar(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
) -> dict[str, Any]:
    """Exact McNemar test for binary outcomes (1/0, NaN = invalid) on examples valid in both.

    The discordant counts are named by who succeeds: `only_a` (A succeeds, B fails) is b and
    `only_b` is c of the 2x2 table; p = `scipy.stats.binomtest(b, b + c, 0.5)`, two-sided. No
    discordant example: p = 1.
    """
    first, second, counts = _paired(a, b)
    for name, array in (("a", first), ("b", second)):
        bad = (array != 0) & (array != 1)
        if bad.any():
            raise ValueError(
                f"{name}: exact_mcnemar needs binary outcomes 0 or 1 (NaN = invalid), got "
                f"{array[bad][0]}"
            )
    only_a = int(np.count_nonzero((first == 1) & (second == 0)))
    only_b = int(np.count_nonzero((first == 0) & (second == 1)))
    discordant = only_a + only_b
    p = float(stats.binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0
    return {
        "method": "exact McNemar (binomial test on discordant pairs), two-sided",
        "only_a": only_a,
        "only_b": only_b,
        "both": int(np.count_nonzero((first == 1) & (second == 1))),
        "neither": int(np.count_nonzero((first == 0) & (second == 0))),
        "n_discordant": discordant,
        "p_value_two_sided": p,
        **counts,
    }


def _as_p_values(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(p_values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"p_values must be a non-empty list of numbers, got shape {array.shape}")
    bad = ~np.isfinite(array) | (array < 0) | (array > 1)
    if bad.any():
        raise ValueError(f"p_values must lie in [0, 1], got {array[bad][0]}")
    return array


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def holm(p_values: Sequence[float] | np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """Holm's step-down adjusted p-values (family-wise error), in the order given.

    Sorted ascending, p_(i) is multiplied by (m - i + 1); a running maximum keeps the adjusted
    values in the same order as the raw ones (step-down: a hypothesis is only rejected when every
    smaller one is), and they are capped at 1. `rejected`: adjusted p <= alpha.
    """
    _check_alpha(alpha)
    raw = _as_p_values(p_values)
    m = raw.size
    order = np.argsort(raw, kind="stable")
    stepped = raw[order] * (m - np.arange(m))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(stepped))
    return {
        "method": "holm",
        "p_values": raw.tolist(),
        "adjusted_p_values": adjusted.tolist(),
        "alpha": alpha,
        "rejected": (adjusted <= alpha).tolist(),
    }


def benjamini_hochberg(
    p_values: Sequence[float] | np.ndarray, alpha: float = 0.05
) -> dict[str, Any]:
    """Benjamini-Hochberg q-values (false discovery rate), in the order given.

    Sorted ascending, q_(i) = min over j >= i of m p_(j) / j, capped at 1: the smallest FDR level
    at which hypothesis i is rejected by the step-up procedure. `rejected`: q <= alpha.
    """
    _check_alpha(alpha)
    raw = _as_p_values(p_values)
    m = raw.size
    order = np.argsort(raw, kind="stable")
    scaled = raw[order] * m / np.arange(1, m + 1)
    q_values = np.empty(m)
    q_values[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return {
        "method": "benjamini-hochberg",
        "p_values": raw.tolist(),
        "q_values": q_values.tolist(),
        "alpha": alpha,
        "rejected": (q_values <= alpha).tolist(),
    }
