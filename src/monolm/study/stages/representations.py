"""evaluate.py task=[cka] on a subject's runs (`study.representations`), in-process: the arms'
first-seed runs pairwise (and with the base model), each arm's first two seeds as its floor.
Outputs: evaluate's (eval.json, cka.json, the heat maps and the per-layer plot)."""

from __future__ import annotations

from pathlib import Path

from monolm.evaluation.representations import CKA_RECORD
from monolm.run_dir import EVAL_RECORD
from monolm.study.stages.base import StageKind, valid_json
from monolm.study.stages.evaluate import SCRIPT, run_evaluate


def outputs_valid(out: Path) -> bool:
    return valid_json(out / EVAL_RECORD) and valid_json(out / CKA_RECORD)


REPRESENTATIONS = StageKind(run_evaluate, outputs_valid, SCRIPT)
