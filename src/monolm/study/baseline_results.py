"""The simple baselines beside the arms (results.json: `subjects.<subject>.simple_baselines`).

Per evaluate measure (the arms' keys, e.g. `evaluate/own/acc`: a baseline's `own` is the task
option of the subject's dataset under that name, `simple_baselines.py`): each arm's mean across
its seeds (from its summary) and each baseline's value with a 95% percentile bootstrap interval
over its examples. The value is the statistic the arms' per-run values use
(`aggregate.run_statistic` on the examples file: a rate, a mean, exp(sum NLL / sum tokens)), so a
baseline's accuracy and an arm seed's are computed alike; the interval resamples examples with
`BOOTSTRAP`'s settings. No test against the arms: a baseline is a reference point, not an arm.
A baseline stage not done is listed with its state and left out, like any other stage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from monolm.metrics.run_statistics import as_runs, example_counts, run_totals
from monolm.study.aggregate import BOOTSTRAP, id_order, run_statistic, stack
from monolm.study.data import StudyData
from monolm.study.measures import Measure, RunValues, eval_measures, eval_values
from monolm.study.records import TaskRecord

_CHUNK = 100  # resamples drawn at once


def run_interval(values: RunValues, statistic: str) -> dict[str, Any] | None:
    """One run's statistic on its valid examples with a percentile bootstrap interval over them
    (None when no example is valid)."""
    value = run_statistic(values, statistic)
    if value is None:
        return None
    ids = sorted(values.valid_ids(), key=id_order)
    array, weights = stack([values], ids)
    totals = run_totals(as_runs(array, "values"), weights, statistic, "values")
    rng = np.random.default_rng(BOOTSTRAP["seed"])
    resamples = BOOTSTRAP["resamples"]
    replicates = np.concatenate(
        [
            totals.resampled(example_counts(rng, min(_CHUNK, resamples - start), len(ids)))[:, 0]
            for start in range(0, resamples, _CHUNK)
        ]
    )
    defined = replicates[np.isfinite(replicates)]
    tail = (1.0 - BOOTSTRAP["confidence"]) / 2.0
    low, high = (
        (float(q) for q in np.quantile(defined, [tail, 1.0 - tail]))
        if defined.size
        else (None, None)
    )
    return {"value": value, "low": low, "high": high, "n": len(ids)}


def _baseline_value(tasks: dict[str, TaskRecord] | None, measure: Measure) -> dict | None:
    task = (tasks or {}).get(measure.name)
    if task is None or measure not in eval_measures(task.name, task.kind):
        return None  # not evaluated on this task (or scored as another kind: no such metric)
    return run_interval(eval_values(measure, task), measure.statistic)


def _not_planned(name: str) -> str:
    from monolm.evaluation.baselines import BASELINE_KINDS

    return (
        f"not planned: it scores {' and '.join(BASELINE_KINDS.get(name, ()))} tasks, and none "
        "of this subject's evaluation tasks is one"
    )


def simple_baselines(
    data: StudyData, subject: str, summaries: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The subject's baselines table's numbers (None when the study has no baselines);
    `summaries`: the arms' per-measure summaries (`aggregate.arm_summaries`)."""
    wanted = data.settings.baselines
    if not wanted:
        return None
    stages = {
        s.simple_baseline: s
        for s in data.study.stages
        if s.subject == subject and s.simple_baseline is not None
    }
    states = {
        name: {
            "dir": stage.dir,
            "state": data.states[stage.key].state,
            "reason": data.states[stage.key].reason,
        }
        for name, stage in stages.items()
    }
    measures = [m for m in data.measures(subject) if m.stage == "evaluate"]
    for name in stages:
        for task in (data.baselines.get((subject, name)) or {}).values():
            measures.extend(m for m in eval_measures(task.name, task.kind) if m not in measures)
    rows = {}
    for measure in measures:
        arms = {
            arm: {"mean": entry["mean"], "seeds": entry["seeds"]}
            for arm, entry in summaries.get(measure.key, {}).get("arms", {}).items()
        }
        values = {
            name: _baseline_value(data.baselines.get((subject, name)), measure) for name in stages
        }
        rows[measure.key] = {"statistic": measure.statistic, "arms": arms, "baselines": values}
    return {
        "baselines": list(stages),
        "stages": states,
        "not_planned": {name: _not_planned(name) for name in wanted if name not in stages},
        "bootstrap": dict(BOOTSTRAP),
        "measures": rows,
    }
