"""What an attack did to a model: per-example rows and aggregates (docs/science.md, section 4).

Per example: clean and attacked NLL of the target (nats/token), the absolute and relative change;
for seq2seq the summaries generated from the clean and the attacked input and their ROUGE-L
(F1 x 100); a status. Success is a relative ROUGE-L drop above `success_threshold` (seq2seq) or a
relative NLL increase above `nll_success_threshold` (causal LM). An example whose clean score is
under the floor is `skipped`: a summary with ROUGE-L near 0 cannot drop, and a relative NLL
increase from a near-zero NLL means nothing. success rate = successes / (successes + failures),
always reported with its n (the examples it is over) and the number skipped (`rate_text`).
The same function scores a transfer target on the source's clean and attacked inputs.

Budget curves (`budget_curve`): each search records per example (UAT: per restart) the best loss
gain after each step as `[queries, best gain]` points; the aggregate is their mean with a
bootstrap CI on a common grid of query counts (a unit's gain at q is that of its last point at or
before q, 0 before its first, and its final gain after its last: it spent nothing more).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from monolm.attacks.base import AttackOutcome, AttackSettings
from monolm.attacks.examples import AttackExample
from monolm.attacks.objective import Objective
from monolm.config.eval_schema import GenerationConfig
from monolm.metrics.bootstrap import bootstrap_ci

SUCCESS, FAILURE, SKIPPED = "success", "failure", "skipped"
CURVE_POINTS = 20  # query counts on the aggregate budget curve's grid


def _status(clean: float, attacked: float, floor: float, threshold: float, drop: bool) -> str:
    """`drop`: success is a relative fall of the score (ROUGE); else a relative rise (NLL)."""
    if clean < floor or clean <= 0:
        return SKIPPED
    change = (clean - attacked) / clean if drop else (attacked - clean) / clean
    return SUCCESS if change > threshold else FAILURE


def _rouge_l(generated: Sequence[str], references: Sequence[str]) -> list[float]:
    from monolm.metrics.rouge import rouge_per_example

    return [100.0 * s["rougeL"] for s in rouge_per_example(generated, references)]


def measure(
    objective: Objective,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[AttackExample],
    outcome: AttackOutcome,
    settings: AttackSettings,
    generation: GenerationConfig,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per example: NLLs, (seq2seq) generated summaries and ROUGE-L, status, judged by
    `settings`' thresholds and floors (the same rows for the attacked model and for a transfer
    target replaying `outcome`'s inputs)."""
    clean, attacked, tokens_changed = outcome.clean, outcome.attacked, outcome.tokens_changed
    targets = [e.target for e in examples]
    clean_nll = objective.losses(list(zip(clean, targets, strict=True)))
    attacked_nll = objective.losses(list(zip(attacked, targets, strict=True)))
    rows: list[dict[str, Any]] = []
    for i, example in enumerate(examples):
        delta = attacked_nll[i] - clean_nll[i]
        rows.append(
            {
                "id": example.id,
                "reference": example.reference,
                "clean_input": tokenizer.decode(clean[i]),
                "attacked_input": tokenizer.decode(attacked[i]),
                "clean_ids": list(clean[i]),
                "attacked_ids": list(attacked[i]),
                "tokens_changed": tokens_changed[i],
                "clean_nll": clean_nll[i],
                "attacked_nll": attacked_nll[i],
                "delta_nll": delta,
                "relative_nll": delta / clean_nll[i] if clean_nll[i] > 0 else None,
            }
        )
    if objective.seq2seq:
        model: PreTrainedModel = objective.model
        with objective.inference():
            from monolm.models.generation import generate_from_ids

            texts = generate_from_ids(model, tokenizer, [*clean, *attacked], generation, progress)
        references = [e.reference for e in examples]
        clean_rouge = _rouge_l(texts[: len(clean)], references)
        attacked_rouge = _rouge_l(texts[len(clean) :], references)
        for i, row in enumerate(rows):
            row.update(
                {
                    "clean_generated": texts[i],
                    "attacked_generated": texts[len(clean) + i],
                    "clean_rougeL": clean_rouge[i],
                    "attacked_rougeL": attacked_rouge[i],
                    "rougeL_relative_drop": (clean_rouge[i] - attacked_rouge[i]) / clean_rouge[i]
                    if clean_rouge[i] > 0
                    else None,
                    "status": _status(
                        clean_rouge[i],
                        attacked_rouge[i],
                        settings.rouge_floor,
                        settings.success_threshold,
                        drop=True,
                    ),
                }
            )
    else:
        for row in rows:
            row["status"] = _status(
                row["clean_nll"],
                row["attacked_nll"],
                settings.nll_floor,
                settings.nll_success_threshold,
                drop=False,
            )
    return rows


def aggregate(rows: Sequence[dict[str, Any]], bootstrap: Any) -> dict[str, Any]:
    """Counts, success rate and means with percentile bootstrap CIs."""

    def ci(values: Sequence[float]) -> dict[str, float] | None:
        values = [v for v in values if v is not None]
        if not values:
            return None
        return bootstrap_ci(
            np.asarray(values, dtype=np.float64),
            bootstrap.resamples,
            bootstrap.confidence,
            bootstrap.seed,
        )

    statuses = [r["status"] for r in rows]
    decided = [r for r in rows if r["status"] != SKIPPED]
    rate = ci([float(r["status"] == SUCCESS) for r in decided])
    out: dict[str, Any] = {
        "n": len(rows),
        "decided": len(decided),  # the examples the success rate is over
        "successes": statuses.count(SUCCESS),
        "failures": statuses.count(FAILURE),
        "skipped": statuses.count(SKIPPED),
        # n: the examples measured (decided), skipped: left out of the rate
        "success_rate": {**rate, "skipped": statuses.count(SKIPPED)} if rate else None,
    }
    keys = ["clean_nll", "attacked_nll", "delta_nll", "relative_nll", "tokens_changed"]
    keys += [k for k in ("queries", "gradient_queries") if rows and k in rows[0]]
    if rows and "clean_rougeL" in rows[0]:
        keys += ["clean_rougeL", "attacked_rougeL"]
        out["rougeL_relative_drop"] = ci([r["rougeL_relative_drop"] for r in decided])
    for key in keys:
        out[key] = ci([r[key] for r in rows])
    return out


def skip_rule(settings: AttackSettings, family: str) -> str:
    """Why an example is skipped, in words."""
    if family == "seq2seq":
        return f"clean ROUGE-L < rouge_floor {settings.rouge_floor:g}"
    return f"clean NLL < nll_floor {settings.nll_floor:g}"


def rate_text(aggregates: dict[str, Any], settings: AttackSettings, family: str) -> str:
    """ "success rate 0.20 [0.05, 0.40] (n=14, 18 skipped: clean ROUGE-L < rouge_floor 5)"."""
    rate = aggregates["success_rate"]
    value = f"{rate['mean']:.2f} [{rate['low']:.2f}, {rate['high']:.2f}]" if rate else "n/a"
    decided = aggregates["successes"] + aggregates["failures"]
    return (
        f"success rate {value} (n={decided}, {aggregates['skipped']} skipped: "
        f"{skip_rule(settings, family)})"
    )


def gain_at(curve: Sequence[Sequence[float]], queries: float) -> float:
    """A budget curve's best gain after `queries` queries (0 before its first point)."""
    value = 0.0
    for spent, gain in curve:
        if spent > queries:
            break
        value = gain
    return float(value)


def budget_curve(
    curves: Sequence[Sequence[Sequence[float]]], bootstrap: Any, points: int = CURVE_POINTS
) -> dict[str, Any] | None:
    """The mean budget curve with a percentile bootstrap CI at each query count of a common grid
    (`points` evenly spaced counts from the first point any unit has to the most any spent)."""
    curves = [c for c in curves if c]
    if not curves:
        return None
    first = min(c[0][0] for c in curves)
    last = max(c[-1][0] for c in curves)
    grid = sorted(set(np.linspace(first, last, points).round().astype(int).tolist()))
    mean, low, high = [], [], []
    for queries in grid:
        values = np.asarray([gain_at(c, queries) for c in curves], dtype=np.float64)
        interval = bootstrap_ci(values, bootstrap.resamples, bootstrap.confidence, bootstrap.seed)
        mean.append(interval["mean"])
        low.append(interval["low"])
        high.append(interval["high"])
    return {
        "queries": grid,
        "mean_gain": mean,
        "low": low,
        "high": high,
        "n": len(curves),
        "confidence": bootstrap.confidence,
        "gain": "best loss (NLL, nats/token) found after that many queries minus the clean loss; "
        "per example (UAT: per restart, on its optimisation batches)",
    }
