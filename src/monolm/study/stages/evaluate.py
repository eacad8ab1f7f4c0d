"""evaluate.py on a run (or one of its periodic checkpoints), in-process."""

from __future__ import annotations

from pathlib import Path

from monolm.run_dir import EVAL_RECORD
from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind, compose_script, valid_json

SCRIPT = ("evaluate", "evaluate")


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.evaluation.run import evaluate

    evaluate(compose_script(conf_dir, *SCRIPT, stage.overrides, out), conf_dir)


EVALUATE = StageKind(_run, lambda out: valid_json(out / EVAL_RECORD), SCRIPT)
