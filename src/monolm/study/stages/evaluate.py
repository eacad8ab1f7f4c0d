"""evaluate.py on a run (or one of its periodic checkpoints), or on a simple baseline
(`study.baselines`: no run), in-process."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from monolm.run_dir import EVAL_RECORD
from monolm.study.compose import compose_script
from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind, valid_json

SCRIPT = ("evaluate", "evaluate")


def run_evaluate(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.evaluation.run import evaluate

    evaluate(compose_script(conf_dir, *SCRIPT, stage.overrides, out), conf_dir)


def _plan_baseline(conf_dir: Path, stage: Stage, cfg: DictConfig) -> None:
    """A simple baseline's subject and tasks checked as evaluate.py checks them, nothing loaded
    (a task the baseline cannot score, a task option on a dataset of another kind: one line
    before any stage runs). An arm's evaluation is not: its run does not exist yet."""
    if stage.simple_baseline is None:
        return
    from monolm.evaluation.run import plan_subjects

    plan_subjects(cfg, conf_dir)


EVALUATE = StageKind(
    run_evaluate, lambda out: valid_json(out / EVAL_RECORD), SCRIPT, _plan_baseline
)
