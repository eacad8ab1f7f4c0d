"""Running one stage in-process: the script's own config (train.py, evaluate.py, attack.py)
composed with the stage's overrides, run into the stage's dir, then `stage.json` recording the
stage's hash. In-process, so a SLURM array task that runs a training stage saves and requeues
on preemption exactly as train.py does (training/callbacks.py StopSignal).

A stage is done when `stage.json` holds the plan's hash and its outputs validate: a training
run whose run.json says completed, an eval.json or attack.json that parses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from monolm.errors import UserError
from monolm.provenance import write_json
from monolm.run_dir import ATTACK_RECORD, EVAL_RECORD, RunDir
from monolm.study.plan import Stage

STAGE_RECORD = "stage.json"
STAGE_LOG = "stage.log"


def _valid_json(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, json.JSONDecodeError):
        return False


def _completed_run(out: Path) -> bool:
    try:
        return RunDir(out).status() == "completed"
    except UserError:
        return False


@dataclass(frozen=True)
class StageKind:
    """How a kind of stage runs: the script config it composes and the function it calls."""

    config_dir: str  # relative to conf/
    config_name: str
    outputs_valid: Callable[[Path], bool]

    def compose(self, conf_dir: Path, overrides: tuple[str, ...], out: Path) -> DictConfig:
        _register_configs()
        with initialize_config_dir(config_dir=str(conf_dir / self.config_dir), version_base="1.3"):
            return compose(self.config_name, overrides=[*overrides, f"paths.output_dir={out}"])


def _register_configs() -> None:
    from monolm.attacks.config import register_attack_configs
    from monolm.config.eval_schema import register_evaluate_configs
    from monolm.config.schema import register_configs
    from monolm.constraints import register_constraint_configs

    register_configs()
    register_constraint_configs()
    register_evaluate_configs()
    register_attack_configs()


def _train(cfg: DictConfig, conf_dir: Path) -> None:
    from monolm.training.run import train

    train(cfg)


def _evaluate(cfg: DictConfig, conf_dir: Path) -> None:
    from monolm.evaluation.run import evaluate

    evaluate(cfg, conf_dir)


def _attack(cfg: DictConfig, conf_dir: Path) -> None:
    from monolm.attacks.run import attack

    attack(cfg, conf_dir)


KINDS: dict[str, tuple[StageKind, Callable[[DictConfig, Path], None]]] = {
    "train": (StageKind(".", "train", _completed_run), _train),
    "evaluate": (
        StageKind("evaluate", "evaluate", lambda out: _valid_json(out / EVAL_RECORD)),
        _evaluate,
    ),
    "attack": (
        StageKind("attack", "attack", lambda out: _valid_json(out / ATTACK_RECORD)),
        _attack,
    ),
    "control": (
        StageKind("attack", "attack", lambda out: _valid_json(out / ATTACK_RECORD)),
        _attack,
    ),
}


def stage_record(study_dir: Path, stage: Stage) -> dict[str, Any] | None:
    path = study_dir / stage.dir / STAGE_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"'{path}' is corrupt ({type(exc).__name__}: {exc})") from exc
    return record if isinstance(record, dict) else None


def is_done(study_dir: Path, stage: Stage, sha256: str) -> bool:
    """The stage's recorded hash is the plan's and its outputs validate."""
    kind, _ = KINDS[stage.kind]
    record = stage_record(study_dir, stage)
    return (
        record is not None
        and record.get("sha256") == sha256
        and kind.outputs_valid(study_dir / stage.dir)
    )


@contextmanager
def stage_log(out: Path) -> Iterator[None]:
    """Everything logged while the stage runs also goes to `<dir>/stage.log`."""
    handler = logging.FileHandler(out / STAGE_LOG, delay=True)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def run_stage(study_dir: Path, conf_dir: Path, stage: Stage, sha256: str) -> None:
    """Run `stage` in this process into its dir, then record its hash."""
    if stage.kind not in KINDS:
        raise UserError(f"stage kind '{stage.kind}' cannot run in-process: one of {list(KINDS)}")
    kind, function = KINDS[stage.kind]
    out = study_dir / stage.dir
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    cfg = kind.compose(conf_dir, stage.overrides, out)
    with stage_log(out):
        function(cfg, conf_dir)
    if not kind.outputs_valid(out):
        raise UserError(f"stage {stage.key} finished but its outputs in '{out}' do not validate")
    write_json(
        out / STAGE_RECORD,
        {
            "key": stage.key,
            "kind": stage.kind,
            "sha256": sha256,
            "overrides": list(stage.overrides),
            "seconds": time.time() - started,
        },
    )
