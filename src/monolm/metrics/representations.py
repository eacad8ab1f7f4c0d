"""Centered kernel alignment (CKA) between two representations of the same examples.

X (n x p) and Y (n x q) hold one row per example (a token or a pooled sequence). Everything is
computed in float64 on column-centred features: in fp32, uncentred activations with LLM-like
outlier dimensions give visibly wrong values (0.921 where the true value is 0.954).

- Linear CKA (Kornblith et al. 2019): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).
- Debiased CKA: HSIC as a U-statistic (Song et al. 2012; the gram matrices' diagonals zeroed).
  The plain (biased) estimator is far from 0 for unrelated representations when p is large
  relative to n (two independent 100 x 2048 Gaussians: 0.95); the debiased one is about 0.
- RBF CKA: kernel exp(-d^2 / (2 threshold^2 median(d^2))).
- Minibatch CKA (Nguyen, Raghu and Kornblith 2021): the unbiased HSIC_1 summed over batches,
  CKA = sum HSIC_1(K, L) / sqrt(sum HSIC_1(K, K) sum HSIC_1(L, L)), for data that does not fit
  in one gram matrix. Its batches must have at least 4 rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

MIN_BATCH = 4  # the unbiased HSIC divides by n (n - 3)


def as_float64(features: Any) -> torch.Tensor:
    """A 2-D float64 tensor (rows: examples) from a tensor or an array."""
    tensor = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if tensor.ndim != 2:
        raise ValueError(
            f"representations are n x features matrices, got shape {tuple(tensor.shape)}"
        )
    return tensor.detach().to(torch.float64)


def centred(features: Any) -> torch.Tensor:
    x = as_float64(features)
    return x - x.mean(dim=0, keepdim=True)


def gram_linear(features: Any) -> torch.Tensor:
    x = centred(features)
    return x @ x.T


def gram_rbf(features: Any, threshold: float = 1.0) -> torch.Tensor:
    """exp(-d^2 / (2 threshold^2 median(d^2))), d the Euclidean distance between rows."""
    x = as_float64(features)
    squared = (x * x).sum(dim=1)
    distances = (squared[:, None] + squared[None, :] - 2 * x @ x.T).clamp_min(0.0)
    median = float(np.median(distances.cpu().numpy()))  # numpy's: the mean of the two middles
    return torch.exp(-distances / (2 * threshold**2 * median))


def centre_gram(gram: torch.Tensor, debiased: bool = False) -> torch.Tensor:
    """H K H for the biased estimator; the U-statistic centring (diagonal zeroed) if debiased."""
    gram = gram.clone()
    n = gram.shape[0]
    if debiased:
        if n < MIN_BATCH:
            raise ValueError(f"debiased CKA needs at least {MIN_BATCH} examples, got {n}")
        gram.fill_diagonal_(0.0)
        means = gram.sum(dim=0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        gram = gram - means[:, None] - means[None, :]
        gram.fill_diagonal_(0.0)
    else:
        means = gram.mean(dim=0)
        means = means - means.mean() / 2
        gram = gram - means[:, None] - means[None, :]
    return gram


def cka_from_grams(gram_x: torch.Tensor, gram_y: torch.Tensor, debiased: bool = False) -> float:
    x, y = centre_gram(gram_x, debiased), centre_gram(gram_y, debiased)
    return float((x * y).sum() / (torch.linalg.norm(x) * torch.linalg.norm(y)))


def linear_cka(x: Any, y: Any, debiased: bool = False) -> float:
    """Linear CKA of two representations of the same n examples (rows)."""
    x, y = centred(x), centred(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA compares the same examples: {x.shape[0]} rows vs {y.shape[0]}")
    if not debiased:
        cross = torch.linalg.norm(y.T @ x) ** 2
        return float(cross / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))
    return cka_from_grams(x @ x.T, y @ y.T, debiased=True)


def rbf_cka(x: Any, y: Any, threshold: float = 1.0, debiased: bool = False) -> float:
    return cka_from_grams(gram_rbf(x, threshold), gram_rbf(y, threshold), debiased)


def unbiased_hsic(gram_x: torch.Tensor, gram_y: torch.Tensor) -> float:
    """HSIC_1 (Song et al. 2012) of two gram matrices of the same n >= 4 examples."""
    n = gram_x.shape[0]
    if n < MIN_BATCH:
        raise ValueError(f"the unbiased HSIC needs at least {MIN_BATCH} examples, got {n}")
    k, l = gram_x.clone(), gram_y.clone()  # noqa: E741
    k.fill_diagonal_(0.0)
    l.fill_diagonal_(0.0)
    ones = torch.ones(n, dtype=torch.float64, device=k.device)
    trace = (k * l.T).sum()
    sums = (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
    cross = 2 * (ones @ k @ l @ ones) / (n - 2)
    return float((trace + sums - cross) / (n * (n - 3)))


class MinibatchCKA:
    """Linear CKA accumulated over batches of paired rows (Nguyen et al. 2021)."""

    def __init__(self) -> None:
        self.xy = self.xx = self.yy = 0.0
        self.batches = 0

    def update(self, x: Any, y: Any) -> None:
        gx, gy = as_float64(x), as_float64(y)
        gx, gy = gx @ gx.T, gy @ gy.T
        self.xy += unbiased_hsic(gx, gy)
        self.xx += unbiased_hsic(gx, gx)
        self.yy += unbiased_hsic(gy, gy)
        self.batches += 1

    def compute(self) -> float:
        if not self.batches:
            raise ValueError("no batch was added")
        return self.xy / float(np.sqrt(self.xx * self.yy))


def minibatch_cka(pairs: Iterable[tuple[Any, Any]]) -> float:
    accumulator = MinibatchCKA()
    for x, y in pairs:
        accumulator.update(x, y)
    return accumulator.compute()


def cka_of_centred(centred_x: torch.Tensor, centred_y: torch.Tensor) -> float:
    """CKA of two gram matrices already centred (`centre_gram`): centre each once and compare
    it with many."""
    norms = torch.linalg.norm(centred_x) * torch.linalg.norm(centred_y)
    return float((centred_x * centred_y).sum() / norms)


def cka_matrix(layers_a: list[Any], layers_b: list[Any], debiased: bool = True) -> np.ndarray:
    """Linear CKA of every layer of one subject with every layer of another (rows: a's layers),
    on the same examples; its diagonal compares layer i with layer i."""
    centred_a = [centre_gram(gram_linear(x), debiased) for x in layers_a]
    centred_b = [centre_gram(gram_linear(y), debiased) for y in layers_b]
    return np.array([[cka_of_centred(a, b) for b in centred_b] for a in centred_a])


def half_sample_intervals(
    gram_pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    groups: np.ndarray | Sequence[np.ndarray],
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Confidence intervals of debiased CKA, each pair and their mean, by half-sampling examples.

    Each replicate keeps a random half of the examples, drawn without replacement, and
    recomputes every pair's CKA on their rows. `groups[i]` is the example row i belongs to (a
    row per example when pooled, a row per token otherwise); one array for every pair, or one
    per pair (a T5's encoder and decoder rows are different tokens of the same examples).

    The ordinary bootstrap does not work here: an example drawn twice gives two identical rows,
    which the U-statistic takes for two perfectly similar examples, so every replicate comes out
    higher than the estimate (0.50 and up around a point value of 0.49). For half-samples,
    var(theta_half - theta_n) = var(theta_n) (without replacement, m = n / 2: sigma^2 (1/m -
    1/n) = sigma^2 / n), so the basic interval [2 theta_n - q_hi, 2 theta_n - q_lo] applies,
    which also removes the estimator's O(1/n) bias to first order. Coverage is tested.

    Returns (low, high) arrays of length len(gram_pairs) + 1: each pair's, then their mean's.
    """
    if isinstance(groups, np.ndarray):
        per_pair = [groups] * len(gram_pairs)
    else:
        per_pair = [np.asarray(g) for g in groups]
    examples = np.unique(np.concatenate(per_pair))
    half = len(examples) // 2
    if half < MIN_BATCH:
        raise ValueError(f"intervals need at least {2 * MIN_BATCH} examples, got {len(examples)}")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError(f"resamples={resamples} >= 1 and confidence={confidence} in (0, 1)")
    point = np.array([cka_from_grams(gx, gy, debiased=True) for gx, gy in gram_pairs])
    point = np.append(point, point.mean())
    rng = np.random.default_rng(seed)
    replicates = np.empty((resamples, len(point)))
    for r in range(resamples):
        kept = np.sort(rng.choice(examples, size=half, replace=False))
        values = []
        for (gx, gy), rows_of in zip(gram_pairs, per_pair, strict=True):
            rows = torch.as_tensor(np.flatnonzero(np.isin(rows_of, kept)), device=gx.device)
            values.append(cka_from_grams(gx[rows][:, rows], gy[rows][:, rows], debiased=True))
        replicates[r] = [*values, float(np.mean(values))]
    tail = (1 - confidence) / 2
    q_low, q_high = np.quantile(replicates, [tail, 1 - tail], axis=0)
    return np.clip(2 * point - q_high, -1.0, 1.0), np.clip(2 * point - q_low, -1.0, 1.0)
