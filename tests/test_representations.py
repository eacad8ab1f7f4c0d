"""CKA as defined (Kornblith et al. 2019; the debiased estimator of Song et al. 2012; minibatch
CKA of Nguyen et al. 2021), against the reference values of Kornblith's demo and a direct
loop-level implementation written here."""

from __future__ import annotations

import numpy as np
import pytest

from monolm.metrics.representations import (
    cka_matrix,
    gram_linear,
    gram_rbf,
    half_sample_intervals,
    linear_cka,
    minibatch_cka,
    rbf_cka,
)


@pytest.fixture
def demo() -> tuple[np.ndarray, np.ndarray]:
    """Kornblith et al.'s demo data: np.random.seed(1337); X = randn(100, 10); Y = randn + X."""
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    return x, y


def test_the_reference_values_of_kornbliths_demo(demo) -> None:
    x, y = demo
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=1e-5)
    assert rbf_cka(x, y, threshold=0.5) == pytest.approx(0.65483, abs=1e-5)
    assert linear_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=1e-5)


def loop_cka(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """HSIC(K, L) = tr(K H L H) / (n - 1)^2 with H = I - 11^T / n, written out with loops."""
    n = len(gram_x)
    h = [[(1.0 if i == j else 0.0) - 1.0 / n for j in range(n)] for i in range(n)]

    def centre(k):
        kh = [[sum(k[i][m] * h[m][j] for m in range(n)) for j in range(n)] for i in range(n)]
        return [[sum(h[i][m] * kh[m][j] for m in range(n)) for j in range(n)] for i in range(n)]

    def hsic(a, b):
        return sum(a[i][j] * b[j][i] for i in range(n) for j in range(n))

    kx, ky = centre(gram_x.tolist()), centre(gram_y.tolist())
    return hsic(kx, ky) / (hsic(kx, kx) * hsic(ky, ky)) ** 0.5


def test_linear_and_rbf_cka_agree_with_a_loop_level_implementation() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 5))
    y = x @ rng.normal(size=(5, 7)) + rng.normal(size=(20, 7))
    assert linear_cka(x, y) == pytest.approx(loop_cka(x @ x.T, y @ y.T), abs=1e-10)
    expected = loop_cka(gram_rbf(x, 0.8).numpy(), gram_rbf(y, 0.8).numpy())
    assert rbf_cka(x, y, threshold=0.8) == pytest.approx(expected, abs=1e-10)


def test_cka_of_a_representation_with_itself_is_one(demo) -> None:
    x, _ = demo
    for debiased in (False, True):
        assert linear_cka(x, x, debiased) == pytest.approx(1.0, abs=1e-12)
    assert rbf_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_rotations_and_isotropic_scaling_not_to_any_linear_map(demo) -> None:
    x, y = demo
    rng = np.random.default_rng(1)
    rotation, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    reference = linear_cka(x, y)
    assert linear_cka(x @ rotation * 7.5, y) == pytest.approx(reference, abs=1e-12)
    assert linear_cka(x, y, True) == pytest.approx(linear_cka(x @ rotation, 0.1 * y, True))
    stretch = np.diag([1e3] + [1.0] * 9) @ rotation  # invertible, not orthogonal
    assert abs(linear_cka(x @ stretch, y) - reference) > 0.05


def test_the_debiased_estimator_is_near_zero_for_unrelated_representations() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(100, 2048)), rng.normal(size=(100, 2048))
    assert linear_cka(x, y) > 0.9  # the plain estimator: 0.95, a large, spurious similarity
    assert abs(linear_cka(x, y, debiased=True)) < 0.02


def test_minibatch_cka_agrees_with_the_full_debiased_value() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1024, 64))
    y = x @ rng.normal(size=(64, 48)) + 2.0 * rng.normal(size=(1024, 48))
    full = linear_cka(x, y, debiased=True)
    for batch in (64, 256):
        pairs = ((x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch))
        assert minibatch_cka(pairs) == pytest.approx(full, abs=1e-2)


def test_float64_and_centring_keep_outlier_dimensions_from_skewing_the_value() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(500, 256)).astype(np.float32)
    y = (x + 0.5 * rng.normal(size=(500, 256))).astype(np.float32)
    x[:, :4] += 3000.0  # LLM-like outlier dimensions: a huge constant offset
    y[:, :4] += 3000.0
    clean = linear_cka(x[:, 4:].astype(np.float64), y[:, 4:].astype(np.float64))
    assert linear_cka(x, y) == pytest.approx(
        linear_cka(x.astype(np.float64) - 3000.0 * (np.arange(256) < 4), y), abs=1e-9
    )
    assert abs(linear_cka(x, y) - clean) < 0.05
    assert gram_linear(x).dtype.is_floating_point


def test_representations_of_different_examples_are_refused() -> None:
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(np.zeros((5, 3)), np.zeros((6, 3)))


def test_the_layer_matrix_holds_every_pair_and_its_diagonal_the_same_layers() -> None:
    rng = np.random.default_rng(7)
    layers_a = [rng.normal(size=(60, 16)) for _ in range(3)]
    layers_b = [layers_a[0] @ rng.normal(size=(16, 16)), layers_a[1], rng.normal(size=(60, 8))]
    matrix = cka_matrix(layers_a, layers_b)
    assert matrix.shape == (3, 3)
    assert matrix[1, 1] == pytest.approx(1.0)
    for i in range(3):
        for j in range(3):
            expected = linear_cka(layers_a[i], layers_b[j], debiased=True)
            assert matrix[i, j] == pytest.approx(expected, abs=1e-12)
    assert abs(matrix[2, 2]) < 0.2  # unrelated


def _related(rng: np.random.Generator, n: int, mixing: np.ndarray) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(n, mixing.shape[0]))
    return x, x @ mixing + 1.5 * rng.normal(size=(n, mixing.shape[1]))


def test_half_sample_intervals_cover_the_population_value_at_their_level() -> None:
    """90% intervals from samples of 40 examples contain the population CKA (computed on
    200 000 examples, where the biased and debiased estimators agree) about 90% of the time."""
    rng = np.random.default_rng(0)
    mixing = 0.5 * rng.normal(size=(8, 8))
    truth = linear_cka(*_related(rng, 200_000, mixing))
    hits = []
    for rep in range(100):
        x, y = _related(rng, 40, mixing)
        low, high = half_sample_intervals(
            [(gram_linear(x), gram_linear(y))], np.arange(40), 100, 0.9, seed=rep
        )
        hits.append(low[0] <= truth <= high[0])
    assert 0.8 <= np.mean(hits) <= 0.98


def test_half_sample_intervals_hold_each_pair_and_their_mean_and_resample_whole_examples() -> None:
    rng = np.random.default_rng(1)
    x, y = _related(rng, 30, 0.5 * rng.normal(size=(8, 8)))
    pairs = [(gram_linear(x), gram_linear(y)), (gram_linear(x), gram_linear(x))]
    low, high = half_sample_intervals(pairs, np.arange(30), 200, 0.9, seed=0)
    assert low.shape == high.shape == (3,)
    point = linear_cka(x, y, debiased=True)
    assert low[0] < point < high[0]
    assert low[1] == pytest.approx(1.0) and high[1] == pytest.approx(1.0)  # CKA(X, X) = 1 always
    assert low[2] < (point + 1) / 2 < high[2]
    # three token rows per example: whole examples are kept or dropped (30 examples, 90 rows)
    tokens = np.repeat(np.arange(30), 3)
    x3, y3 = np.repeat(x, 3, axis=0), np.repeat(y, 3, axis=0)
    low3, high3 = half_sample_intervals(
        [(gram_linear(x3), gram_linear(y3))], tokens, 50, 0.9, seed=0
    )
    assert low3[0] < linear_cka(x3, y3, debiased=True) < high3[0]
    with pytest.raises(ValueError, match="at least 8 examples"):
        half_sample_intervals(pairs, np.arange(6), 10, 0.9, seed=0)
