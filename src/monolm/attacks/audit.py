"""`attack.audit`: how far a flip search's first step is from the best single flip there is.

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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from monolm.attacks.base import Attack, AttackOutcome, AttackRun, AttackSettings, Search
from monolm.attacks.config import AuditSettings
from monolm.attacks.examples import AttackExample
from monolm.attacks.hotflip import FlipSettings, flip_scores, start_results
from monolm.attacks.objective import Objective
from monolm.attacks.vocabulary import CandidateVocabulary
from monolm.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["AuditSettings", "FlipTable", "audit_attack", "check_audit", "flip_table"]


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
    start, queries, gradients = time.perf_counter(), objective.queries, objective.gradient_queries
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
    table.forward_passes = objective.queries - queries
    table.gradient_passes = objective.gradient_queries - gradients
    table.seconds = time.perf_counter() - start
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


def first_step_queries(settings: FlipSettings, flips: int) -> int:
    """The queries of HotFlip's first step: one gradient and the top_k candidates re-scored."""
    return 1 + min(settings.top_k, flips) if settings.budget > 0 and flips > 0 else 0


def audit_row(
    table: FlipTable, first_gain: float, settings: FlipSettings, decode: Any = None
) -> dict[str, Any]:
    """One example's audit record."""
    n = len(table.gains)
    row: dict[str, Any] = {
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
    q = first_step_queries(settings, n)
    clipped = np.maximum(table.gains, 0.0)  # a step keeps a flip only if it raises the loss
    random_gain = expected_max_with_replacement(clipped, table.draw_weights(), q) if q else None
    uniform_gain = expected_max_without_replacement(clipped, q) if q else None
    rank = optimum_rank(table.first_order, table.gains)
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
            "optimum_in_top_k": rank <= settings.top_k,
            "spearman": spearman(table.first_order, table.gains),
            "random_queries": q,
            "random_expected_gain": random_gain,
            "random_expected_ratio": _ratio(random_gain, optimum),
            "random_expected_ratio_uniform": _ratio(uniform_gain, optimum),
        }
    )
    return row


AGGREGATED = (
    "optimum_gain",
    "first_step_gain",
    "first_step_ratio",
    "optimum_rank",
    "spearman",
    "random_expected_ratio",
    "random_expected_ratio_uniform",
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
    return out


# --- attack.py's hook -------------------------------------------------------------------------


def audited_search(kind: Attack, settings: AttackSettings) -> tuple[str, FlipSettings | None]:
    """The search an attack runs (the random control's: the one it mimics) and its flip
    settings, None unless it is a flip search."""
    mimicked = getattr(kind, "mimicked", None)
    search = mimicked(settings) if mimicked is not None else kind
    own = search.settings_of(settings) if isinstance(search, Search) else None
    return search.name, own if isinstance(own, FlipSettings) else None


def check_audit(kind: Attack, settings: AttackSettings) -> None:
    """Before any model loads: the audit covers flip searches only (the trigger search's audit
    is not implemented)."""
    name, flip = audited_search(kind, settings)
    if settings.audit.examples > 0 and flip is None:
        raise UserError(
            f"attack.audit.examples={settings.audit.examples}: the audit covers the flip search "
            f"(attack=hotflip, attack=random attack.mimic=hotflip), not {name}; set "
            "attack.audit.examples=0"
        )


def audit_attack(
    kind: Attack, settings: AttackSettings, run: AttackRun, outcome: AttackOutcome
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Audit the first `settings.audit.examples` examples the attack ran on: (attack.json's
    `audit` entry, audit.jsonl's rows). Deterministic; spends its own forward passes."""
    audit: AuditSettings = settings.audit
    name, flip = audited_search(kind, settings)
    assert flip is not None, "check_audit runs first"
    examples = run.examples[: audit.examples]
    rows = []
    for index, example in enumerate(examples):
        with tqdm(
            desc=f"audit: example {index + 1}/{len(examples)}: every single flip",
            unit="flip",
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            table = flip_table(run.objective, example, run.vocab, audit.batch_size, bar.update)
        row = {
            "id": example.id,
            **audit_row(
                table, first_flip_gain(outcome.per_example[index]), flip, run.tokenizer.decode
            ),
        }
        rows.append(row)
        log.info(
            "audit %d/%d: %d flips, optimum gain %.4g, first step %.4g; cost %d forward passes "
            "+ %d gradient, %.1f s",
            index + 1,
            len(examples),
            row["flips"],
            row["optimum_gain"] if row["optimum_gain"] is not None else float("nan"),
            row["first_step_gain"],
            row["forward_passes"],
            row["gradient_passes"],
            row["seconds"],
        )
    summary = {
        "settings": {"examples": audit.examples, "batch_size": audit.batch_size},
        "search": name,
        **aggregate_audit(rows),
        "conventions": {
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
        },
    }
    return summary, rows
