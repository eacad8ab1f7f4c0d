"""Percentile bootstrap intervals: seeded, sensible widths, and a paired test that uses pairing."""

from __future__ import annotations

import numpy as np
import pytest

from monolm.metrics.bootstrap import bootstrap_ci, paired_bootstrap, resampled_means


def sample(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.3, 0.1, size=n)


def width(ci: dict) -> float:
    return ci["high"] - ci["low"]


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    values = sample(200)
    first, again = bootstrap_ci(values, seed=7), bootstrap_ci(list(values), seed=7)
    assert first == again
    other = bootstrap_ci(values, seed=8)
    assert (other["low"], other["high"]) != (first["low"], first["high"])
    assert other["mean"] == first["mean"]


def test_interval_contains_mean_and_reports_its_settings() -> None:
    values = sample(300)
    ci = bootstrap_ci(values, resamples=500, confidence=0.9)
    assert ci["low"] < ci["mean"] < ci["high"]
    assert ci["mean"] == pytest.approx(values.mean())
    assert (ci["n"], ci["resamples"], ci["confidence"]) == (300, 500, 0.9)


def test_interval_matches_the_normal_approximation() -> None:
    # For a mean of 2000 draws the percentile interval is close to mean +- 1.96 se.
    values = sample(2000)
    se = values.std(ddof=1) / np.sqrt(values.size)
    # 5000 resamples keep the quantiles' own noise (a few %) below the 90%-vs-95% gap (16%).
    assert width(bootstrap_ci(values, resamples=5000)) == pytest.approx(2 * 1.96 * se, rel=0.06)


def test_interval_narrows_as_n_grows() -> None:
    small, large = bootstrap_ci(sample(50)), bootstrap_ci(sample(5000))
    # Width scales like 1 / sqrt(n): a factor of 10 here.
    assert width(large) < width(small) / 5


def test_higher_confidence_is_wider() -> None:
    values = sample(100)
    assert width(bootstrap_ci(values, confidence=0.99)) > width(bootstrap_ci(values))


def test_constant_and_single_values_give_degenerate_intervals() -> None:
    constant = bootstrap_ci([0.25] * 40)
    assert constant["low"] == constant["high"]
    assert constant["low"] == pytest.approx(0.25)
    single = bootstrap_ci([0.7])
    assert single["low"] == single["high"] == single["mean"] == 0.7
    assert single["n"] == 1


def test_large_n_stays_fast_and_chunked() -> None:
    # 1e5 values x 1000 resamples would be 800 MB of indices drawn at once.
    ci = bootstrap_ci(sample(100_000), resamples=200)
    assert ci["low"] < ci["mean"] < ci["high"]
    assert width(ci) < 0.01


@pytest.mark.parametrize(
    ("values", "kwargs"),
    [
        ([], {}),
        ([1.0, float("nan")], {}),
        ([[1.0, 2.0]], {}),
        ([1.0], {"resamples": 0}),
        ([1.0], {"confidence": 1.0}),
    ],
)
def test_bad_inputs_raise(values, kwargs) -> None:
    with pytest.raises(ValueError):
        bootstrap_ci(values, **kwargs)


def test_paired_identical_arms_differ_by_nothing() -> None:
    values = sample(100)
    result = paired_bootstrap(values, values.copy())
    assert result["mean_difference"] == 0.0
    assert result["low"] == result["high"] == 0.0
    assert result["p_value_two_sided"] == 1.0
    assert result["n"] == 100


def test_paired_clear_shift_excludes_zero() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0.3, 0.1, size=200)
    a = b + rng.normal(0.05, 0.02, size=200)
    result = paired_bootstrap(a, b)
    assert result["mean_difference"] == pytest.approx(np.mean(a - b))
    assert 0.0 < result["low"] < result["mean_difference"] < result["high"]
    assert result["p_value_two_sided"] < 0.01
    # The sign of the difference follows the argument order; p does not.
    swapped = paired_bootstrap(b, a)
    assert swapped["high"] < 0.0
    assert swapped["mean_difference"] == pytest.approx(-result["mean_difference"])
    assert swapped["p_value_two_sided"] == result["p_value_two_sided"]


def test_paired_no_real_difference_has_large_p() -> None:
    # Per-example differences that are noisy but average exactly zero.
    rng = np.random.default_rng(4)
    a = rng.normal(0.3, 0.1, size=300)
    noise = rng.normal(0.0, 0.05, size=300)
    result = paired_bootstrap(a, a + (noise - noise.mean()))
    assert result["low"] < 0.0 < result["high"]
    assert result["p_value_two_sided"] > 0.5


def test_pairing_removes_shared_per_example_variance() -> None:
    # Examples vary a lot (some are easy, some hard) and arm a is better by ~0.02 on every one.
    rng = np.random.default_rng(5)
    difficulty = rng.uniform(0.0, 1.0, size=300)
    b = difficulty
    a = difficulty + 0.02 + rng.normal(0.0, 0.002, size=300)
    paired = paired_bootstrap(a, b)
    # Treating the arms as independent samples: bootstrap each one on its own.
    independent = resampled_means(a, 1000, seed=11) - resampled_means(b, 1000, seed=12)
    independent_width = float(np.diff(np.quantile(independent, [0.025, 0.975]))[0])
    assert independent_width > 0.04  # the shift is invisible this way...
    assert width(paired) < independent_width / 20  # ...and obvious when paired
    assert paired["low"] > 0.0
    assert paired["p_value_two_sided"] == 0.0


def test_paired_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1.0, 2.0], [1.0])
