"""A training run (train.py), in-process: under SLURM it saves and requeues on preemption
exactly as train.py does (training/callbacks.py StopSignal), and a requeued task resumes."""

from __future__ import annotations

from pathlib import Path

from monolm.errors import UserError
from monolm.run_dir import RunDir
from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind, compose_script

SCRIPT = (".", "train")


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.training.run import train

    train(compose_script(conf_dir, *SCRIPT, stage.overrides, out))


def _completed(out: Path) -> bool:
    try:
        return RunDir(out).status() == "completed"
    except UserError:
        return False


TRAIN = StageKind(_run, _completed, SCRIPT)
