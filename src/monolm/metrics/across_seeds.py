"""Comparing two training arms trained with a few seeds each: statistics at the seed level.

Data: per arm, one metric's per-example values `[S seeds, N examples]` (NaN: invalid in that
run); arms are paired by seed index (seed s of both arms used the same seed value) and by example.
See `run_statistics` for the statistics (`mean`, `rate`, `exp_mean`) and their weights.

Why not pool every seed's per-example pairs into one paired bootstrap: that treats the trained
models as fixed, so its interval misses the variation of the arm effect between training seeds
and undercovers badly: in a simulation (500 paired examples, true difference 0.01, arm effect sd
0.06 across 3 seeds) its nominal 95% interval covered 0.46, the multi-bootstrap's 0.84 and the
t interval over per-seed differences 0.94. What to report instead:

- `multi_bootstrap`: the headline interval (MultiBERTs, Sellam et al. 2022): resamples seeds
  *and* examples, so both sources of variation are in it;
- beside it, `per_seed_paired_bootstrap` (each seed's difference with its own CI: evidence about
  the trained artefacts), `t_interval` over the per-seed differences and `sign_flip_test` (an
  exact permutation p over seeds, which cannot go below 2 / 2^S);
- `arm_summary` / `summarise_arms`: each arm's per-seed values, mean, std and t interval.

`compare_arms` returns all of the comparison at once. Every result is a plain JSON-serialisable
dict (no NaN: an undefined value is None with a note saying why).

Conventions as in `bootstrap`: 1000 resamples, a 95% percentile interval and a seeded
`numpy.random.default_rng`, with index draws in chunks whose size depends only on N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from monolm.errors import did_you_mean
from monolm.metrics.bootstrap import _CHUNK_CELLS, _check_settings, finite_vector
from monolm.metrics.run_statistics import (
    ArrayLike,
    RunTotals,
    as_runs,
    check_same_shape,
    example_counts,
    run_totals,
)

# With S paired seeds the smallest two-sided sign-flip p is 2 / 2^S: above 0.05 below 6 seeds.
SEEDS_TO_REACH_0_05 = 6
# 2^22 signed sums (32 MB) at most; a study with more seeds can use the t interval.
MAX_SIGN_FLIP_SEEDS = 22


def _checked_arms(
    a: ArrayLike,
    b: ArrayLike,
    statistic: str,
    weights_a: ArrayLike | None,
    weights_b: ArrayLike | None,
) -> tuple[RunTotals, RunTotals]:
    first, second = as_runs(a, "a"), as_runs(b, "b")
    check_same_shape(first, second)
    return run_totals(first, weights_a, statistic, "a"), run_totals(
        second, weights_b, statistic, "b"
    )


def _rows_per_chunk(n: int) -> int:
    return max(1, _CHUNK_CELLS // n)


def _interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """Percentile interval over the defined (finite) replicates; None when there are none."""
    defined = replicates[np.isfinite(replicates)]
    if defined.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return float(low), float(high)


def null_p_value(replicates: np.ndarray, observed: float) -> float | None:
    """Two-sided bootstrap p-value under the null hypothesis of no difference.

    The replicate differences estimate the sampling distribution around the observed one;
    shifted by it they estimate the distribution under "no difference". p is the fraction of
    shifted replicates at least as far from 0 as the observed difference, with the (count + 1) /
    (resamples + 1) correction, so it is never 0 (a resampling test cannot show p = 0).
    """
    defined = replicates[np.isfinite(replicates)]
    if defined.size == 0:
        return None
    extreme = int(np.count_nonzero(np.abs(defined - observed) >= abs(observed)))
    return (extreme + 1) / (defined.size + 1)


def _multi_bootstrap_means(
    arm_a: RunTotals, arm_b: RunTotals, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each arm's mean over drawn seeds of its runs' statistic, one value per replicate.

    A replicate draws S seed indices with replacement (the same for both arms: seeds are paired)
    and one set of N example indices shared by every run (examples are paired across runs and
    arms), scores each drawn run on those examples and averages over the drawn seeds.
    """
    rng = np.random.default_rng(seed)
    n_seeds, n_examples = arm_a.valid.shape
    drawn_seeds = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    means_a = np.empty(resamples, dtype=np.float64)
    means_b = np.empty(resamples, dtype=np.float64)
    rows = _rows_per_chunk(n_examples)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        counts = example_counts(rng, stop - start, n_examples)
        seeds = drawn_seeds[start:stop]
        means_a[start:stop] = np.take_along_axis(arm_a.resampled(counts), seeds, axis=1).mean(1)
        means_b[start:stop] = np.take_along_axis(arm_b.resampled(counts), seeds, axis=1).mean(1)
    return means_a, means_b


def multi_bootstrap(
    a: ArrayLike,
    b: ArrayLike,
    statistic: str = "mean",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    weights_a: ArrayLike | None = None,
    weights_b: ArrayLike | None = None,
) -> dict[str, Any]:
    """Paired multi-bootstrap of (mean over seeds of arm A's statistic) - (the same for B).

    `mean_difference` is observed on all examples: each run's statistic on its valid examples,
    averaged over seeds, A minus B. `low`/`high`: the percentile interval of the replicate
    differences (see `_multi_bootstrap_means`); `p_value_two_sided`: `null_p_value` of them.
    `a`/`b` give each arm's observed mean, its interval and per-seed values. A replicate in which
    some drawn run has no valid example drawn is undefined: counted in `undefined_resamples` and
    left out of the interval and p.
    """
    _check_settings(resamples, confidence)
    arm_a, arm_b = _checked_arms(a, b, statistic, weights_a, weights_b)
    per_seed_a, per_seed_b = arm_a.observed(), arm_b.observed()
    observed = float(per_seed_a.mean() - per_seed_b.mean())
    means_a, means_b = _multi_bootstrap_means(arm_a, arm_b, resamples, seed)
    differences = means_a - means_b
    low, high = _interval(differences, confidence)

    def arm(per_seed: np.ndarray, means: np.ndarray) -> dict[str, Any]:
        arm_low, arm_high = _interval(means, confidence)
        return {
            "mean": float(per_seed.mean()),
            "low": arm_low,
            "high": arm_high,
            "per_seed": per_seed.tolist(),
        }

    n_seeds, n_examples = arm_a.valid.shape
    return {
        "method": "paired multi-bootstrap (seeds and examples resampled)",
        "statistic": statistic,
        "mean_difference": observed,
        "low": low,
        "high": high,
        "p_value_two_sided": null_p_value(differences, observed),
        "a": arm(per_seed_a, means_a),
        "b": arm(per_seed_b, means_b),
        "n_seeds": n_seeds,
        "n_examples": n_examples,
        "resamples": resamples,
        "undefined_resamples": int(np.count_nonzero(~np.isfinite(differences))),
        "confidence": confidence,
    }


def _paired_seed_bootstrap(
    part_a: RunTotals, part_b: RunTotals, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """Replicate differences of one seed: the same example draw for both arms."""
    n = part_a.valid.shape[1]
    differences = np.empty(resamples, dtype=np.float64)
    rows = _rows_per_chunk(n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        counts = example_counts(rng, stop - start, n)
        differences[start:stop] = (part_a.resampled(counts) - part_b.resampled(counts))[:, 0]
    return differences


def per_seed_paired_bootstrap(
    a: ArrayLike,
    b: ArrayLike,
    statistic: str = "mean",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    weights_a: ArrayLike | None = None,
    weights_b: ArrayLike | None = None,
) -> dict[str, Any]:
    """For each seed s, the paired bootstrap of statistic(A_s) - statistic(B_s).

    Only examples valid in both arms of that seed are paired (and resampled); `n_dropped` counts
    the rest. This is evidence about the trained models of that seed, not the training procedure.
    Seed s draws from its own stream (spawned from `seed`), so its interval does not depend on the
    other seeds. `differences` (one per seed) is what `t_interval` and `sign_flip_test` take.
    """
    _check_settings(resamples, confidence)
    arm_a, arm_b = _checked_arms(a, b, statistic, weights_a, weights_b)
    n_seeds, n_examples = arm_a.valid.shape
    streams = np.random.SeedSequence(seed).spawn(n_seeds)
    seeds = []
    for s in range(n_seeds):
        paired = arm_a.valid[s] & arm_b.valid[s]
        n_paired = int(paired.sum())
        part_a, part_b = arm_a.part(s, paired), arm_b.part(s, paired)
        value_a, value_b = float(part_a.observed()[0]), float(part_b.observed()[0])
        observed = value_a - value_b
        if not np.isfinite(observed):
            raise ValueError(
                f"seed {s}: no example is valid (with positive weight) in both arms "
                f"({int(arm_a.valid[s].sum())} valid in a, {int(arm_b.valid[s].sum())} in b, "
                f"{n_paired} in both); each seed needs at least one"
            )
        differences = _paired_seed_bootstrap(
            part_a, part_b, resamples, np.random.default_rng(streams[s])
        )
        low, high = _interval(differences, confidence)
        seeds.append(
            {
                "seed_index": s,
                "a": value_a,
                "b": value_b,
                "mean_difference": observed,
                "low": low,
                "high": high,
                "p_value_two_sided": null_p_value(differences, observed),
                "n_paired": n_paired,
                "n_dropped": n_examples - n_paired,
                "undefined_resamples": int(np.count_nonzero(~np.isfinite(differences))),
            }
        )
    return {
        "method": "paired bootstrap within each seed (examples valid in both arms)",
        "statistic": statistic,
        "seeds": seeds,
        "differences": [entry["mean_difference"] for entry in seeds],
        "resamples": resamples,
        "confidence": confidence,
    }


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> dict[str, Any]:
    """Student-t interval for the mean of per-seed values (e.g. per-seed paired differences).

    Seeds are the independent units of a training study, so the t interval over them is the
    simple, well-covering seed-level interval (0.94 in the simulation above). One value has
    no spread: `low`/`high`/`std` are None and `note` says so.
    """
    _check_confidence(confidence)
    array = finite_vector(values, "values", "seed")
    n = array.size
    mean = float(array.mean())
    result: dict[str, Any] = {
        "mean": mean,
        "std": None,
        "standard_error": None,
        "df": n - 1,
        "low": None,
        "high": None,
        "n": n,
        "confidence": confidence,
        "note": None,
    }
    if n < 2:
        result["note"] = "one seed: no t interval (it needs at least 2 values to estimate spread)"
        return result
    std = float(array.std(ddof=1))
    standard_error = std / np.sqrt(n)
    half_width = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1) * standard_error)
    result.update(
        std=std,
        standard_error=float(standard_error),
        low=mean - half_width,
        high=mean + half_width,
    )
    return result


def _signed_sums(values: np.ndarray) -> np.ndarray:
    """sum(sign_i * values_i) for all 2^S sign patterns, built by doubling (2^S floats)."""
    sums = np.zeros(1, dtype=np.float64)
    for value in values:
        sums = np.concatenate([sums + value, sums - value])
    return sums


def fewest_seeds_note(n_seeds: int) -> str | None:
    """The warning a report must show when no seed-level test can reach p < 0.05."""
    if n_seeds >= SEEDS_TO_REACH_0_05:
        return None
    return (
        f"with {n_seeds} paired seed(s) the smallest possible two-sided sign-flip p is "
        f"{2.0 / 2**n_seeds:.3g}: no seed-level test can reach 0.05 with fewer than "
        f"{SEEDS_TO_REACH_0_05} paired seeds"
    )


def sign_flip_test(differences: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Exact two-sided sign-flip permutation test that the per-seed differences centre on 0.

    Under the null each seed's difference is as likely to have either sign, so all 2^S sign
    patterns are equally likely; p is the fraction whose |mean| is at least the observed |mean|
    (ties count; a relative tolerance absorbs float rounding). Exact and assumption-light, but
    its smallest possible value is 2 / 2^S (`min_possible_p`): `can_reach_0_05` is False and
    `note` says so below 6 seeds.
    """
    array = finite_vector(differences, "differences", "seed")
    n = array.size
    if n > MAX_SIGN_FLIP_SEEDS:
        raise ValueError(
            f"sign_flip_test enumerates 2^S patterns: S = {n} is above {MAX_SIGN_FLIP_SEEDS}; use "
            "t_interval for that many seeds"
        )
    sums = _signed_sums(array)
    observed = float(array.sum())
    tolerance = 1e-9 * float(np.abs(array).sum()) + 1e-300
    extreme = int(np.count_nonzero(np.abs(sums) >= abs(observed) - tolerance))
    min_possible_p = min(1.0, 2.0 / 2**n)
    return {
        "method": "exact sign-flip permutation over seeds",
        "observed_mean": observed / n,
        "p_value_two_sided": extreme / sums.size,
        "n_patterns": int(sums.size),
        "min_possible_p": min_possible_p,
        "can_reach_0_05": min_possible_p <= 0.05,
        "n": n,
        "note": fewest_seeds_note(n),
    }


def arm_summary(
    values: ArrayLike,
    statistic: str = "mean",
    weights: ArrayLike | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """One arm across seeds: each run's statistic, their mean, std (ddof=1) and t interval."""
    totals = run_totals(as_runs(values, "values"), weights, statistic, "values")
    per_seed = totals.observed()
    interval = t_interval(per_seed, confidence)
    return {
        "statistic": statistic,
        "per_seed": per_seed.tolist(),
        "mean": interval["mean"],
        "std": interval["std"],
        "low": interval["low"],
        "high": interval["high"],
        "n_seeds": interval["n"],
        "confidence": confidence,
        "note": interval["note"],
    }


def summarise_arms(
    arms: Mapping[str, ArrayLike],
    statistic: str = "mean",
    baseline: str | None = None,
    weights: Mapping[str, ArrayLike] | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """`arm_summary` of every arm, and with a `baseline` each arm's difference from it.

    `difference_from_baseline` = arm mean - baseline mean (absolute);
    `relative_difference_from_baseline` = that / baseline mean (None when the baseline mean is
    0). These are point summaries: for an interval on a difference use `multi_bootstrap`.
    """
    if not arms:
        raise ValueError("arms is empty: summarise_arms needs at least one arm")
    if baseline is not None and baseline not in arms:
        raise ValueError(f"unknown baseline arm '{baseline}': {did_you_mean(baseline, arms)}")
    weights = weights or {}
    unknown = sorted(set(weights) - set(arms))
    if unknown:
        raise ValueError(f"weights given for unknown arm(s) {unknown}: arms are {sorted(arms)}")
    summaries = {
        name: arm_summary(values, statistic, weights.get(name), confidence)
        for name, values in arms.items()
    }
    if baseline is not None:
        reference = summaries[baseline]["mean"]
        for summary in summaries.values():
            difference = summary["mean"] - reference
            summary["difference_from_baseline"] = difference
            summary["relative_difference_from_baseline"] = (
                difference / reference if reference != 0 else None
            )
    return {"statistic": statistic, "baseline": baseline, "arms": summaries}


def compare_arms(
    a: ArrayLike,
    b: ArrayLike,
    statistic: str = "mean",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    weights_a: ArrayLike | None = None,
    weights_b: ArrayLike | None = None,
) -> dict[str, Any]:
    """Everything a report shows for A vs B on one metric.

    The multi-bootstrap (headline), each seed's paired bootstrap, and over the per-seed paired
    differences the t interval and the exact sign-flip p; `notes` carries the few-seeds warning.
    """
    settings = {"statistic": statistic, "resamples": resamples, "confidence": confidence}
    arms = {"a": a, "b": b, "seed": seed, "weights_a": weights_a, "weights_b": weights_b}
    per_seed = per_seed_paired_bootstrap(**arms, **settings)
    differences = per_seed["differences"]
    notes = [note for note in [fewest_seeds_note(len(differences))] if note]
    sign_flip = None
    if len(differences) <= MAX_SIGN_FLIP_SEEDS:
        sign_flip = sign_flip_test(differences)
    else:
        notes.append(f"no sign-flip test: more than {MAX_SIGN_FLIP_SEEDS} seeds to enumerate")
    return {
        "statistic": statistic,
        "multi_bootstrap": multi_bootstrap(**arms, **settings),
        "per_seed": per_seed,
        "t_interval": t_interval(differences, confidence),
        "sign_flip": sign_flip,
        "notes": notes,
    }
