"""`attack.audit`: how far a search's first step is from the best single change there is.

Covered: the flip searches (`attack=hotflip`, `attack=gcg` and their random controls
`attack=random attack.mimic=hotflip|gcg`; rows `kind: flip`, one per audited example) and the
trigger search (`attack=uat`, `attack=random attack.mimic=uat`; rows `kind: trigger`, one per
audited restart, below).

Flip searches.

On the first `attack.audit.examples` attacked examples, after the attack (same examples, same
objective, no randomness, so the attack's own results are untouched), every single flip HotFlip
may make (every body position times every candidate token but the one already there: the same
`blocked` candidate set and the same flippable positions as the search) is scored with real
batched forward passes of the attack's `Objective` (inference mode, the transform's cached
weights). Per example:

- `optimum_gain`: the exhaustive optimum, the largest loss increase (nats/token, the objective
  HotFlip maximises) over all single flips;
- `first_step_gain` / `first_step_ratio`: the attack's first flip's gain (0 when it made none) and
  its ratio to the optimum (for the random control: its first accepted flip);
- `optimum_rank`: the optimum's rank in HotFlip's first-order ordering `(e_v - e_i) . g_i` of all
  (position, token) pairs (1 = HotFlip ranks it first; ties with it counted in its favour) and
  `optimum_in_top_k`: whether the first step re-scored it;
- `spearman`: the rank correlation of first-order score and true gain over all flips;
- `random_expected_gain` / `random_expected_ratio`: the random control's exact expected
  first-step gain at the queries of HotFlip's first step (q = 1 gradient + top_k re-scored
  candidates; the control spends them all on forward passes, so it draws q flips), as it really
  draws: q independent draws (with replacement), each a position uniform over the flippable
  positions, then a token uniform over the candidates other than the one there; a draw's gain
  counts only when positive (a step accepts a flip only if it raises the loss). With q draws of
  probabilities w the expected maximum is exact: sum over the ascending gains of
  (g_(k+1) - g_(k)) P(max > g_(k)), P(max > g_(k)) = 1 - (1 - S_k)^q, S_k the weight above g_(k).
  `random_expected_ratio_uniform` is the same for q distinct flips drawn uniformly without
  replacement from the table (sum_i g_(i) C(N - i, q - 1) / C(N, q), gains descending).

GCG (`attack=gcg`) uses HotFlip's positions, candidates and first-order scores, so the table is
the same; its first step is one gradient and B sampled candidates (deduplicated, each scored
once). `first_step_gain` is the best gain after that step (its budget curve's second point, 0
when the step accepted nothing) and `first_step_queries` what the step spent (1 + the distinct
candidates). `optimum_in_top_k`: the optimum's token is among its position's top-k by
first-order score (GCG could sample it; first-order ties counted in its favour);
`optimum_sample_probability`: the chance that B draws sample it, 1 - (1 - 1/(P k_p))^B (P the
positions with a candidate, k_p = min(top_k, that position's candidates); 1 when B covers the
pool, sum_p k_p, since GCG then scores every flip of it). The random control
of GCG (gcg.py `_uniform`) draws a position uniform over the allowed ones, then a token uniform
over the candidates other than the current one, with replacement, and scores only the distinct
flips: its q queries are q DISTINCT flips, the first q distinct of an i.i.d. sequence of draws
with probabilities w (successive sampling without replacement, each new flip drawn in proportion
to its w among those not yet drawn). `random_expected_gain` is its E[max(0, best of those q)] at
q = GCG's first-step queries (for a control run: 1 + B, the most that step can spend), computed
exactly (`expected_max_distinct`): w takes one value per class of flips (a position's
candidates number V or V - 1), the law of how many of the q flips fall in each class follows
from the recursion on the classes' remaining weights, and given those counts each class's flips
are uniform without replacement, so P(max <= g_(k)) = prod_c C(l_c, s_c) / C(n_c, s_c) (l_c
flips of class c among the k smallest); log-gamma in float64 (relative error ~1e-15 on small
tables, below 1e-7 on tables of 10^7 flips).

Trigger search (UAT). For each of the first `attack.audit.examples` restarts: trigger position 0
(the first token) takes every candidate token (the same candidate vocabulary and blocking as
the search: every candidate but the token already there), the rest of the trigger at the
restart's initial value, scored on the restart's first optimisation batch (the batch its first
step used) as the trigger search scores it: the mean loss over the batch, batched through the
Objective. `optimum_gain` is the best such mean loss minus the initial trigger's (may be <= 0:
no single change at position 0 helps); `first_step_gain` is the gain, in that same table, of
the token the search's first step left at position 0 after its position-0 stage (each step
updates positions left to right, position 0 first, with the rest still initial, and keeps the
initial token unless a scored candidate beats it: 0 then, `first_step_changed` false), so it
is the search's first-step gain restricted to position 0 and never exceeds the optimum;
`optimum_rank` / `spearman` use the first-order scores of the gradient averaged over the batch
(the search's own); `random_expected_gain` is exact: the control's candidates at a position are
a uniform subset without replacement of min(top_k, candidates) tokens other than the current
one, the number the gradient search scores at that stage for the same queries (both spend one
pass over the batch on the initial trigger's loss, with or without its gradient), and the
initial trigger competes (gains clipped at 0).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from monolm.attacks.base import (
    Attack,
    AttackOutcome,
    AttackRun,
    AttackSettings,
    AuditSettings,
    Search,
)
from monolm.attacks.examples import AttackExample
from monolm.attacks.gcg import GCGSearchSettings
from monolm.attacks.hotflip import FlipSettings, flip_scores, start_results
from monolm.attacks.objective import Objective
from monolm.attacks.triggers import Restart, TriggerSettings, _scored, trigger_scores
from monolm.attacks.vocabulary import CandidateVocabulary
from monolm.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "AuditSettings",
    "FlipTable",
    "TriggerTable",
    "audit_attack",
    "audit_text",
    "check_audit",
    "flip_table",
    "trigger_table",
]


class Cost:
    """What building an audit table spent: the objective's forward and gradient passes and the
    seconds since this was made (`charge` writes them onto the table)."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.start = time.perf_counter()
        self.queries = objective.queries
        self.gradients = objective.gradient_queries

    def charge(self, table: Any) -> None:
        table.forward_passes = self.objective.queries - self.queries
        table.gradient_passes = self.objective.gradient_queries - self.gradients
        table.seconds = time.perf_counter() - self.start


class FlipTable:
    """Every single flip of one example with its first-order score and its true gain."""

    def __init__(
        self,
        ids: tuple[int, ...],
        clean_loss: float,
        positions: np.ndarray,
        tokens: np.ndarray,
        first_order: np.ndarray,
        gains: np.ndarray,
        flippable: int,
    ) -> None:
        self.ids = ids
        self.clean_loss = clean_loss
        self.positions = positions  # [N] the flipped position
        self.tokens = tokens  # [N] the token put there
        self.first_order = first_order  # [N] HotFlip's first-order score (float64)
        self.gains = gains  # [N] loss after the flip - clean loss (float64)
        self.flippable = flippable  # positions the random proposer draws from
        self.forward_passes = 0
        self.gradient_passes = 0
        self.seconds = 0.0

    def draw_weights(self) -> np.ndarray:
        """[N] the probability that one draw of the random proposer is each flip: a position
        uniform over the flippable ones, then a token uniform over that position's candidates."""
        return draw_weights(self.positions, self.flippable)


def draw_weights(positions: np.ndarray, flippable: int) -> np.ndarray:
    _, inverse, counts = np.unique(positions, return_inverse=True, return_counts=True)
    weights = 1.0 / (flippable * counts[inverse].astype(np.float64))
    return weights / weights.sum()  # a flippable position without candidates is never drawn


def flip_table(
    objective: Objective,
    example: AttackExample,
    vocab: CandidateVocabulary,
    batch_size: int | None = None,
    progress: Any = None,
) -> FlipTable:
    """Score every single flip of `example` that HotFlip may make (batched forward passes)."""
    cost = Cost(objective)
    # HotFlip's own first step: its clean loss and flippable positions, its blocked scores.
    (result,) = start_results(objective, [example], [None])
    clean = result.clean.ids
    ((scores,),) = flip_scores(objective, [result], vocab)
    scores = scores.cpu()
    pairs = torch.isfinite(scores).nonzero()  # by position, then token
    positions, tokens = pairs[:, 0].numpy(), pairs[:, 1].numpy()
    first = scores[pairs[:, 0], pairs[:, 1]].double().numpy()
    losses = flip_losses(objective, clean, example.target, positions, tokens, batch_size, progress)
    table = FlipTable(
        clean,
        result.best.loss,
        positions,
        tokens,
        first,
        losses - result.best.loss,
        int(result.positions.sum()),
    )
    cost.charge(table)
    return table


def flip_losses(
    objective: Objective,
    ids: Sequence[int],
    target: tuple[int, ...],
    positions: np.ndarray,
    tokens: np.ndarray,
    batch_size: int | None = None,
    progress: Any = None,
) -> np.ndarray:
    """The loss of `ids` with each (position, token) flip, through `objective.losses` in chunks
    (of many batches: the inference context, cached weights included, is entered per chunk)."""
    out = np.empty(len(positions), dtype=np.float64)
    saved = objective.batch_size
    objective.batch_size = batch_size or saved
    chunk = 16 * objective.batch_size
    base = list(ids)
    try:
        for begin in range(0, len(positions), chunk):
            rows = []
            for position, token in zip(
                positions[begin : begin + chunk].tolist(),
                tokens[begin : begin + chunk].tolist(),
                strict=True,
            ):
                row = base.copy()
                row[position] = token
                rows.append((tuple(row), target))
            out[begin : begin + len(rows)] = objective.losses(rows)
            if progress is not None:
                progress(len(rows))
    finally:
        objective.batch_size = saved
    return out


# --- the numbers ------------------------------------------------------------------------------


def expected_max_with_replacement(values: np.ndarray, weights: np.ndarray, q: int) -> float:
    """E[max] of q independent draws from `values` with probabilities `weights` (exact):
    g_(1) + sum_k (g_(k+1) - g_(k)) (1 - (1 - S_k)^q), ascending, S_k the weight above g_(k)."""
    if q < 1 or len(values) == 0:
        raise ValueError("need q >= 1 draws from a non-empty table")
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    w = np.asarray(weights, dtype=np.float64)[order]
    w = w / w.sum()
    above = np.cumsum(w[::-1])[::-1][1:]  # S_k = weight of g_(k+1..N), k = 1..N-1
    exceeds = -np.expm1(q * np.log1p(-np.clip(above, 0.0, 1.0)))  # P(max > g_(k))
    return float(v[0] + np.sum(np.diff(v) * exceeds))


def expected_max_without_replacement(values: np.ndarray, q: int) -> float:
    """E[max] of q distinct entries drawn uniformly without replacement (exact):
    sum_i g_(i) C(N - i, q - 1) / C(N, q), descending; the probabilities by their ratio
    p_(i+1) / p_i = 1 - (q - 1) / (N - i) summed in logs (no large binomials)."""
    n = len(values)
    if q < 1 or n == 0:
        raise ValueError("need q >= 1 draws from a non-empty table")
    q = min(q, n)
    v = np.sort(np.asarray(values, dtype=np.float64))[::-1][: n - q + 1]
    i = np.arange(1, n - q + 1, dtype=np.float64)  # ratios from p_1 to p_(n-q+1)
    log_p = np.log(q / n) + np.concatenate(([0.0], np.cumsum(np.log1p(-(q - 1) / (n - i)))))
    return float(np.sum(v * np.exp(log_p)))


def _log_factorials(n: int) -> np.ndarray:
    return np.array([math.lgamma(m + 1.0) for m in range(n + 1)], dtype=np.float64)


def distinct_class_counts(sizes: Sequence[int], weights: Sequence[float], q: int) -> dict:
    """The law of how many of the first q distinct draws fall in each class (class c: sizes[c]
    entries of weight weights[c] each), by the exact recursion: the next distinct entry is in
    class c with probability w_c (n_c - s_c) / sum_d w_d (n_d - s_d). {counts: probability}."""
    states: dict[tuple[int, ...], float] = {tuple(0 for _ in sizes): 1.0}
    for _ in range(q):
        nxt: dict[tuple[int, ...], float] = {}
        for state, p in states.items():
            left = [w * (n - s) for w, n, s in zip(weights, sizes, state, strict=True)]
            total = sum(left)
            for c, mass in enumerate(left):
                if mass > 0:
                    key = (*state[:c], state[c] + 1, *state[c + 1 :])
                    nxt[key] = nxt.get(key, 0.0) + p * mass / total
        states = nxt
    return states


def expected_max_distinct(values: np.ndarray, weights: np.ndarray, q: int) -> float:
    """E[max] of the first q DISTINCT entries of an i.i.d. sequence of draws from `values` with
    probabilities `weights` (successive sampling; what a proposer that draws with replacement and
    scores each distinct draw once has seen after q queries). Exact for weights taking a few
    values: the class counts' law (`distinct_class_counts`), then, given them, each class
    uniform without replacement: P(max <= g_(k)) = prod_c C(l_c(k), s_c) / C(n_c, s_c)."""
    n = len(values)
    if q < 1 or n == 0:
        raise ValueError("need q >= 1 draws from a non-empty table")
    q = min(q, n)
    order = np.argsort(values, kind="stable")
    v = np.asarray(values, dtype=np.float64)[order]
    w = np.asarray(weights, dtype=np.float64)[order]
    levels, cls = np.unique(w, return_inverse=True)
    if len(levels) > 4:
        raise ValueError(f"{len(levels)} distinct weights: exact for at most 4")
    steps = np.diff(v)  # g_(k+1) - g_(k), k = 1..n-1: P(max <= g_(k)) weighs each
    keep = steps > 0
    sizes = np.bincount(cls, minlength=len(levels))
    below = [np.cumsum(cls == c)[:-1][keep] for c in range(len(levels))]  # l_c(k)
    steps = steps[keep]
    logf = [_log_factorials(int(m)) for m in sizes]
    law = distinct_class_counts(sizes.tolist(), levels.tolist(), q)
    at_most = np.zeros(len(steps))  # sum over class counts of P(counts) P(max <= g_(k) | counts)
    for counts, p in law.items():
        if p < 1e-18:
            continue  # contributes under 1e-18 x the largest gain
        log_p = np.zeros(len(steps))
        for c, s in enumerate(counts):
            if s == 0:
                continue
            low, f = below[c], logf[c]
            m = int(sizes[c])
            ok = low >= s
            term = np.full(len(steps), -np.inf)
            term[ok] = f[low[ok]] - f[low[ok] - s] - (f[m] - f[m - s])  # log C(l, s) / C(m, s)
            log_p += term
        at_most += p * np.exp(log_p)
    return float(v[-1] - np.sum(steps * at_most))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inverse]).astype(np.float64)  # 1-based, ties averaged


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None if either is constant."""
    rx, ry = _average_ranks(np.asarray(x)), _average_ranks(np.asarray(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    norm = float(np.sqrt(np.sum(rx * rx) * np.sum(ry * ry)))
    return float(np.sum(rx * ry) / norm) if norm > 0 else None


def optimum_rank(first_order: np.ndarray, gains: np.ndarray) -> int:
    """The rank (1 = first) of the best flip in the first-order ordering; of several flips with
    the optimum gain the best ranked, and first-order ties counted in its favour."""
    best = gains == gains.max()
    return 1 + int(np.sum(first_order > first_order[best].max()))


def _ratio(gain: float | None, optimum: float) -> float | None:
    return gain / optimum if gain is not None and optimum > 0 else None


def first_flip_gain(extra: dict[str, Any]) -> float:
    """The gain of the attack's first accepted flip (0 without one) from its loss trajectory."""
    trajectory = extra.get("loss_trajectory") or []
    return float(trajectory[1] - trajectory[0]) if len(trajectory) > 1 else 0.0


def first_step_curve(extra: dict[str, Any]) -> tuple[float, int | None]:
    """(gain, queries) of the attack's first step from its budget curve: the best gain after
    it (0 without a step) and the queries it spent (None without a step)."""
    curve = extra.get("curve") or []
    if len(curve) < 2:
        return 0.0, None
    return float(curve[1][1]), int(curve[1][0] - curve[0][0])


def first_step_queries(settings: FlipSettings, flips: int) -> int:
    """The queries of HotFlip's first step: one gradient and the top_k candidates re-scored."""
    return 1 + min(settings.top_k, flips) if settings.budget > 0 and flips > 0 else 0


def audit_row(
    table: FlipTable,
    first_gain: float,
    settings: FlipSettings | GCGSearchSettings,
    decode: Any = None,
    first_queries: int | None = None,
) -> dict[str, Any]:
    """One example's audit record. HotFlip (`FlipSettings`): q = 1 + top_k; GCG
    (`GCGSearchSettings`): q = `first_queries`, GCG's first step's queries (None: 1 + B, the
    most it can spend), and the control's flips are distinct (`expected_max_distinct`)."""
    n = len(table.gains)
    row: dict[str, Any] = {
        "kind": "flip",
        "positions": len(np.unique(table.positions)),
        "flips": n,
        "clean_loss": table.clean_loss,
        "first_step_gain": first_gain,
        "forward_passes": table.forward_passes,
        "gradient_passes": table.gradient_passes,
        "seconds": table.seconds,
    }
    if n == 0:
        return {**row, "optimum_gain": None}
    best = int(np.argmax(table.gains))
    optimum = float(table.gains[best])
    position, token = int(table.positions[best]), int(table.tokens[best])
    old = table.ids[position]
    clipped = np.maximum(table.gains, 0.0)  # a step keeps a flip only if it raises the loss
    rank = optimum_rank(table.first_order, table.gains)
    if isinstance(settings, GCGSearchSettings):
        q = min(first_queries if first_queries is not None else 1 + settings.candidates, n)
        if settings.budget == 0:
            q = 0
        random_gain = expected_max_distinct(clipped, table.draw_weights(), q) if q else None
        gcg = gcg_optimum_sampling(table, best, settings)
        in_top_k = gcg["optimum_position_rank"] <= settings.top_k
    else:
        q = first_step_queries(settings, n)
        random_gain = expected_max_with_replacement(clipped, table.draw_weights(), q) if q else None
        gcg, in_top_k = {}, rank <= settings.top_k
    uniform_gain = expected_max_without_replacement(clipped, q) if q else None
    row.update(
        {
            "optimum_gain": optimum,
            "optimum": {
                "position": position,
                "old": old,
                "new": token,
                **({"old_text": decode([old]), "new_text": decode([token])} if decode else {}),
            },
            "first_step_ratio": _ratio(first_gain, optimum),
            "optimum_rank": rank,
            "optimum_in_top_k": in_top_k,
            **gcg,
            "spearman": spearman(table.first_order, table.gains),
            "random_queries": q,
            "random_expected_gain": random_gain,
            "random_expected_ratio": _ratio(random_gain, optimum),
            "random_expected_ratio_uniform": _ratio(uniform_gain, optimum),
            "grid": search_grid(table),
        }
    )
    return row


GRID_TOP_K = (1, 4, 16, 64, 256, 1024)
GRID_CANDIDATES = (16, 64, 256, 1024)


def search_grid(
    table: FlipTable,
    top_ks: Sequence[int] = GRID_TOP_K,
    candidates: Sequence[int] = GRID_CANDIDATES,
) -> dict[str, Any]:
    """Each search's expected first-step ratio to the optimum at other settings, exactly, from
    the same table (no more forward passes): how the defaults were chosen (benchmarks/RESULTS.md).
    The settings are `top_k` x `candidates` (GRID_TOP_K x GRID_CANDIDATES in attack.json).

    - `hotflip[i]`: HotFlip with top_k = top_ks[i] re-scores the top_k flips by first-order
      score and keeps the best if it raises the loss: max(0, best of them) / optimum (exact;
      first-order ties broken by table order). `hotflip_random[i]`: its random control at the
      same 1 + top_k queries, drawn as that control draws (with replacement).
    - `gcg[i][j]`: GCG with top_k = top_ks[i], B = candidates[j] (`gcg._sampled`): when B covers
      the pool (each position's top_k flips) every flip of it, else B independent draws, a
      position uniform over those with a candidate, then a token uniform over its top_k;
      E[max(0, best)] / optimum (exact, `expected_max_with_replacement`). Its queries: 1 + the
      distinct flips scored, at most 1 + min(B, pool). `gcg_random[i][j]`: GCG's control at
      1 + min(B, pool) distinct flips (`expected_max_distinct`), what it can spend on that step,
      so it is never short-changed.
    """
    gains = np.maximum(table.gains, 0.0)
    optimum = float(table.gains.max()) if len(gains) else 0.0
    out: dict[str, Any] = {"top_k": list(top_ks), "candidates": list(candidates)}
    if optimum <= 0:
        return {**out, "hotflip": None, "hotflip_random": None, "gcg": None, "gcg_random": None}
    weights = table.draw_weights()
    order = np.argsort(-table.first_order, kind="stable")
    best_so_far = np.maximum.accumulate(gains[order])
    out["hotflip"] = [float(best_so_far[min(k, len(order)) - 1]) / optimum for k in top_ks]
    out["hotflip_random"] = [
        expected_max_with_replacement(gains, weights, 1 + k) / optimum for k in top_ks
    ]
    # each flip's rank among its position's tokens by first-order score (0 = best)
    by_position = np.lexsort((-table.first_order, table.positions))
    starts = np.searchsorted(table.positions[by_position], table.positions[by_position], "left")
    rank = np.empty(len(gains), dtype=np.int64)
    rank[by_position] = np.arange(len(gains)) - starts
    per_position = np.bincount(table.positions)
    sampled = int(np.count_nonzero(per_position))
    random_at: dict[int, float] = {}  # q distinct flips -> the control's expected ratio

    def control(q: int) -> float:
        if q not in random_at:
            random_at[q] = expected_max_distinct(gains, weights, q) / optimum
        return random_at[q]

    grid, grid_random = [], []
    for k in top_ks:
        pool = rank < k
        size = int(pool.sum())
        kept = np.minimum(per_position[table.positions[pool]], k)
        pool_weights = 1.0 / (sampled * kept.astype(np.float64))
        best = float(gains[pool].max()) / optimum
        grid.append(
            [
                best
                if b >= size
                else expected_max_with_replacement(gains[pool], pool_weights, b) / optimum
                for b in candidates
            ]
        )
        grid_random.append([control(min(1 + min(b, size), len(gains))) for b in candidates])
    out["gcg"], out["gcg_random"] = grid, grid_random
    return out


def aggregate_grid(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The grid's mean over the examples that have one."""
    grids = [r["grid"] for r in rows if r.get("grid") and r["grid"].get("hotflip") is not None]
    if not grids:
        return None
    out = {key: grids[0][key] for key in ("top_k", "candidates")}
    for key in ("hotflip", "hotflip_random", "gcg", "gcg_random"):
        out[key] = np.mean([g[key] for g in grids], axis=0).tolist()
    out["examples"] = len(grids)
    return out


def gcg_optimum_sampling(
    table: FlipTable, best: int, settings: GCGSearchSettings
) -> dict[str, Any]:
    """Where GCG's first step could find the optimum: its rank among its position's tokens by
    first-order score (ties in its favour) and the chance that B draws sample it (1 when B
    covers the pool: then every flip of it is scored)."""
    position = table.positions[best]
    here = table.positions == position
    position_rank = 1 + int(np.sum(table.first_order[here] > table.first_order[best]))
    _, counts = np.unique(table.positions, return_counts=True)
    pool = int(np.minimum(counts, settings.top_k).sum())
    kept = min(settings.top_k, int(here.sum()))
    once = 1.0 / (len(counts) * kept)
    if settings.candidates >= pool or once >= 1:  # GCG scores its whole pool
        chance = 1.0
    else:
        chance = -math.expm1(settings.candidates * math.log1p(-once))
    return {
        "optimum_position_rank": position_rank,
        "optimum_sample_probability": chance if position_rank <= settings.top_k else 0.0,
    }


AGGREGATED = (
    "optimum_gain",
    "first_step_gain",
    "first_step_ratio",
    "optimum_rank",
    "optimum_sample_probability",
    "spearman",
    "random_expected_ratio",
    "random_expected_ratio_uniform",
    "first_step_queries",
    "forward_passes",
    "seconds",
)


def aggregate_audit(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max of each number over the examples that have it."""
    out: dict[str, Any] = {"examples": len(rows)}
    for key in AGGREGATED:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        out[key] = (
            {
                "mean": float(np.mean(values)),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
            if values
            else None
        )
    out["optimum_in_top_k"] = sum(bool(r.get("optimum_in_top_k")) for r in rows)
    grid = aggregate_grid(rows)
    if grid is not None:
        out["grid"] = grid
    return out


# --- the trigger search ------------------------------------------------------------------------


class TriggerTable:
    """Every token at trigger position 0 (the rest of the trigger fixed) with its first-order
    score and its true gain: the mean loss over the batch minus the initial trigger's."""

    def __init__(
        self,
        trigger: tuple[int, ...],
        initial_loss: float,
        tokens: np.ndarray,
        first_order: np.ndarray,
        gains: np.ndarray,
    ) -> None:
        self.trigger = trigger
        self.initial_loss = initial_loss
        self.tokens = tokens  # [N] the token put at position 0
        self.first_order = first_order  # [N] the search's first-order score (float64)
        self.gains = gains  # [N] batch mean loss with it - with the initial trigger (float64)
        self.forward_passes = 0
        self.gradient_passes = 0
        self.seconds = 0.0

    def gain_of(self, token: int) -> float:
        """The gain of putting `token` at position 0 (0 for the token already there)."""
        if token == self.trigger[0]:
            return 0.0
        (where,) = np.nonzero(self.tokens == token)
        if len(where) == 0:
            raise ValueError(f"token {token} is not a candidate at trigger position 0")
        return float(self.gains[where[0]])


def trigger_table(
    objective: Objective,
    batch: Sequence[AttackExample],
    trigger: tuple[int, ...],
    settings: TriggerSettings,
    vocab: CandidateVocabulary,
    batch_size: int | None = None,
    progress: Any = None,
) -> TriggerTable:
    """Score every candidate token at trigger position 0 of `trigger` on `batch` (the mean loss
    over the batch, as the trigger search scores a trigger), in batched forward passes."""
    cost = Cost(objective)
    _, scores = trigger_scores(objective, batch, trigger, settings, vocab)
    first = scores[0].cpu()
    tokens = torch.isfinite(first).nonzero().squeeze(1)
    saved = objective.batch_size
    objective.batch_size = batch_size or saved
    try:
        (initial,) = _scored(objective, batch, [trigger], settings.position)
        per_chunk = max(1, 16 * objective.batch_size // max(1, len(batch)))
        losses = np.empty(len(tokens), dtype=np.float64)
        listed = tokens.tolist()
        for begin in range(0, len(listed), per_chunk):
            chunk = [(token, *trigger[1:]) for token in listed[begin : begin + per_chunk]]
            losses[begin : begin + len(chunk)] = _scored(objective, batch, chunk, settings.position)
            if progress is not None:
                progress(len(chunk))
    finally:
        objective.batch_size = saved
    table = TriggerTable(
        tuple(trigger),
        initial,
        tokens.numpy(),
        first[tokens].double().numpy(),
        losses - initial,
    )
    cost.charge(table)
    return table


def trigger_audit_row(
    table: TriggerTable,
    restart: Restart,
    settings: TriggerSettings,
    decode: Any = None,
) -> dict[str, Any]:
    """One restart's audit record (trigger position 0, its first batch, the rest initial)."""
    n = len(table.gains)
    changed = restart.first_position_token is not None and (
        restart.first_position_token != table.trigger[0]
    )
    first_gain = (
        table.gain_of(restart.first_position_token)
        if restart.first_position_token is not None
        else None
    )
    row: dict[str, Any] = {
        "kind": "trigger",
        "restart": restart.index,
        "trigger_position": 0,
        "initial": list(table.trigger),
        "batch": list(restart.first_batch),
        "candidates": n,
        "initial_loss": table.initial_loss,
        "first_step_token": restart.first_position_token,
        "first_step_changed": changed,
        "first_step_gain": first_gain,
        "first_step_scored": restart.first_position_scored,
        "forward_passes": table.forward_passes,
        "gradient_passes": table.gradient_passes,
        "seconds": table.seconds,
    }
    if n == 0:
        return {**row, "optimum_gain": None}
    best = int(np.argmax(table.gains))
    optimum = float(table.gains[best])
    token, old = int(table.tokens[best]), table.trigger[0]
    q = min(settings.top_k, n)  # what either proposer scores at position 0 for equal queries
    random_gain = expected_max_without_replacement(np.maximum(table.gains, 0.0), q)
    rank = optimum_rank(table.first_order, table.gains)
    row.update(
        {
            "optimum_gain": optimum,
            "optimum": {
                "old": old,
                "new": token,
                **({"old_text": decode([old]), "new_text": decode([token])} if decode else {}),
            },
            "first_step_ratio": _ratio(first_gain, optimum),
            "optimum_rank": rank,
            "optimum_in_top_k": rank <= settings.top_k,
            "spearman": spearman(table.first_order, table.gains),
            "random_queries": q,
            "random_expected_gain": random_gain,
            "random_expected_ratio": _ratio(random_gain, optimum),
        }
    )
    return row


def audit_restarts(
    objective: Objective,
    optimization: Sequence[AttackExample],
    restarts: Sequence[Restart],
    settings: TriggerSettings,
    vocab: CandidateVocabulary,
    batch_size: int | None = None,
    decode: Any = None,
) -> list[dict[str, Any]]:
    """The trigger audit of each restart that took a step (others: a row without numbers)."""
    rows = []
    for index, restart in enumerate(restarts):
        if not restart.first_batch:
            rows.append({"kind": "trigger", "restart": restart.index, "optimum_gain": None})
            continue
        batch = [optimization[i] for i in restart.first_batch]
        with tqdm(
            desc=f"audit: restart {index + 1}/{len(restarts)}: every token at trigger position 0",
            unit="token",
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            table = trigger_table(
                objective, batch, restart.initial, settings, vocab, batch_size, bar.update
            )
        row = trigger_audit_row(table, restart, settings, decode)
        rows.append(row)
        log.info(
            "audit restart %d/%d: %d tokens, optimum gain %.4g, first step %s; cost %d forward "
            "passes + %d gradient, %.1f s",
            index + 1,
            len(restarts),
            row["candidates"],
            row["optimum_gain"] if row["optimum_gain"] is not None else float("nan"),
            row["first_step_gain"],
            row["forward_passes"],
            row["gradient_passes"],
            row["seconds"],
        )
    return rows


# --- attack.py's hook -------------------------------------------------------------------------

AUDITED = (FlipSettings, GCGSearchSettings, TriggerSettings)


def audited_search(kind: Attack, settings: AttackSettings) -> tuple[str, Any]:
    """The search an attack runs (the random control's: the one it mimics) and its settings
    (flip, gcg or trigger), None unless the audit covers it."""
    mimicked = getattr(kind, "mimicked", None)
    search = mimicked(settings) if mimicked is not None else kind
    own = search.settings_of(settings) if isinstance(search, Search) else None
    return search.name, own if isinstance(own, AUDITED) else None


def check_audit(kind: Attack, settings: AttackSettings) -> None:
    """Before any model loads: the audit covers HotFlip, GCG, UAT and their random controls."""
    name, own = audited_search(kind, settings)
    if settings.audit.examples > 0 and own is None:
        raise UserError(
            f"attack.audit.examples={settings.audit.examples}: the audit covers attack=hotflip, "
            "gcg, uat and attack=random attack.mimic=hotflip|gcg|uat, not "
            f"{name}; set attack.audit.examples=0"
        )


def audit_attack(
    kind: Attack, settings: AttackSettings, run: AttackRun, outcome: AttackOutcome
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Audit the first `settings.audit.examples` examples the attack ran on (UAT: restarts):
    (attack.json's `audit` entry, audit.jsonl's rows). Deterministic; spends its own forward
    passes."""
    audit: AuditSettings = settings.audit
    name, own = audited_search(kind, settings)
    assert own is not None, "check_audit runs first"
    if isinstance(own, TriggerSettings):
        rows = audit_restarts(
            run.objective,
            outcome.memory["optimization"],
            outcome.memory["restarts"][: audit.examples],
            own,
            run.vocab,
            audit.batch_size,
            run.tokenizer.decode,
        )
        conventions = TRIGGER_CONVENTIONS
    else:
        rows = audit_examples(name, own, run, outcome, audit)
        conventions = GCG_CONVENTIONS if isinstance(own, GCGSearchSettings) else FLIP_CONVENTIONS
    summary = {
        "settings": {"examples": audit.examples, "batch_size": audit.batch_size},
        "search": name,
        "kind": "trigger" if isinstance(own, TriggerSettings) else "flip",
        **aggregate_audit(rows),
        "conventions": conventions,
    }
    return summary, rows


def audit_examples(
    name: str,
    own: FlipSettings | GCGSearchSettings,
    run: AttackRun,
    outcome: AttackOutcome,
    audit: AuditSettings,
) -> list[dict[str, Any]]:
    """The flip audit of the first `audit.examples` examples."""
    examples = run.examples[: audit.examples]
    gradient = outcome.info.get("proposer", "gradient") == "gradient"
    rows = []
    for index, example in enumerate(examples):
        with tqdm(
            desc=f"audit: example {index + 1}/{len(examples)}: every single flip",
            unit="flip",
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            table = flip_table(run.objective, example, run.vocab, audit.batch_size, bar.update)
        extra = outcome.per_example[index]
        if isinstance(own, GCGSearchSettings):
            gain, spent = first_step_curve(extra)
            # GCG's first step's queries; a control run: None, 1 + B (what GCG's can spend)
            first = audit_row(table, gain, own, run.tokenizer.decode, spent if gradient else None)
            first["first_step_queries"] = spent
        else:
            first = audit_row(table, first_flip_gain(extra), own, run.tokenizer.decode)
        row = {"id": example.id, **first}
        rows.append(row)
        log.info(
            "audit %d/%d (%s): %d flips, optimum gain %.4g, first step %.4g; cost %d forward "
            "passes + %d gradient, %.1f s",
            index + 1,
            len(examples),
            name,
            row["flips"],
            row["optimum_gain"] if row["optimum_gain"] is not None else float("nan"),
            row["first_step_gain"],
            row["forward_passes"],
            row["gradient_passes"],
            row["seconds"],
        )
    return rows


def audit_text(summary: dict[str, Any]) -> str:
    """One console line: how close the first step came to the optimum, against random."""

    def mean(key: str) -> str:
        value = summary.get(key)
        return "n/a" if not value else f"{value['mean']:.2f}"

    ratio = summary.get("first_step_ratio")
    low = f" (min {ratio['min']:.2f})" if ratio else ""
    return (
        f"audit of {summary['search']} on {summary['examples']} "
        f"{'restarts' if summary['kind'] == 'trigger' else 'examples'}: first step reaches "
        f"{mean('first_step_ratio')}{low} of the exhaustive single-change optimum, random at "
        f"equal queries {mean('random_expected_ratio')} (exact); first-order vs true gain "
        f"Spearman {mean('spearman')}; optimum among the first step's candidates in "
        f"{summary['optimum_in_top_k']}/{summary['examples']}"
    )


FLIP_CONVENTIONS = {
    "gain": "loss after a single flip - clean loss (nats/token, the attacked loss)",
    "optimum": "the largest gain over every (flippable position, candidate token)",
    "first_step_ratio": "the attack's first accepted flip's gain / optimum",
    "optimum_rank": "rank of the optimum in the first-order ordering (1 = first)",
    "spearman": "rank correlation of first-order score and gain over all flips",
    "random_expected_ratio": "exact E[max(0, best of q draws)] / optimum, q = 1 + top_k, "
    "draws as the random proposer makes them (position uniform, then token uniform; "
    "with replacement)",
    "random_expected_ratio_uniform": "the same for q distinct flips drawn uniformly "
    "without replacement from the table",
    "grid": "expected first-step ratio of hotflip[top_k] and gcg[top_k][B], and of their random "
    "controls at the same first-step queries (hotflip_random, gcg_random), computed exactly from "
    "the same table (attacks/audit.py search_grid)",
}

GCG_CONVENTIONS = {
    **FLIP_CONVENTIONS,
    "first_step_ratio": "the gain after the attack's first step (one gradient and B sampled "
    "candidates; the control: B uniform draws) / optimum; 0 if that step accepted nothing",
    "first_step_queries": "queries the first step spent (GCG: 1 gradient + distinct candidates)",
    "optimum_in_top_k": "the optimum's token is in its position's top-k by first-order score",
    "optimum_sample_probability": "chance that GCG's B draws sample the optimum",
    "random_expected_ratio": "exact E[max(0, best of q distinct flips)] / optimum, the first q "
    "distinct of the control's i.i.d. draws (position uniform, then token uniform; duplicates "
    "scored once), q = GCG's first-step queries (a control run: 1 + B)",
}

TRIGGER_CONVENTIONS = {
    "gain": "mean loss over the restart's first optimisation batch with the token at trigger "
    "position 0 (the rest initial) - with the initial trigger (nats/token)",
    "optimum": "the largest gain over every candidate token at trigger position 0",
    "first_step_ratio": "gain of the token the first step left at position 0 (after its "
    "position-0 stage; 0 if it kept the initial one) / optimum",
    "optimum_rank": "rank of the optimum in the first-order ordering of the batch-averaged "
    "gradient (1 = first)",
    "spearman": "rank correlation of first-order score and gain over every token",
    "random_expected_ratio": "exact E[max(0, best of q tokens)] / optimum, q = min(top_k, "
    "candidates) tokens uniform without replacement, as the control draws them",
}
