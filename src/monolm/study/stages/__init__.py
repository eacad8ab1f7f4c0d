"""The study's stages: each kind is one module here (train, select, evaluate, attack, transfer,
representations, report) registered in `KINDS` (a tuning trial, `tune`, is a training run); this
module runs one stage, records it, and says whether it is done.

A stage's outputs go to its own dir (the plan's `dir`, relative to the study dir), and nothing
else: a training run dir stays exactly what train.py writes. Its bookkeeping goes to
`<study_dir>/stages/<dir>/` (`record_dir`):
- `stage-running.json` while it runs (host, pid, SLURM job id, start time);
- `stage.json` when it finished and its outputs validate, holding the plan's hash;
- `stage-failed.json` (the one-line reason and the traceback) when it raised;
- `stage.log`: everything logged while it ran.

A stage is done when `stage.json` holds the plan's hash and its outputs validate: a rerun skips
finished work and redoes changed work (the hash chains through everything upstream).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Container, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from monolm.cli import describe
from monolm.errors import UserError
from monolm.provenance import write_json
from monolm.study.bookkeeping import (
    STAGE_FAILURE,
    STAGE_LOG,
    STAGE_RECORD,
    STAGE_RUNNING,
    record_dir,
    stage_record,
)
from monolm.study.plan import Stage
from monolm.study.stages.attack import ATTACK, CONTROL
from monolm.study.stages.base import StageKind
from monolm.study.stages.evaluate import EVALUATE
from monolm.study.stages.report import REPORT
from monolm.study.stages.representations import REPRESENTATIONS
from monolm.study.stages.select import SELECT, chosen_overrides, parse_select
from monolm.study.stages.train import CHOSEN, TRAIN, set_aside
from monolm.study.stages.transfer import TRANSFER

KINDS: dict[str, StageKind] = {
    "tune": TRAIN,
    "select": SELECT,
    "train": TRAIN,
    "evaluate": EVALUATE,
    "attack": ATTACK,
    "control": CONTROL,
    "transfer": TRANSFER,
    "representations": REPRESENTATIONS,
    "report": REPORT,
}


def check_stages(study_dir: Path, conf_dir: Path, stages: list[Stage]) -> None:
    """Compose every stage's config as it will run, once per distinct set of overrides up to
    the run and checkpoint it points at (each training run's arm and subject; every tuning
    trial and simple baseline; each other kind's attack): a typo in an arm, a subject, a grid or
    an attack ends the command in one line naming the stage, before anything runs. A tuned
    arm's seed run, whose configuration is chosen later, is composed with its first grid
    point."""
    first_points = {
        s.dir: parse_select(s.overrides).trials[0].overrides for s in stages if s.kind == "select"
    }
    seen = set()
    for stage in stages:
        if stage.kind == "train":
            shape = (stage.kind, stage.subject, stage.arm)
        elif stage.kind == "representations":
            shape = (stage.kind, stage.subject)
        elif stage.kind == "tune" or stage.simple_baseline is not None:
            shape = (stage.kind, stage.key)  # each subject's baselines read its own options
        else:
            shape = (stage.kind, stage.name)
        if shape in seen:
            continue
        seen.add(shape)
        if stage.selection is not None:
            stage = replace(stage, overrides=(*stage.overrides, *first_points[stage.selection]))
        try:
            KINDS[stage.kind].check(conf_dir, stage, study_dir / stage.dir)
        except Exception as exc:
            message = describe(exc)
            if message is None:
                raise
            raise UserError(f"study stage {stage.key}: {message}") from exc


def is_done(study_dir: Path, stage: Stage, sha256: str) -> bool:
    """The stage's recorded hash is the plan's and its outputs validate."""
    record = stage_record(study_dir, stage)
    return (
        record is not None
        and record.get("sha256") == sha256
        and KINDS[stage.kind].outputs_valid(study_dir / stage.dir)
    )


def blocking_needs(stage: Stage, unavailable: Container[str]) -> list[str]:
    """The needs that keep `stage` from running: those that failed or are blocked. The report
    runs whatever failed (it reports failures), and a select stage runs while any of its trials
    is available (it skips and lists the others)."""
    failed = [need for need in stage.needs if need in unavailable]
    if stage.kind == "report" or (stage.kind == "select" and len(failed) < len(stage.needs)):
        return []
    return failed


@contextmanager
def stage_log(path: Path) -> Iterator[None]:
    """Everything logged while the stage runs also goes to `path`."""
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def _slurm_job_id() -> str | None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}"
    return os.environ.get("SLURM_JOB_ID")


def run_stage(study_dir: Path, conf_dir: Path, stage: Stage, sha256: str) -> None:
    """Run `stage` in this process into its dir and record it: `stage.json` when its outputs
    validate, `stage-failed.json` (then re-raised) when it raised."""
    kind = KINDS[stage.kind]
    out = study_dir / stage.dir
    records = record_dir(study_dir, stage)
    records.mkdir(parents=True, exist_ok=True)
    previous = stage_record(study_dir, stage)
    for stale in (STAGE_FAILURE, STAGE_RECORD):
        (records / stale).unlink(missing_ok=True)
    started = time.time()
    chosen: list[str] | None = None
    write_json(
        records / STAGE_RUNNING,
        {
            "key": stage.key,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job_id": _slurm_job_id(),
            "started": started,
        },
    )
    try:
        with stage_log(records / STAGE_LOG):
            if stage.selection is not None:  # what it trains with, recorded below
                chosen = list(chosen_overrides(study_dir, stage))
                if previous is not None and previous.get(CHOSEN) != chosen:
                    set_aside(out)  # trained with another choice: train.py would refuse the dir
            kind.run(study_dir, conf_dir, stage, out)
        if not kind.outputs_valid(out):
            raise UserError(
                f"stage {stage.key} finished but its outputs in '{out}' do not validate"
            )
    except BaseException as exc:
        if isinstance(exc, Exception):  # a stop signal (SystemExit on requeue) is not a failure
            write_json(
                records / STAGE_FAILURE,
                {
                    "key": stage.key,
                    "reason": f"{type(exc).__name__}: {exc}".splitlines()[0],
                    "traceback": traceback.format_exc(),
                    "slurm_job_id": _slurm_job_id(),
                },
            )
        raise
    finally:
        (records / STAGE_RUNNING).unlink(missing_ok=True)
    write_json(
        records / STAGE_RECORD,
        {
            "key": stage.key,
            "kind": stage.kind,
            "sha256": sha256,
            "overrides": list(stage.overrides),
            **({} if chosen is None else {CHOSEN: chosen}),
            "seconds": time.time() - started,
            "slurm_job_id": _slurm_job_id(),
        },
    )
