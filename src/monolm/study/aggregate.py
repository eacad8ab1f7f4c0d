"""The statistics of the report, from the runs' per-example values (`data.StudyData`), through
`monolm.metrics` only (nothing is re-estimated here):

- `arm_summaries`: each arm across its seeds (`summarise_arms`: mean, std, t interval) and its
  change from the baseline arm;
- `compare`: A vs B paired by seed and example (`compare_arms`: the multi-bootstrap headline,
  each seed's paired bootstrap, the t interval over per-seed differences, the sign-flip p),
  plus within each seed Wilcoxon (Pratt) or exact McNemar on the examples valid in both. A seed
  missing in either side is dropped from the pairing and named; the multi-bootstrap pairs only
  the examples valid in every paired run of both sides, and says how many others were dropped;
- `arm_comparisons` (every non-baseline arm vs the baseline) and `attack_vs_control` (the
  gradient attack vs its matched random control, same arm and seed);
- `adjust`: Holm over the declared primary family, Benjamini-Hochberg q-values for the rest.

Every bootstrap uses `BOOTSTRAP` (a fixed seed): the same files give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from monolm.metrics.across_seeds import compare_arms, summarise_arms
from monolm.metrics.paired_tests import (
    benjamini_hochberg,
    exact_mcnemar,
    holm,
    wilcoxon_signed_rank,
)
from monolm.metrics.run_statistics import as_runs, run_totals
from monolm.study.data import StudyData
from monolm.study.measures import Measure, RunValues

BOOTSTRAP = {"resamples": 1000, "confidence": 0.95, "seed": 0}


def id_order(ident: Any) -> tuple[int, int, str]:
    """Integers in numeric order, then strings: a fixed example order whatever the files'."""
    return (0, ident, "") if isinstance(ident, int) else (1, 0, str(ident))


def stack(runs: Sequence[RunValues], ids: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """`[runs, ids]` values (NaN where invalid or absent) and weights (0 there), or None."""
    values = np.array([[run.values[i] if run.valid(i) else math.nan for i in ids] for run in runs])
    if runs[0].weights is None:
        return values, None
    weights = np.array([[run.weights[i] if run.valid(i) else 0.0 for i in ids] for run in runs])
    return values, weights


def run_statistic(values: RunValues | None, statistic: str) -> float | None:
    """One run's statistic on all its valid examples (None: no run or no valid example)."""
    if values is None:
        return None
    ids = sorted(values.valid_ids(), key=id_order)
    if not ids:
        return None
    array, weights = stack([values], ids)
    result = float(run_totals(as_runs(array, "values"), weights, statistic, "values").observed()[0])
    return result if math.isfinite(result) else None


def arm_summaries(data: StudyData, subject: str, measure: Measure) -> dict[str, Any]:
    """Each arm over the seeds whose run is done and has a valid example, at the final model."""
    arms: dict[str, np.ndarray] = {}
    weights: dict[str, np.ndarray] = {}
    seeds: dict[str, list[int]] = {}
    excluded: list[dict[str, Any]] = []
    for arm in data.arms:
        runs = []
        for seed in data.settings.seeds:
            values = data.values(measure, (subject, arm, seed, None))
            if values is None:
                excluded.append({"arm": arm, "seed": seed, "reason": "stage not done"})
            elif not values.valid_ids():
                excluded.append({"arm": arm, "seed": seed, "reason": "no valid example"})
            else:
                runs.append((seed, values))
        if not runs:
            continue
        ids = sorted(set().union(*(v.valid_ids() for _, v in runs)), key=id_order)
        arms[arm], arm_weights = stack([v for _, v in runs], ids)
        if arm_weights is not None:
            weights[arm] = arm_weights
        seeds[arm] = [seed for seed, _ in runs]
    baseline = data.study.baseline if data.study.baseline in arms else None
    summary: dict[str, Any] = {"measure": measure.key, "statistic": measure.statistic}
    if not arms:
        return {**summary, "baseline": baseline, "arms": {}, "excluded_runs": excluded}
    summary.update(summarise_arms(arms, measure.statistic, baseline, weights or None))
    for arm, entry in summary["arms"].items():
        entry["seeds"] = seeds[arm]
        relative = entry.get("relative_difference_from_baseline")
        entry["percent_change_from_baseline"] = None if relative is None else 100.0 * relative
    summary["excluded_runs"] = excluded
    return summary


def within_seed(a: RunValues, b: RunValues, test: str) -> dict[str, Any]:
    """Wilcoxon (Pratt) or exact McNemar on the examples of one seed valid in both."""
    ids = sorted(set(a.values) | set(b.values), key=id_order)
    first = [a.test_value(i) if i in a.values else math.nan for i in ids]
    second = [b.test_value(i) if i in b.values else math.nan for i in ids]
    try:
        if test == "mcnemar":
            return {"test": test, "computed": True, **exact_mcnemar(first, second)}
        return {"test": test, "computed": True, **wilcoxon_signed_rank(first, second)}
    except ValueError as exc:
        return {"test": test, "computed": False, "reason": str(exc)}


def compare(
    a: Mapping[int, RunValues | None],
    b: Mapping[int, RunValues | None],
    seeds: Sequence[int],
    measure: Measure,
    names: tuple[str, str],
) -> dict[str, Any]:
    """`names[0]` minus `names[1]` on `measure`, paired by seed and example."""
    paired = [s for s in seeds if a.get(s) is not None and b.get(s) is not None]
    dropped = [
        {
            "seed": s,
            "missing_in": [n for n, side in zip(names, (a, b), strict=True) if side.get(s) is None],
        }
        for s in seeds
        if s not in paired
    ]
    result: dict[str, Any] = {
        "a": names[0],
        "b": names[1],
        "measure": measure.key,
        "statistic": measure.statistic,
        "seeds": paired,
        "dropped_seeds": dropped,
        "computed": False,
        "reason": None,
        "p_value": None,
        "p_adjusted": None,
        "adjustment": None,
    }
    if not paired:
        return {**result, "reason": "no seed has both runs done"}
    runs_a, runs_b = [a[s] for s in paired], [b[s] for s in paired]
    everything = set().union(*(r.values for r in (*runs_a, *runs_b)))
    ids = sorted(set.intersection(*(r.valid_ids() for r in (*runs_a, *runs_b))), key=id_order)
    result.update(n_examples=len(ids), n_dropped_examples=len(everything) - len(ids))
    if not ids:
        return {**result, "reason": "no example is valid in every paired run of both"}
    values_a, weights_a = stack(runs_a, ids)
    values_b, weights_b = stack(runs_b, ids)
    settings = {key: BOOTSTRAP[key] for key in ("resamples", "confidence", "seed")}
    try:
        found = compare_arms(
            values_a,
            values_b,
            measure.statistic,
            weights_a=weights_a,
            weights_b=weights_b,
            **settings,
        )
    except ValueError as exc:
        return {**result, "reason": str(exc)}
    for entry, seed in zip(found["per_seed"]["seeds"], paired, strict=True):
        entry["seed"] = seed
    result.update(found, computed=True, p_value=found["multi_bootstrap"]["p_value_two_sided"])
    if measure.test is not None:
        result["within_seed"] = [
            {"seed": s, **within_seed(a[s], b[s], measure.test)} for s in paired
        ]
    return result


def _runs(data: StudyData, measure: Measure, subject: str, arm: str) -> dict[int, RunValues | None]:
    return {seed: data.values(measure, (subject, arm, seed, None)) for seed in data.settings.seeds}


def arm_comparisons(data: StudyData, subject: str, measure: Measure) -> list[dict[str, Any]]:
    baseline = data.study.baseline
    reference = _runs(data, measure, subject, baseline)
    out = []
    for arm in data.arms:
        if arm == baseline:
            continue
        found = compare(
            _runs(data, measure, subject, arm),
            reference,
            data.settings.seeds,
            measure,
            (arm, baseline),
        )
        out.append(
            {
                "id": f"{subject}: {measure.key}: {arm} - {baseline}",
                "kind": "arm_vs_baseline",
                "subject": subject,
                "arm": arm,
                **found,
            }
        )
    return out


def attack_vs_control(
    data: StudyData, subject: str, attack: Measure, control: Measure
) -> list[dict[str, Any]]:
    """Per arm: the gradient attack minus its matched random control (same seed, examples)."""
    out = []
    for arm in data.arms:
        found = compare(
            _runs(data, attack, subject, arm),
            _runs(data, control, subject, arm),
            data.settings.seeds,
            attack,
            (f"{arm}: attack", f"{arm}: control"),
        )
        out.append(
            {
                "id": f"{subject}: {attack.name}/{attack.metric}: {arm}: attack - control",
                "kind": "attack_vs_control",
                "subject": subject,
                "arm": arm,
                "attack": attack.name,
                "metric": attack.metric,
                **found,
            }
        )
    return out


def adjust(comparisons: Sequence[dict[str, Any]], primary: Sequence[str]) -> dict[str, Any]:
    """Holm over the primary family (every non-baseline arm vs the baseline on a declared
    primary measure, in every subject), BH q-values over every other headline p; written into
    each comparison as `p_adjusted` with `adjustment` naming the method."""
    with_p = [c for c in comparisons if c["computed"] and c["p_value"] is not None]
    family = [c for c in with_p if c["kind"] == "arm_vs_baseline" and c["measure"] in primary]
    others = [c for c in with_p if not (c["kind"] == "arm_vs_baseline" and c["measure"] in primary)]
    summary: dict[str, Any] = {"primary": list(primary)}
    for name, members, method in (
        ("primary_family", family, holm),
        ("others", others, benjamini_hochberg),
    ):
        if not members:
            summary[name] = {"method": method.__name__, "members": []}
            continue
        found = method([c["p_value"] for c in members])
        adjusted = found.get("adjusted_p_values", found.get("q_values"))
        for comparison, value in zip(members, adjusted, strict=True):
            comparison["p_adjusted"] = value
            comparison["adjustment"] = found["method"]
        summary[name] = {"method": found["method"], "members": [c["id"] for c in members]}
    matched = {c["measure"] for c in family}
    summary["unmatched_primary"] = [key for key in primary if key not in matched]
    return summary
