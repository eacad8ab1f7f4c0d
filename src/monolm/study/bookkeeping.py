"""A stage's bookkeeping beside its outputs, in `<study_dir>/stages/<stage dir>/`: its record when
it finished (with the plan's hash), its running marker, its failure, its log. Read by the
executors, `status` and the report alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monolm.errors import UserError
from monolm.study.plan import Stage

STAGE_RECORD = "stage.json"
STAGE_LOG = "stage.log"
STAGE_FAILURE = "stage-failed.json"
STAGE_RUNNING = "stage-running.json"
RECORDS_DIR = "stages"


def _record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"'{path}' is corrupt ({type(exc).__name__}: {exc})") from exc
    return record if isinstance(record, dict) else None


def record_dir(study_dir: Path, stage: Stage) -> Path:
    """Where the stage's bookkeeping (record, failure, log) goes."""
    return record_dir_of(study_dir, stage.dir)


def record_dir_of(study_dir: Path, stage_dir: str | Path) -> Path:
    """The bookkeeping dir of the stage whose output dir is `stage_dir` (relative to the study
    dir, or inside it)."""
    inside = Path(stage_dir)
    if inside.is_absolute():
        inside = inside.relative_to(study_dir)
    return study_dir / RECORDS_DIR / inside


def stage_log_path(study_dir: Path, stage: Stage) -> Path:
    return record_dir(study_dir, stage) / STAGE_LOG


def stage_record(study_dir: Path, stage: Stage) -> dict[str, Any] | None:
    return _record(record_dir(study_dir, stage) / STAGE_RECORD)


def failure_record(study_dir: Path, stage: Stage) -> dict[str, Any] | None:
    return _record(record_dir(study_dir, stage) / STAGE_FAILURE)


def running_record(study_dir: Path, stage: Stage) -> dict[str, Any] | None:
    return _record(record_dir(study_dir, stage) / STAGE_RUNNING)
