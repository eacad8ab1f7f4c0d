"""Every file the study report reads, loaded and checked: a missing or malformed file is a one-line
`UserError` naming the path and what is wrong with it ("'<path>': row 3 has no 'delta_nll'").

- `study.json` (`load_study`): the settings, the resolved baseline and every stage with its hash;
- each stage's state (`stage_states`): done when its `stage.json` holds the plan's hash (as
  `stages.is_done`, then its outputs are checked here, strictly: a done stage whose file is broken
  is an error, not a silently missing run), failed (`stage-failed.json`: its reason and log),
  incomplete (a record of another hash: changed or half written) or missing;
- an evaluate dir (`load_eval`), an attack or control dir (`load_attack`), a transfer dir
  (`load_transfer`), a training run's logged curves (`load_training_curves`).

Per-example rows are kept as read; `Rows` remembers the file and each row's line so that whoever
reads a field can name the row that lacks it (`Rows.number`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from monolm.config.typed import typed_settings
from monolm.errors import UserError
from monolm.provenance import read_json_object, read_jsonl
from monolm.run_dir import (
    ATTACK_EXAMPLES,
    ATTACK_RECORD,
    EVAL_RECORD,
    TRANSFER_RECORD,
    examples_file,
)
from monolm.study.bookkeeping import (
    STAGE_FAILURE,
    record_dir,
    running_record,
    stage_log_path,
    stage_record,
)
from monolm.study.plan import KINDS, STUDY_PLAN, Stage
from monolm.study.settings import StudySettings

ATTACK_STATUSES = ("success", "failure", "skipped")
TRAINING_CSV = "csv/metrics.csv"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a UserError naming it."""
    if not path.is_file():
        raise UserError(f"'{path}' is missing")
    return read_json_object(path)


def field_of(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    """`record[key]`, of type `kind` (None allowed when `kind` includes NoneType)."""
    if key not in record:
        raise UserError(f"'{path}' has no '{key}'")
    value = record[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
        raise UserError(f"'{path}': '{key}' is {type(value).__name__}, not {_names(kind)}")
    return value


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in _types(kind))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Rows:
    """One `.jsonl` file's rows (JSON objects, each with a unique `id`), in file order."""

    path: Path
    rows: tuple[dict[str, Any], ...]

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row number from 1, row)."""
        return iter(enumerate(self.rows, start=1))

    def __len__(self) -> int:
        return len(self.rows)

    def field(self, line: int, row: Mapping[str, Any], key: str) -> Any:
        if key not in row:
            raise UserError(f"'{self.path}': row {line} has no '{key}'")
        return row[key]

    def number(self, line: int, row: Mapping[str, Any], key: str, nullable: bool = False) -> float:
        """A finite number; NaN where the row holds null and `nullable`."""
        value = self.field(line, row, key)
        if value is None and nullable:
            return math.nan
        if not is_number(value):
            raise UserError(f"'{self.path}': row {line} has '{key}' = {value!r}, not a number")
        return float(value)


def read_rows(path: Path) -> Rows:
    if not path.is_file():
        raise UserError(f"'{path}' is missing")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line, row in read_jsonl(path):
        ident = row.get("id")
        if not isinstance(ident, int | str) or isinstance(ident, bool):
            raise UserError(f"'{path}': row {line} has no 'id' (a string or integer)")
        key = json.dumps(ident)
        if key in seen:
            raise UserError(f"'{path}': row {line} repeats id {ident!r}")
        seen.add(key)
        rows.append(row)
    return Rows(path, tuple(rows))


# --- the plan and the stages' states --------------------------------------------------------


@dataclass(frozen=True)
class StudyRecord:
    """study.json: the settings, the baseline arm and every stage with its hash."""

    path: Path
    settings: StudySettings
    baseline: str
    stages: tuple[Stage, ...]
    hashes: dict[str, str]
    raw_settings: dict[str, Any]


_STAGE_FIELDS = {f.name for f in fields(Stage)}
_TUPLES = ("overrides", "needs", "targets")


def _stage(path: Path, index: int, entry: Any) -> tuple[Stage, str]:
    where = f"'{path}': stages[{index}]"
    if not isinstance(entry, dict):
        raise UserError(f"{where} is not a JSON object")
    for key in ("kind", "key", "dir", "overrides", "sha256"):
        if key not in entry:
            raise UserError(f"{where} has no '{key}'")
    if entry["kind"] not in KINDS:
        raise UserError(f"{where} has kind {entry['kind']!r}, not one of {', '.join(KINDS)}")
    unknown = sorted(set(entry) - _STAGE_FIELDS - {"sha256"})
    if unknown:
        raise UserError(f"{where} has unknown key(s) {unknown}")
    values = {k: v for k, v in entry.items() if k in _STAGE_FIELDS}
    for key in _TUPLES:
        if key in values:
            if not isinstance(values[key], list):
                raise UserError(f"{where}: '{key}' is not a list")
            values[key] = tuple(values[key])
    typed = (("subject", str), ("arm", str), ("name", str), ("seed", int), ("step", int))
    for key, kind in (*typed, ("simple_baseline", str)):
        value = values.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UserError(f"{where}: '{key}' is {value!r}, not {kind.__name__} or null")
    sha = entry["sha256"]
    if not isinstance(sha, str):
        raise UserError(f"{where}: 'sha256' is not a string")
    for key in ("key", "dir"):
        if not isinstance(values[key], str) or not values[key]:
            raise UserError(f"{where}: '{key}' is not a non-empty string")
    return Stage(**values), sha


def load_study(study_dir: Path) -> StudyRecord:
    path = study_dir / STUDY_PLAN
    record = read_json(path)
    raw = field_of(record, "settings", dict, path)
    try:
        settings = typed_settings(StudySettings, raw, "settings.")
        settings.check()
    except UserError as exc:
        raise UserError(f"'{path}': {exc}") from exc
    entries = field_of(record, "stages", list, path)
    stages, hashes = [], {}
    for index, entry in enumerate(entries):
        stage, sha = _stage(path, index, entry)
        if stage.key in hashes:
            raise UserError(f"'{path}': stages[{index}] repeats key '{stage.key}'")
        stages.append(stage)
        hashes[stage.key] = sha
    baseline = record.get("baseline", settings.baseline_arm)
    if baseline not in settings.arms:
        raise UserError(f"'{path}': baseline {baseline!r} is not one of its arms")
    return StudyRecord(path, settings, baseline, tuple(stages), hashes, raw)


@dataclass(frozen=True)
class StageState:
    key: str
    kind: str
    dir: str
    state: str  # done | failed | incomplete | missing
    reason: str | None = None
    log: str | None = None  # relative to the study dir


def stage_state(study_dir: Path, stage: Stage, sha256: str) -> StageState:
    """Done when its `stage.json` holds the plan's hash (its outputs are checked when read)."""
    record = stage_record(study_dir, stage)
    log = str(stage_log_path(study_dir, stage).relative_to(study_dir))
    if record is not None and record.get("sha256") == sha256:
        return StageState(stage.key, stage.kind, stage.dir, "done")
    failure = record_dir(study_dir, stage) / STAGE_FAILURE
    if failure.exists():
        reason = field_of(read_json(failure), "reason", str, failure)
        return StageState(stage.key, stage.kind, stage.dir, "failed", reason, log)
    running = running_record(study_dir, stage)
    if running is not None:
        where = ", ".join(
            f"{k} {running[k]}" for k in ("host", "pid", "slurm_job_id") if k in running
        )
        return StageState(stage.key, stage.kind, stage.dir, "incomplete", f"running ({where})", log)
    if record is not None:
        why = "its stage.json records another hash: changed since, or rerun and not finished"
        return StageState(stage.key, stage.kind, stage.dir, "incomplete", why, log)
    return StageState(stage.key, stage.kind, stage.dir, "missing", "not run (no stage.json)")


def stage_states(study_dir: Path, study: StudyRecord) -> dict[str, StageState]:
    """Every stage but the report itself; a missing stage that needs one not done says so."""
    states: dict[str, StageState] = {}
    for stage in study.stages:
        if stage.kind == "report":
            continue
        state = stage_state(study_dir, stage, study.hashes[stage.key])
        blocking = [n for n in stage.needs if n in states and states[n].state != "done"]
        if state.state == "missing" and blocking:
            reason = f"not run: it needs {blocking[0]} ({states[blocking[0]].state})"
            state = StageState(stage.key, stage.kind, stage.dir, "missing", reason)
        states[stage.key] = state
    return states


# --- a stage's outputs ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRecord:
    name: str
    kind: str
    rows: Rows


def load_eval(out: Path) -> dict[str, TaskRecord]:
    """eval.json's tasks (in its order), each with its per-example rows."""
    path = out / EVAL_RECORD
    tasks = field_of(read_json(path), "tasks", dict, path)
    if not tasks:
        raise UserError(f"'{path}': 'tasks' is empty")
    loaded = {}
    for name, task in tasks.items():
        if not isinstance(task, dict):
            raise UserError(f"'{path}': tasks.{name} is not a JSON object")
        kind = field_of(task, "kind", str, path)
        file = field_of(task, "examples_file", str, path)
        loaded[name] = TaskRecord(name, kind, read_rows(out / file))
    return loaded


@dataclass(frozen=True)
class AttackRecord:
    """An attack (or control) stage: its rows, its audit and what success means."""

    path: Path
    rows: Rows
    audit: dict[str, Any] | None
    nll_success_threshold: float | None
    budget_curve: dict[str, Any] | None


def check_attack_rows(rows: Rows) -> Rows:
    for line, row in rows:
        status = rows.field(line, row, "status")
        if status not in ATTACK_STATUSES:
            raise UserError(
                f"'{rows.path}': row {line} has status {status!r}, not one of "
                f"{', '.join(ATTACK_STATUSES)}"
            )
        rows.number(line, row, "delta_nll")
        rows.number(line, row, "clean_nll")
        rows.number(line, row, "relative_nll", nullable=True)
        if "curve" in row:
            check_curve(rows, line, row["curve"])
    return rows


def check_curve(rows: Rows, line: int, curve: Any) -> None:
    bad = not isinstance(curve, list) or any(
        not isinstance(point, list) or len(point) != 2 or not all(map(is_number, point))
        for point in curve
    )
    if bad:
        raise UserError(f"'{rows.path}': row {line} has a 'curve' that is not [[queries, gain]...]")


def load_attack(out: Path) -> AttackRecord:
    path = out / ATTACK_RECORD
    record = read_json(path)
    file = record.get("examples_file", ATTACK_EXAMPLES)
    if not isinstance(file, str):
        raise UserError(f"'{path}': 'examples_file' is not a string")
    audit = record.get("audit")
    if audit is not None and not isinstance(audit, dict):
        raise UserError(f"'{path}': 'audit' is not a JSON object")
    curve = record.get("budget_curve")
    if curve is not None:
        for key in ("queries", "mean_gain"):
            values = field_of(curve, key, list, path)
            if not all(map(is_number, values)):
                raise UserError(f"'{path}': budget_curve.{key} holds a value that is no number")
        if len(curve["queries"]) != len(curve["mean_gain"]):
            raise UserError(f"'{path}': budget_curve.queries and .mean_gain differ in length")
    config = record.get("config")
    attack = config.get("attack") if isinstance(config, dict) else None
    threshold = attack.get("nll_success_threshold") if isinstance(attack, dict) else None
    return AttackRecord(
        path,
        check_attack_rows(read_rows(out / file)),
        audit,
        float(threshold) if is_number(threshold) else None,
        curve,
    )


@dataclass(frozen=True)
class TransferRecord:
    """A transfer stage: the source's attacked inputs replayed on each target arm."""

    path: Path
    source: str | None  # the source arm, where the record names it
    cells: dict[str, Rows]  # target arm -> its rows


def load_transfer(out: Path) -> TransferRecord:
    path = out / TRANSFER_RECORD
    record = read_json(path)
    source = field_of(record, "source", dict, path)
    arm = source.get("arm")
    if arm is not None and not isinstance(arm, str):
        raise UserError(f"'{path}': source.arm is not a string")
    cells = field_of(record, "cells", dict, path)
    loaded = {}
    for target, cell in cells.items():
        if not isinstance(cell, dict):
            raise UserError(f"'{path}': cells.{target} is not a JSON object")
        file = cell.get("examples_file", examples_file(target))
        if not isinstance(file, str):
            raise UserError(f"'{path}': cells.{target}.examples_file is not a string")
        loaded[target] = check_attack_rows(read_rows(out / file))
    return TransferRecord(path, arm, loaded)


def load_training_curves(run_dir: Path) -> dict[str, tuple[tuple[int, float], ...]] | None:
    """Each logged column of `csv/metrics.csv` as (step, value) pairs, sorted by step; a step
    logged twice (a resumed segment) keeps its last value. None when the run logged no CSV."""
    path = run_dir / TRAINING_CSV
    if not path.is_file():
        return None
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            lines = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"'{path}' is unreadable ({type(exc).__name__}: {exc})") from exc
    if "step" not in header:
        raise UserError(f"'{path}' has no 'step' column (columns: {header})")
    columns: dict[str, dict[int, float]] = {
        name: {} for name in header if name not in ("step", "epoch")
    }
    for line, row in enumerate(lines, start=2):
        try:
            step = int(float(row["step"]))
        except (TypeError, ValueError):
            raise UserError(f"'{path}': line {line} has step {row['step']!r}") from None
        for name, by_step in columns.items():
            text = row.get(name)
            if text in (None, ""):
                continue
            try:
                value = float(text)
            except ValueError:
                raise UserError(f"'{path}': line {line} has {name} {text!r}") from None
            if math.isfinite(value):
                by_step[step] = value
    return {name: tuple(sorted(by_step.items())) for name, by_step in columns.items() if by_step}
