"""The run directory: the one definition of its layout, used by the stage that writes it
(training) and by every stage that reads it (evaluate, attack, verify, export, the study).

A run dir holds `identity.json` (the config it was created with, written once), `.hydra/` (the
creating segment's Hydra config; later segments' in `.hydra/segment-<n>/`), `run.json`
(resolved config, seed, code and package versions, host, status, segments), `metrics.json`,
`tokenizer/`, `model_config/`, `checkpoints/` (`last.ckpt` plus periodic `step-*.ckpt`), while
a process writes it `run.lock`, and, for a transformed model, the transform's own record
(`<record>.json`, e.g. `monotonicity.json`). evaluate and attack write their own dirs
(`eval.json`, `attack.json` and per-example JSONL); an export is a plain Hugging Face directory
with `monolm_export.json`. Every one of these names is spelled here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from monolm.errors import UserError

RUN_RECORD = "run.json"
RUN_IDENTITY = "identity.json"  # written once, when the run is created; never rewritten
RUN_LOCK = "run.lock"  # held by the one process writing the run (host, pid, start time)
HYDRA_DIR = ".hydra"  # the creating segment's Hydra config; later segments' in segment-<n>/
METRICS_RECORD = "metrics.json"
TOKENIZER_DIR = "tokenizer"
MODEL_CONFIG_DIR = "model_config"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
PERIODIC_CHECKPOINTS = "step-*.ckpt"
PERIODIC_CHECKPOINT_NAME = "step-{step:07d}"  # ModelCheckpoint's filename pattern

EVAL_RECORD = "eval.json"
ATTACK_RECORD = "attack.json"
ATTACK_EXAMPLES = "examples.jsonl"
ATTACK_AUDIT = "audit.jsonl"  # attack.audit: the exhaustive single-flip audit, per example
TRIGGERS_RECORD = "triggers.json"
TRANSFER_RECORD = "transfer.json"
TRANSFER_DIR = "transfer"
EXPORT_RECORD = "monolm_export.json"
VERIFICATION_RECORD = "verification.json"


def examples_file(name: str) -> str:
    """The per-example rows of one evaluation task or transfer target: `<name>.examples.jsonl`."""
    return f"{name}.examples.jsonl"


def record_file(name: str) -> str:
    """A transform's record in the run dir: `<name>.json`."""
    return f"{name}.json"


@dataclass(frozen=True)
class RunDir:
    """A training run directory (it may not exist yet: training creates it)."""

    path: Path

    @property
    def run_record(self) -> Path:
        return self.path / RUN_RECORD

    @property
    def metrics_record(self) -> Path:
        return self.path / METRICS_RECORD

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / TOKENIZER_DIR

    @property
    def model_config_dir(self) -> Path:
        return self.path / MODEL_CONFIG_DIR

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / LAST_CHECKPOINT

    def periodic_checkpoints(self) -> list[Path]:
        return list(self.checkpoint_dir.glob(PERIODIC_CHECKPOINTS))

    def transform_record(self, name: str) -> Path:
        return self.path / record_file(name)

    @property
    def identity_record(self) -> Path:
        return self.path / RUN_IDENTITY

    @property
    def lock_file(self) -> Path:
        return self.path / RUN_LOCK

    def is_run(self) -> bool:
        return self.run_record.is_file()

    def record(self) -> dict:
        """`run.json` as written by training (status, segments, config...)."""
        if not self.is_run():
            raise UserError(f"'{self.path}' is not a training run dir: it has no {RUN_RECORD}")
        try:
            record = json.loads(self.run_record.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(
                f"'{self.run_record}' is corrupt ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(record, dict):
            raise UserError(f"'{self.run_record}' is corrupt (not a JSON object)")
        return record

    def status(self) -> str | None:
        """The run's status as `run.json` says (running, completed, stopped, failed)."""
        return self.record().get("status")

    def checkpoint(self, checkpoint: str | Path | None = None) -> Path:
        """The checkpoint a later stage reads: `checkpoints/last.ckpt`, or the file `checkpoint`
        names (a path, or a file name inside `checkpoints/`). Never a fallback to other
        weights: a missing file is an error."""
        path = Path(checkpoint) if checkpoint else self.last_checkpoint
        if checkpoint and not path.is_absolute() and not path.exists():
            path = self.checkpoint_dir / str(checkpoint)
        if not path.is_file():
            raise UserError(
                f"checkpoint '{path}' does not exist: '{self.path}' has no trained weights to "
                "evaluate (no fallback to pretrained weights)"
            )
        return path

    def config(self) -> DictConfig:
        """The resolved config the run trained with (from `run.json`)."""
        if not self.is_run():
            raise UserError(f"'{self.path}' is not a training run dir: it has no {RUN_RECORD}")
        try:
            return OmegaConf.create(self.record()["config"])
        except (KeyError, TypeError) as exc:
            raise UserError(
                f"'{self.run_record}' is corrupt ({type(exc).__name__}: {exc})"
            ) from exc

    def require_complete(self) -> None:
        """The folders a later stage rebuilds the model from are there."""
        for folder in (self.tokenizer_dir, self.model_config_dir):
            if not folder.is_dir():
                raise UserError(f"'{self.path}' has no {folder.name}/: not a complete run dir")


def is_run_dir(path: Path) -> bool:
    return RunDir(path).is_run()


def run_dirs_under(path: Path) -> list[RunDir]:
    """`path` itself if it is a run dir, else the run dirs of a sweep directory."""
    if is_run_dir(path):
        return [RunDir(path)]
    if path.is_file():
        raise UserError(f"run_dir='{path}' is a file, not a run dir or sweep dir")
    if not path.is_dir():
        raise UserError(f"run_dir='{path}' does not exist")
    found = sorted(p.parent for p in path.glob(f"*/{RUN_RECORD}"))
    if not found:
        raise UserError(
            f"run_dir='{path}' is neither a train run dir ({RUN_RECORD}) nor a sweep of them"
        )
    return [RunDir(p) for p in found]


def is_export_dir(path: Path) -> bool:
    return (path / EXPORT_RECORD).is_file()


def read_export_record(path: Path) -> dict:
    try:
        return json.loads((path / EXPORT_RECORD).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"'{path / EXPORT_RECORD}' is unreadable ({exc})") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
