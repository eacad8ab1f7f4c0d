"""The report's other views, computed from the runs (`data.StudyData`):

- `quality_view`: per arm and seed, (clean quality, robustness) at every checkpoint step and at
  the final model: quality is the first evaluation task's headline metric, robustness each
  attack's success rate and mean delta NLL at the same step;
- `transfer_matrix`: per attack, source arm x target arm, success rate and delta NLL averaged
  over seeds; the diagonal is the source arm's own (white-box) attack;
- `audit`: per arm, the attack's audit (mean Spearman of first-order score vs true gain, first-step
  ratio to the optimum, random's expected ratio at equal queries) and the gradient-masking flag;
- `budget_curves`: attack and control success (or mean best gain) by queries, per arm;
- `budget_differences`: each arm's overrides and every key set differently between arms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from monolm.errors import UserError
from monolm.metrics.across_seeds import arm_summary, t_interval
from monolm.study.aggregate import run_statistic
from monolm.study.data import StudyData
from monolm.study.measures import HEADLINE, Measure, attack_measures, row_values
from monolm.study.records import AttackRecord, is_number

CURVE_POINTS = 20  # query counts on a budget curve's grid (as attacks/outcome.py)


def _interval(values: Sequence[float]) -> dict[str, Any] | None:
    """Mean and t interval over seeds (low/high None with one seed); None with none."""
    if not values:
        return None
    found = t_interval(values)
    return {"mean": found["mean"], "low": found["low"], "high": found["high"], "n": found["n"]}


def quality_measure(data: StudyData, subject: str) -> Measure | None:
    for measure in data.measures(subject):
        if measure.stage != "evaluate":
            continue
        kinds = {
            task.kind
            for (s, *_), run in data.runs.items()
            if s == subject and run.evaluate and measure.name in run.evaluate
            for task in [run.evaluate[measure.name]]
        }
        if any(HEADLINE.get(kind) == measure.metric for kind in kinds):
            return measure
    return None


def quality_view(data: StudyData, subject: str) -> dict[str, Any] | None:
    quality = quality_measure(data, subject)
    if quality is None:
        return None
    attacks = {name: attack_measures("attack", name) for name in data.settings.attacks}
    points = []
    for arm in data.arms:
        for seed in data.settings.seeds:
            for step in data.steps:
                key = (subject, arm, seed, step)
                robustness = {
                    name: {
                        m.metric: run_statistic(data.values(m, key), m.statistic)
                        for m in measures
                        if m.metric != "relative_nll"
                    }
                    for name, measures in attacks.items()
                }
                value = run_statistic(data.values(quality, key), quality.statistic)
                if value is None and not any(
                    v is not None for r in robustness.values() for v in r.values()
                ):
                    continue
                points.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "step": step,
                        "quality": value,
                        "robustness": robustness,
                    }
                )
    tradeoffs = {name: _tradeoffs(data, points, name) for name in attacks}
    return {
        "quality": quality.key,
        "quality_lower_is_better": quality.lower_is_better,
        "steps": data.steps,
        "points": points,
        "arms": tradeoffs,
    }


def _tradeoffs(data: StudyData, points: list[dict], attack: str) -> dict[str, Any]:
    """Per arm, the seeds with both quality and success rate at the final model, their values,
    the means with t intervals, and each such seed's path through its checkpoints."""
    out = {}
    for arm in data.arms:
        seeds, quality, robustness, paths = [], [], [], []
        for seed in data.settings.seeds:
            mine = [p for p in points if p["arm"] == arm and p["seed"] == seed]
            usable = [
                (p["quality"], p["robustness"][attack]["success_rate"])
                for p in mine
                if p["quality"] is not None and p["robustness"][attack]["success_rate"] is not None
            ]
            final = [p for p in mine if p["step"] is None]
            if not final or final[0]["quality"] is None:
                continue
            rate = final[0]["robustness"][attack]["success_rate"]
            if rate is None:
                continue
            seeds.append(seed)
            quality.append(final[0]["quality"])
            robustness.append(rate)
            paths.append(usable)
        if seeds:
            out[arm] = {
                "seeds": seeds,
                "quality": quality,
                "robustness": robustness,
                "mean_quality": _interval(quality),
                "mean_robustness": _interval(robustness),
                "paths": paths,
            }
    return out


def _cell(rows: Any) -> dict[str, float | None]:
    return {
        "success_rate": run_statistic(row_values(rows, "success_rate"), "rate"),
        "delta_nll": run_statistic(row_values(rows, "delta_nll"), "mean"),
    }


def transfer_matrix(data: StudyData, subject: str, name: str) -> dict[str, Any]:
    arms = data.arms
    per_seed: dict[tuple[str, str], list[dict]] = {(s, t): [] for s in arms for t in arms}
    for seed in data.settings.seeds:
        for source in arms:
            run = data.runs.get((subject, source, seed, None))
            if run is not None and name in run.attacks:
                per_seed[source, source].append({"seed": seed, **_cell(run.attacks[name].rows)})
            record = data.transfers.get((subject, seed, name, source))
            if record is None:
                continue
            for target, rows in record.cells.items():
                if target not in arms or target == source:
                    raise UserError(
                        f"'{record.path}': cell '{target}' is not another arm of the study "
                        f"(arms: {', '.join(arms)}; source {source})"
                    )
                per_seed[source, target].append({"seed": seed, **_cell(rows)})
    matrix: dict[str, dict[str, Any]] = {}
    for (source, target), cells in per_seed.items():
        entry: dict[str, Any] = {"white_box": source == target, "per_seed": cells}
        for metric in ("success_rate", "delta_nll"):
            entry[metric] = _interval([c[metric] for c in cells if c[metric] is not None])
        matrix.setdefault(source, {})[target] = entry
    return {"sources": arms, "targets": arms, "cells": matrix}


def _audit_mean(record: AttackRecord, key: str) -> float | None:
    value = record.audit.get(key) if record.audit else None
    if value is None:
        return None
    if not isinstance(value, dict) or not is_number(value.get("mean")):
        raise UserError(f"'{record.path}': audit.{key} has no numeric 'mean'")
    return float(value["mean"])


AUDIT_KEYS = ("spearman", "first_step_ratio", "random_expected_ratio")


def audit(data: StudyData, subject: str, name: str) -> dict[str, Any] | None:
    """Per arm the seeds' audit means and their mean over seeds; `gradient_masking_flag` for a
    non-baseline arm: its Spearman below the baseline's and its first step below random's
    expected ratio at equal queries (None when a number is missing)."""
    arms: dict[str, Any] = {}
    for arm in data.arms:
        seeds = []
        for seed in data.settings.seeds:
            run = data.runs.get((subject, arm, seed, None))
            record = run.attacks.get(name) if run else None
            if record is None or not record.audit:
                continue
            seeds.append({"seed": seed, **{key: _audit_mean(record, key) for key in AUDIT_KEYS}})
        if seeds:
            means = {}
            for key in AUDIT_KEYS:
                values = [s[key] for s in seeds if s[key] is not None]
                means[key] = float(np.mean(values)) if values else None
            arms[arm] = {"per_seed": seeds, **means}
    if not arms:
        return None
    baseline = arms.get(data.study.baseline)
    for arm, entry in arms.items():
        entry["gradient_masking_flag"] = None
        if arm == data.study.baseline or baseline is None:
            continue
        numbers = (
            entry["spearman"],
            baseline["spearman"],
            entry["first_step_ratio"],
            entry["random_expected_ratio"],
        )
        if all(n is not None for n in numbers):
            entry["gradient_masking_flag"] = bool(
                numbers[0] < numbers[1] and numbers[2] < numbers[3]
            )
    return {
        "arms": arms,
        "flag_rule": "spearman below the baseline arm's and first_step_ratio below "
        "random_expected_ratio (random at equal queries)",
    }


# --- budget curves ------------------------------------------------------------------------------


def _gain_at(curve: Sequence[Sequence[float]], grid: np.ndarray) -> np.ndarray:
    """The best gain after each grid count of queries: the last point at or before it, 0 before
    the first (as attacks/outcome.py gain_at)."""
    queries = np.array([point[0] for point in curve], dtype=np.float64)
    gains = np.array([0.0, *(point[1] for point in curve)], dtype=np.float64)
    return gains[np.searchsorted(queries, grid, side="right")]


def _units(record: AttackRecord, mode: str) -> list[tuple[list, float]] | None:
    """(curve, clean NLL or NaN when skipped) per example; the mean curve of attack.json when its
    rows carry none (a trigger attack: one curve per restart, aggregated)."""
    rows = record.rows.rows
    if all("curve" in row for row in rows) and rows:
        return [
            (row["curve"], math.nan if row["status"] == "skipped" else row["clean_nll"])
            for row in rows
        ]
    if mode == "gain" and record.budget_curve is not None:
        curve = record.budget_curve
        return [([list(p) for p in zip(curve["queries"], curve["mean_gain"], strict=True)], 1.0)]
    return None


def budget_curves(data: StudyData, subject: str, name: str) -> dict[str, Any] | None:
    records: dict[str, dict[str, list[tuple[int, AttackRecord]]]] = {}
    for arm in data.arms:
        for seed in data.settings.seeds:
            run = data.runs.get((subject, arm, seed, None))
            for side, found in (
                ("attack", run.attacks if run else {}),
                ("control", run.controls if run else {}),
            ):
                if name in found:
                    records.setdefault(arm, {}).setdefault(side, []).append((seed, found[name]))
    every = [r for sides in records.values() for runs in sides.values() for _, r in runs]
    if not every:
        return None
    success = all(
        r.nll_success_threshold is not None
        and len(r.rows)
        and all("curve" in row and "clean_rougeL" not in row for row in r.rows.rows)
        for r in every
    )
    mode = "success" if success else "gain"
    units = {id(r): _units(r, mode) for r in every}
    points = [p[0] for u in units.values() if u for curve, _ in u for p in curve]
    if not points:
        return None
    grid = np.unique(np.linspace(min(points), max(points), CURVE_POINTS).round().astype(np.int64))
    arms = {}
    for arm, sides in records.items():
        entry = {}
        for side, runs in sides.items():
            rows, seeds = [], []
            for seed, record in runs:
                if not units[id(record)]:
                    continue
                curves = np.array([_gain_at(c, grid) for c, _ in units[id(record)]])  # [N, Q]
                if mode == "success":
                    clean = np.array([nll for _, nll in units[id(record)]])[:, None]
                    with np.errstate(invalid="ignore"):
                        curves = np.where(
                            np.isnan(clean),
                            np.nan,
                            (curves / clean > record.nll_success_threshold) * 1.0,
                        )
                    if np.isnan(clean).all():
                        continue
                rows.append(curves.T)  # [Q, N]
                seeds.append(seed)
            if rows:
                width = max(r.shape[1] for r in rows)
                padded = [
                    np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=np.nan)
                    for r in rows
                ]
                statistic = "rate" if mode == "success" else "mean"
                found = [
                    arm_summary(np.stack([p[q] for p in padded]), statistic)
                    for q in range(grid.size)
                ]
                entry[side] = {
                    "seeds": seeds,
                    "points": [
                        {"mean": f["mean"], "low": f["low"], "high": f["high"]} for f in found
                    ],
                }
        if "attack" in entry:
            arms[arm] = entry
    if not arms:
        return None
    return {"mode": mode, "queries": grid.tolist(), "arms": arms}


def budget_differences(data: StudyData) -> dict[str, Any]:
    """Each arm's overrides; every key that some arm sets differently (or not at all)."""
    parsed: dict[str, dict[str, str | None]] = {}
    for arm, overrides in data.settings.arms.items():
        mine: dict[str, str | None] = {}
        for override in overrides:
            key, _, value = override.lstrip("+~").partition("=")
            mine[key] = value if "=" in override else None
        parsed[arm] = mine
    keys = sorted(set().union(*parsed.values()))
    differing = {
        key: {arm: parsed[arm].get(key) for arm in parsed}
        for key in keys
        if len({parsed[arm].get(key, "\0unset") for arm in parsed}) > 1
    }
    return {
        "arms": {arm: list(overrides) for arm, overrides in data.settings.arms.items()},
        "shared": {
            "subjects": {s: list(o) for s, o in data.settings.subjects.items()},
            "evaluate": data.settings.evaluate,
            "attack_overrides": list(data.settings.attack_overrides),
            "attacks": {n: list(a.overrides) for n, a in data.settings.attacks.items()},
        },
        "differing_keys": differing,
    }
