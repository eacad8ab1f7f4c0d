"""A training run (train.py), in-process: under SLURM it saves and requeues on preemption
exactly as train.py does (training/callbacks.py StopSignal), and a requeued task resumes.

The same kind runs a tuning trial (`tune`: one grid point of an arm) and a seed run; a tuned
arm's seed run appends the configuration its select stage chose (stages/select.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from monolm.errors import UserError
from monolm.run_dir import RunDir
from monolm.study.compose import compose_script
from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind
from monolm.study.stages.select import effective_overrides

SCRIPT = (".", "train")
CHOSEN = "chosen"  # stage.json: the chosen overrides a tuned seed run trained with
REPLACED = "{name}.replaced-{n}"

log = logging.getLogger(__name__)


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.training.run import train

    train(compose_script(conf_dir, *SCRIPT, effective_overrides(study_dir, stage), out))


def _completed(out: Path) -> bool:
    try:
        return RunDir(out).status() == "completed"
    except UserError:
        return False


def set_aside(out: Path) -> Path | None:
    """Move a finished run that a tuned seed run now replaces (it trained with another chosen
    configuration) to `<dir>.replaced-<n>` beside it: a run dir holds one run (train.py refuses
    another configuration in it), and nothing is deleted."""
    if not out.exists():
        return None
    n = 1
    while (aside := out.with_name(REPLACED.format(name=out.name, n=n))).exists():
        n += 1
    out.rename(aside)
    log.warning("%s trained with another selected configuration: moved to %s", out, aside)
    return aside


TRAIN = StageKind(_run, _completed, SCRIPT)
