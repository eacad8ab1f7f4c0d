"""The selection of a tuned arm's configuration: every tuning trial of the arm (a training run
with one grid point) is read from its metrics.json, the trial with the best value of the
selected metric (computed on the split held out from train) wins, and `selection.json` records
every trial and the chosen overrides, which the arm's seed runs append when they run.

Overrides (built by the plan): `select=<metric>`, `mode=min|max`, and per trial in grid order
`trial={"dir": <run dir>, "overrides": [<its grid point>]}`.

A trial is skipped, and listed with why, when it did not complete (its stage has no record, or
its run.json does not say completed) or its value is missing or not finite. Ties go to the
first trial in grid order. No valid trial: the stage fails with one line naming each trial's
reason. Like every stage, a finished selection is done while its hash holds: a skipped trial
retried later does not reopen it (the seeds and everything after them were built on it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monolm.errors import UserError
from monolm.provenance import provenance, read_json_object, write_json
from monolm.run_dir import RunDir
from monolm.study.bookkeeping import STAGE_RECORD, record_dir_of
from monolm.study.plan import SELECT_METRIC, SELECT_MODE, SELECT_TRIAL, Stage
from monolm.study.stages.base import StageKind

SELECTION = "selection.json"
VALID, NOT_COMPLETED, NO_VALUE = "valid", "not completed", "no finite value"


@dataclass(frozen=True)
class TrialSpec:
    dir: Path
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.dir.name


@dataclass(frozen=True)
class SelectSpec:
    metric: str
    mode: str
    trials: tuple[TrialSpec, ...]


def parse_select(overrides: tuple[str, ...]) -> SelectSpec:
    metric, mode, trials = None, None, []
    for override in overrides:
        if override.startswith(SELECT_METRIC):
            metric = override[len(SELECT_METRIC) :]
        elif override.startswith(SELECT_MODE):
            mode = override[len(SELECT_MODE) :]
        elif override.startswith(SELECT_TRIAL):
            try:
                trial = json.loads(override[len(SELECT_TRIAL) :])
                trials.append(TrialSpec(Path(trial["dir"]), tuple(trial["overrides"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UserError(
                    f'select stage override \'{override}\': trial={{"dir", "overrides"}} '
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        else:
            raise UserError(
                f"select stage override '{override}': select=<metric>, mode=min|max or trial=<JSON>"
            )
    if metric is None or mode not in ("min", "max") or not trials:
        raise UserError(
            f"select stage {list(overrides)}: needs select=<metric>, mode=min|max and a trial"
        )
    return SelectSpec(metric, mode, tuple(trials))


def best_trial(values: list[float | None], mode: str) -> int | None:
    """The index of the best value (None: skipped); ties go to the first."""
    best = None
    for i, value in enumerate(values):
        if value is None:
            continue
        if best is None or (value < values[best] if mode == "min" else value > values[best]):
            best = i
    return best


def _completed(study_dir: Path, trial: Path) -> bool:
    """The trial's stage finished (its record is there: a rerun removes it first) and its run
    says completed."""
    try:
        record = record_dir_of(study_dir, trial) / STAGE_RECORD
        return record.is_file() and RunDir(trial).status() == "completed"
    except (UserError, ValueError):
        return False


def trial_outcome(study_dir: Path, trial: TrialSpec, metric: str) -> dict[str, Any]:
    """What selection.json says of one trial: status, value, steps trained, why it was skipped."""
    out: dict[str, Any] = {
        "name": trial.name,
        "dir": _inside(study_dir, trial.dir),
        "overrides": list(trial.overrides),
        "status": NOT_COMPLETED,
        "value": None,
        "steps": None,
        "reason": None,
    }
    if not _completed(study_dir, trial.dir):
        out["reason"] = "its training run did not complete"
        return out
    out["status"] = NO_VALUE
    try:
        metrics = read_json_object(RunDir(trial.dir).metrics_record).get("metrics")
    except UserError as exc:
        out["reason"] = str(exc).splitlines()[0]
        return out
    if not isinstance(metrics, dict):
        out["reason"] = "its metrics.json has no 'metrics' object"
        return out
    out["steps"] = metrics.get("global_step")
    value = metrics.get(metric)
    if value is None:
        out["reason"] = f"no '{metric}' in its metrics.json (it has {', '.join(sorted(metrics))})"
    elif not isinstance(value, int | float) or isinstance(value, bool):
        out["reason"] = f"'{metric}' is {value!r}, not a number"
    elif not math.isfinite(value):
        out["reason"] = f"'{metric}' is {value}"
    else:
        out["status"], out["value"] = VALID, float(value)
    return out


def _inside(study_dir: Path, path: Path) -> str:
    try:
        return str(path.relative_to(study_dir))
    except ValueError:
        return str(path)


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    spec = parse_select(stage.overrides)
    (out / SELECTION).unlink(missing_ok=True)  # a failed selection leaves no earlier choice
    trials = [trial_outcome(study_dir, trial, spec.metric) for trial in spec.trials]
    best = best_trial([t["value"] if t["status"] == VALID else None for t in trials], spec.mode)
    if best is None:
        reasons = "; ".join(f"{t['name']}: {t['reason']}" for t in trials)
        raise UserError(f"no trial of {stage.key} has a finite '{spec.metric}' ({reasons})")
    chosen = trials[best]
    out.mkdir(parents=True, exist_ok=True)
    config = {"stage": stage.key, "select": spec.metric, "mode": spec.mode}
    write_json(
        out / SELECTION,
        {
            "stage": stage.key,
            "subject": stage.subject,
            "arm": stage.arm,
            "select": spec.metric,
            "mode": spec.mode,
            "trials": trials,
            "skipped": [t["name"] for t in trials if t["status"] != VALID],
            "chosen": {k: chosen[k] for k in ("name", "dir", "overrides", "value", "steps")},
            **provenance(config, None),
        },
    )


def read_selection(path: Path) -> dict[str, Any]:
    """selection.json, with its chosen overrides checked (a list of strings)."""
    record = read_json_object(path)
    chosen = record.get("chosen")
    overrides = chosen.get("overrides") if isinstance(chosen, dict) else None
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"'{path}': 'chosen.overrides' is not a list of overrides")
    return record


def chosen_overrides(study_dir: Path, stage: Stage) -> tuple[str, ...]:
    """The overrides a tuned arm's seed run appends (none for an untuned stage)."""
    if stage.selection is None:
        return ()
    path = study_dir / stage.selection / SELECTION
    if not path.is_file():
        raise UserError(f"stage {stage.key} trains with the tuned configuration, but '{path}' "
                        "does not exist: its select stage has not run")  # fmt: skip
    return tuple(read_selection(path)["chosen"]["overrides"])


def effective_overrides(study_dir: Path, stage: Stage) -> tuple[str, ...]:
    """What the stage runs with: its own overrides, then the chosen ones when it is tuned."""
    return (*stage.overrides, *chosen_overrides(study_dir, stage))


def _valid(out: Path) -> bool:
    try:
        read_selection(out / SELECTION)
    except UserError:
        return False
    return True


SELECT = StageKind(_run, _valid)
