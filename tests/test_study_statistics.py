"""Statistics of a multi-seed, two-arm study: seed-level intervals and tests, within-seed tests,
multiple-comparison corrections; checked against scipy, hand computation and simulation."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from monolm.metrics.across_seeds import (
    arm_summary,
    compare_arms,
    multi_bootstrap,
    null_p_value,
    per_seed_paired_bootstrap,
    sign_flip_test,
    summarise_arms,
    t_interval,
)
from monolm.metrics.bootstrap import paired_bootstrap
from monolm.metrics.paired_tests import (
    benjamini_hochberg,
    exact_mcnemar,
    holm,
    wilcoxon_signed_rank,
)

# ---------------------------------------------------------------------------------------------
# Within one seed: Wilcoxon and exact McNemar


def test_wilcoxon_is_scipys_pratt_test_on_examples_valid_in_both_arms() -> None:
    # Differences in multiples of 1/16 (exact in floats), three of them zero, and two examples
    # invalid in one arm each. (14 pairs: at 13 or fewer with ties scipy runs a slow permutation.)
    differences = [0.375, 0, 0.5, 0, 0.375, 0.25, 0.375, -0.0625, 0.625, 0, 0.375, -0.25, 0.125]
    differences.append(0.25)
    b = np.arange(16) / 32
    a = b + np.array([*differences, 0.25, 0.5])
    a[14], b[15] = np.nan, np.nan
    expected = stats.wilcoxon(differences, zero_method="pratt")
    result = wilcoxon_signed_rank(a, b)
    assert result["p_value_two_sided"] == pytest.approx(expected.pvalue, rel=1e-12)
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert (result["n_paired"], result["n_dropped"]) == (14, 2)
    assert (result["n_invalid_a"], result["n_invalid_b"], result["n_zero_differences"]) == (1, 1, 3)
    # The zero differences matter: scipy's default (drop them first) gives another p.
    assert result["p_value_two_sided"] != pytest.approx(stats.wilcoxon(differences).pvalue)


def test_wilcoxon_with_every_difference_zero_gives_p_one_not_nan() -> None:
    result = wilcoxon_signed_rank([0.2, 0.5, 0.7], [0.2, 0.5, 0.7])
    assert result["p_value_two_sided"] == 1.0
    assert "zero" in result["note"]


def test_exact_mcnemar_is_the_binomial_test_on_discordant_pairs() -> None:
    # 7 examples only A solves, 2 only B solves, 3 both, 2 neither, 2 invalid in one arm.
    a = np.array([1] * 7 + [0] * 2 + [1] * 3 + [0] * 2 + [np.nan, 1])
    b = np.array([0] * 7 + [1] * 2 + [1] * 3 + [0] * 2 + [1, np.nan])
    result = exact_mcnemar(a, b)
    assert (result["only_a"], result["only_b"], result["both"], result["neither"]) == (7, 2, 3, 2)
    assert (result["n_discordant"], result["n_paired"], result["n_dropped"]) == (9, 14, 2)
    # By hand: two-sided exact binomial, 2 * P(X <= 2), X ~ Bin(9, 1/2) = 2 * (1 + 9 + 36) / 512.
    assert result["p_value_two_sided"] == pytest.approx(92 / 512, rel=1e-12)
    assert result["p_value_two_sided"] == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue)


def test_exact_mcnemar_without_discordant_pairs_gives_p_one() -> None:
    assert exact_mcnemar([1, 0, 1], [1, 0, 1])["p_value_two_sided"] == 1.0


# ---------------------------------------------------------------------------------------------
# Seed level: t interval, sign-flip permutation test


def test_t_interval_matches_a_hand_computation() -> None:
    differences = [0.012, -0.004, 0.031, 0.02]
    result = t_interval(differences, confidence=0.9)
    mean = sum(differences) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 3)
    half = stats.t.ppf(0.95, 3) * sd / 2
    assert result["mean"] == pytest.approx(mean)
    assert result["std"] == pytest.approx(sd)
    assert (result["low"], result["high"]) == pytest.approx((mean - half, mean + half))
    assert (result["n"], result["df"], result["note"]) == (4, 3, None)


def test_t_interval_with_one_seed_says_there_is_no_interval() -> None:
    result = t_interval([0.02])
    assert result["mean"] == 0.02
    assert result["low"] is None and result["high"] is None and result["std"] is None
    assert "one seed" in result["note"]


def brute_force_sign_flip(decimals: list[str]) -> Fraction:
    """Exact p by enumerating sign patterns in rational arithmetic (no rounding at all)."""
    values = [Fraction(text) for text in decimals]
    observed = abs(sum(values))
    patterns = list(itertools.product((1, -1), repeat=len(values)))
    extreme = sum(
        abs(sum(s * v for s, v in zip(signs, values, strict=True))) >= observed
        for signs in patterns
    )
    return Fraction(extreme, len(patterns))


@pytest.mark.parametrize(
    "decimals",
    [
        ["0.3", "-0.1", "0.2", "0.05"],
        # Exact ties that float sums miss: flipping {0.1, 0.2, -0.3} keeps |sum| = 0.5.
        ["0.1", "0.2", "-0.3", "0.5", "0.25"],
        ["0.1", "-0.1", "0.7"],
        ["0.02", "0.01", "0.03", "-0.01", "0.015", "0.04", "-0.005"],
    ],
)
def test_sign_flip_p_equals_brute_force_enumeration(decimals: list[str]) -> None:
    result = sign_flip_test([float(text) for text in decimals])
    assert result["p_value_two_sided"] == pytest.approx(float(brute_force_sign_flip(decimals)))
    assert result["n_patterns"] == 2 ** len(decimals)


@pytest.mark.parametrize(
    ("n_seeds", "min_p", "can_reach"), [(3, 0.25, False), (5, 0.0625, False), (6, 0.03125, True)]
)
def test_sign_flip_floor_and_the_few_seeds_warning(
    n_seeds: int, min_p: float, can_reach: bool
) -> None:
    result = sign_flip_test([0.01 * (i + 1) for i in range(n_seeds)])
    assert result["min_possible_p"] == min_p
    # All differences positive: the observed pattern and its mirror are the only extremes.
    assert result["p_value_two_sided"] == min_p
    assert result["can_reach_0_05"] is can_reach
    if can_reach:
        assert result["note"] is None
    else:
        assert "fewer than 6 paired seeds" in result["note"]


# ---------------------------------------------------------------------------------------------
# Multiple comparisons


def test_holm_matches_a_hand_worked_example_with_ties_and_monotonicity() -> None:
    # Sorted: 0.005*5, 0.01*4, 0.03*3, 0.04*2, 0.04*1 = 0.025, 0.04, 0.09, 0.08, 0.04;
    # the running maximum lifts the last two to 0.09.
    result = holm([0.01, 0.04, 0.03, 0.005, 0.04])
    assert result["adjusted_p_values"] == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.09])
    assert result["rejected"] == [True, False, False, True, False]


def test_holm_caps_adjusted_p_values_at_one() -> None:
    # Sorted: 0.2*3 = 0.6, 0.6*2 = 1.2 -> 1, 0.7*1 -> max(1.2, 0.7) -> 1.
    assert holm([0.7, 0.2, 0.6])["adjusted_p_values"] == pytest.approx([1.0, 0.6, 1.0])


def test_benjamini_hochberg_matches_a_hand_worked_example() -> None:
    # Sorted p * m / rank: 0.025, 0.025, 0.05, 0.05, 0.04; the running minimum from the top
    # brings ranks 3 and 4 down to 0.04.
    result = benjamini_hochberg([0.01, 0.04, 0.03, 0.005, 0.04])
    assert result["q_values"] == pytest.approx([0.025, 0.04, 0.04, 0.025, 0.04])
    assert result["rejected"] == [True, True, True, True, True]
    assert benjamini_hochberg([0.8, 0.3])["q_values"] == pytest.approx([0.8, 0.6])


# ---------------------------------------------------------------------------------------------
# The statistic is recomputed from totals (ratio of sums), observed and in every replicate


def test_rate_skips_nan_examples_observed_and_in_every_replicate() -> None:
    # Half the examples skipped: the rate over attacked examples is 1 in every resample (if the
    # skipped ones counted as failures it would be about 0.5).
    a = np.array([[1.0] * 100 + [np.nan] * 100])
    b = np.array([[1.0, 0.0] * 100])
    result = multi_bootstrap(a, b, "rate", resamples=200)
    assert result["a"]["per_seed"] == [1.0]
    assert result["a"]["low"] == result["a"]["high"] == 1.0
    assert result["mean_difference"] == pytest.approx(0.5)


def test_exp_mean_is_exp_of_total_nll_over_total_tokens() -> None:
    # 100 long examples with 1 nat/token and 100 one-token examples with 3 nats: the token-
    # weighted perplexity is exp(10300 / 10100) ~ 2.77; the mean of per-example ratios gives e^2.
    tokens = np.array([[100.0] * 100 + [1.0] * 100])
    nll = tokens * np.array([[1.0] * 100 + [3.0] * 100])
    baseline = np.full_like(nll, np.log(2.0)) * tokens
    result = multi_bootstrap(
        nll, baseline, "exp_mean", resamples=200, weights_a=tokens, weights_b=tokens
    )
    ratio_of_sums = math.exp(10300 / 10100)
    assert result["a"]["per_seed"] == pytest.approx([ratio_of_sums])
    assert result["b"]["mean"] == pytest.approx(2.0)
    assert result["a"]["low"] < ratio_of_sums < result["a"]["high"] < 3.0
    assert result["mean_difference"] == pytest.approx(ratio_of_sums - 2.0)


def test_per_seed_differences_use_only_examples_valid_in_both_arms() -> None:
    a = np.array([[1, 1, 0, 1, np.nan, 1], [0, 1, 1, 1, 1, 1]], dtype=float)
    b = np.array([[0, 1, 0, np.nan, 1, 0], [0, 0, 1, 1, 0, 1]], dtype=float)
    result = per_seed_paired_bootstrap(a, b, "rate", resamples=100)
    first, second = result["seeds"]
    # Seed 0 pairs examples 0, 1, 2, 5: A 3/4, B 1/4.
    assert (first["a"], first["b"], first["mean_difference"]) == (0.75, 0.25, 0.5)
    assert (first["n_paired"], first["n_dropped"]) == (4, 2)
    assert (second["mean_difference"], second["n_dropped"]) == (pytest.approx(2 / 6), 0)
    assert result["differences"] == [0.5, pytest.approx(2 / 6)]


# ---------------------------------------------------------------------------------------------
# Multi-bootstrap: pairing, seeding, p-value under the null


def test_seeds_are_drawn_together_for_both_arms() -> None:
    # A = B + 0.1 on every example of every seed, with large differences between seeds: paired
    # draws give the difference 0.1 in every replicate; unpaired seed draws would spread it.
    rng = np.random.default_rng(3)
    b = rng.normal(0.5, 0.1, size=(4, 50)) + rng.normal(0, 0.3, size=(4, 1))
    result = multi_bootstrap(b + 0.1, b, resamples=300)
    assert result["low"] == pytest.approx(0.1, abs=1e-12)
    assert result["high"] == pytest.approx(0.1, abs=1e-12)
    assert (result["n_seeds"], result["n_examples"], result["resamples"]) == (4, 50, 300)


def test_same_seed_same_result_other_seed_other_replicates() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.5, 0.2, size=(3, 80)), rng.normal(0.45, 0.2, size=(3, 80))
    first = multi_bootstrap(a, b, resamples=200, seed=11)
    assert multi_bootstrap(a.tolist(), b.tolist(), resamples=200, seed=11) == first
    other = multi_bootstrap(a, b, resamples=200, seed=12)
    assert (other["low"], other["high"]) != (first["low"], first["high"])
    assert other["mean_difference"] == first["mean_difference"]
    seeds = per_seed_paired_bootstrap(a, b, resamples=200, seed=11)
    assert per_seed_paired_bootstrap(a, b, resamples=200, seed=11) == seeds
    assert per_seed_paired_bootstrap(a, b, resamples=200, seed=12)["seeds"] != seeds["seeds"]


def test_null_p_value_shifts_replicates_by_the_observed_difference() -> None:
    # |replicate - 0.2| = 0.1, 0.1, 0.3, 0.3: two at least 0.2 -> (2 + 1) / (4 + 1).
    assert null_p_value(np.array([0.1, 0.3, 0.5, -0.1]), 0.2) == pytest.approx(0.6)


def test_multi_bootstrap_p_value_extremes() -> None:
    rng = np.random.default_rng(8)
    b = rng.normal(0.5, 0.05, size=(3, 200))
    same = multi_bootstrap(b, b.copy(), resamples=99)
    assert (same["mean_difference"], same["p_value_two_sided"]) == (0.0, 1.0)
    far = multi_bootstrap(b + 0.5, b, resamples=99)
    assert far["p_value_two_sided"] == pytest.approx(1 / 100)


# ---------------------------------------------------------------------------------------------
# Coverage on simulated studies: the arm effect varies between training seeds


def simulated_study(rng: np.random.Generator, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """500 shared examples; the arm effect varies between seeds (sd 0.06) around 0.01."""
    difficulty = rng.normal(0.5, 0.2, size=500)
    effect = rng.normal(0.01, 0.06, size=(n_seeds, 1))
    a = difficulty + effect + rng.normal(0, 0.3, size=(n_seeds, 500))
    b = difficulty + rng.normal(0, 0.3, size=(n_seeds, 500))
    return a, b


def test_multi_bootstrap_covers_far_more_often_than_pooling_seeds() -> None:
    rng, trials, true_delta = np.random.default_rng(2024), 200, 0.01
    covered = {"multi": 0, "pooled": 0, "t": 0}
    for trial in range(trials):
        a, b = simulated_study(rng, n_seeds=3)
        multi = multi_bootstrap(a, b, resamples=200, seed=trial)
        pooled = paired_bootstrap(a.ravel(), b.ravel(), resamples=200, seed=trial)
        t = t_interval((a - b).mean(axis=1))
        for name, ci in (("multi", multi), ("pooled", pooled), ("t", t)):
            covered[name] += ci["low"] <= true_delta <= ci["high"]
    coverage = {name: count / trials for name, count in covered.items()}
    # A 300-trial study of this design measured 0.84 / 0.46 / 0.94; margins of ~3 standard errors.
    assert coverage["multi"] >= 0.75, coverage
    assert coverage["pooled"] <= 0.65, coverage  # the guard: pooling seeds undercovers
    assert coverage["multi"] - coverage["pooled"] >= 0.2, coverage
    assert 0.88 <= coverage["t"] <= 0.99, coverage


# ---------------------------------------------------------------------------------------------
# Summaries, the combined report, JSON


def test_arm_summary_and_differences_from_a_baseline() -> None:
    base = np.array([[0.5, 0.7], [0.6, 0.6], [0.4, 0.6]])  # per-seed means 0.6, 0.6, 0.5
    other = base + np.array([[0.1], [0.2], [0.0]])  # 0.7, 0.8, 0.5
    summary = arm_summary(other)
    assert summary["per_seed"] == pytest.approx([0.7, 0.8, 0.5])
    assert summary["std"] == pytest.approx(np.std([0.7, 0.8, 0.5], ddof=1))
    half = stats.t.ppf(0.975, 2) * summary["std"] / math.sqrt(3)
    assert (summary["low"], summary["high"]) == pytest.approx((2 / 3 - half, 2 / 3 + half))
    arms = summarise_arms({"base": base, "mono": other}, baseline="base")["arms"]
    assert arms["mono"]["difference_from_baseline"] == pytest.approx(2 / 3 - 17 / 30)
    assert arms["mono"]["relative_difference_from_baseline"] == pytest.approx(
        (2 / 3 - 17 / 30) / (17 / 30)
    )
    assert arms["base"]["difference_from_baseline"] == 0.0


def test_compare_arms_is_json_and_warns_below_six_seeds() -> None:
    rng = np.random.default_rng(9)
    a = rng.integers(0, 2, size=(3, 60)).astype(float)
    b = rng.integers(0, 2, size=(3, 60)).astype(float)
    a[0, :5] = np.nan
    report = compare_arms(a, b, "rate", resamples=100)
    json.dumps(report, allow_nan=False)
    assert report["sign_flip"]["min_possible_p"] == 0.25
    assert any("fewer than 6 paired seeds" in note for note in report["notes"])
    assert report["t_interval"]["mean"] == pytest.approx(np.mean(report["per_seed"]["differences"]))
    assert report["per_seed"]["seeds"][0]["n_dropped"] == 5
    single = compare_arms(a[:1], b[:1], "rate", resamples=50)
    json.dumps(single, allow_nan=False)
    assert single["t_interval"]["low"] is None
    for result in (
        wilcoxon_signed_rank(a[1], b[1]),
        exact_mcnemar(a[1], b[1]),
        holm([0.1, 0.2]),
        benjamini_hochberg([0.1, 0.2]),
        summarise_arms({"a": a, "b": b}, "rate", baseline="b"),
    ):
        json.dumps(result, allow_nan=False)


# ---------------------------------------------------------------------------------------------
# Bad input


GOOD = np.array([[0.1, 0.2, 0.3], [0.2, 0.3, 0.4]])


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda: multi_bootstrap(GOOD, GOOD[:, :2]), ["(2, 3)", "(2, 2)"]),
        (lambda: multi_bootstrap(GOOD[0], GOOD[0]), ["two-dimensional", "(3,)"]),
        (lambda: multi_bootstrap(GOOD[None], GOOD[None]), ["two-dimensional", "(1, 2, 3)"]),
        (lambda: multi_bootstrap(GOOD, GOOD, "maen"), ["'maen'", "did you mean 'mean'"]),
        (lambda: multi_bootstrap(GOOD, GOOD, resamples=0), ["resamples", "0"]),
        (lambda: multi_bootstrap(GOOD, GOOD, confidence=1.5), ["confidence", "1.5", "(0, 1)"]),
        (lambda: multi_bootstrap(GOOD, GOOD, "rate"), ["'rate'", "0 or 1", "0.1"]),
        (
            lambda: multi_bootstrap(GOOD, GOOD, "exp_mean", weights_a=np.ones((2, 2))),
            ["weights of a", "(2, 2)", "(2, 3)"],
        ),
        (
            lambda: multi_bootstrap(np.full((2, 3), np.nan), GOOD),
            ["a: run(s) [0, 1]", "no valid example"],
        ),
        (
            lambda: per_seed_paired_bootstrap(
                [[1.0, np.nan], [1.0, 1.0]], [[np.nan, 1.0], [1.0, 1.0]]
            ),
            ["seed 0", "no example is valid", "both"],
        ),
        (
            lambda: wilcoxon_signed_rank([1.0, np.nan], [np.nan, 2.0]),
            ["no example is valid in both arms"],
        ),
        (lambda: exact_mcnemar([1, 0.5], [0, 1]), ["0 or 1", "0.5"]),
        (lambda: holm([0.01, 1.2]), ["[0, 1]", "1.2"]),
        (lambda: t_interval([0.1, np.nan]), ["NaN"]),
        (lambda: sign_flip_test([0.01] * 23), ["S = 23", "22"]),
        (
            lambda: summarise_arms({"base": GOOD}, baseline="bse"),
            ["'bse'", "did you mean 'base'"],
        ),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_value(call, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    for fragment in fragments:
        assert fragment in str(caught.value)
