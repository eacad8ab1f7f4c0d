"""attack.py on a run (or one of its periodic checkpoints), in-process; the matched random
control is the same stage with `attack=random attack.mimic=<attack>`."""

from __future__ import annotations

from pathlib import Path

from monolm.run_dir import ATTACK_EXAMPLES, ATTACK_RECORD
from monolm.study.compose import compose_script
from monolm.study.plan import Stage
from monolm.study.stages.base import StageKind, valid_json

SCRIPT = ("attack", "attack")


def _run(study_dir: Path, conf_dir: Path, stage: Stage, out: Path) -> None:
    from monolm.attacks.run import attack

    attack(compose_script(conf_dir, *SCRIPT, stage.overrides, out), conf_dir)


def _valid(out: Path) -> bool:
    return valid_json(out / ATTACK_RECORD) and (out / ATTACK_EXAMPLES).is_file()


ATTACK = StageKind(_run, _valid, SCRIPT)
CONTROL = StageKind(_run, _valid, SCRIPT)
