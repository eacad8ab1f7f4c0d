"""A training run directory as the unit later stages consume: config, tokenizer, trained model.

Everything is read from the run dir alone: the resolved config from `run.json`, the tokenizer from
`tokenizer/`, the architecture from `model_config/`, the weights from a checkpoint (loaded
weights-only). The constraint is re-applied before the weights are loaded, so parametrised
parameter names match and the model is exactly the one that was trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from monolm.constraints import build_constraint
from monolm.constraints.base import Constraint
from monolm.errors import UserError
from monolm.models.loading import AUTO_MODEL
from monolm.training.checkpoint_io import LAST, load_checkpoint

MODEL_CONFIG_DIR = "model_config"
_MODEL_PREFIX = "model."


@dataclass
class TrainedRun:
    run_dir: Path
    config: DictConfig
    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    constraint: Constraint
    checkpoint: Path
    checkpoint_sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def run_config(run_dir: Path) -> DictConfig:
    """The resolved config a run trained with (from `run.json`)."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise UserError(f"'{run_dir}' is not a training run dir: it has no run.json")
    try:
        return OmegaConf.create(json.loads(path.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"'{path}' is corrupt ({type(exc).__name__}: {exc})") from exc


def load_trained_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> TrainedRun:
    """The trained model of `run_dir` (its `checkpoints/last.ckpt` unless `checkpoint` names
    another file), in fp32, constraint applied, in eval mode. Never falls back to pretrained
    weights: a missing or unreadable checkpoint is an error."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    path = Path(checkpoint) if checkpoint else run_dir / "checkpoints" / LAST
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist: the run has not saved one yet")
    for needed in ("tokenizer", MODEL_CONFIG_DIR):
        if not (run_dir / needed).is_dir():
            raise UserError(f"'{run_dir}' has no {needed}/: not a complete run dir")
    constraint = build_constraint(cfg.constraint)
    state = load_checkpoint(path)
    if "state_dict" not in state:
        raise UserError(
            f"checkpoint '{path}' has no state_dict: not a checkpoint of this framework"
        )
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    model_config = AutoConfig.from_pretrained(run_dir / MODEL_CONFIG_DIR)
    model = AUTO_MODEL[cfg.model.family].from_config(model_config, dtype=torch.float32)
    constraint.apply(model, cfg.model)
    weights = {
        key.removeprefix(_MODEL_PREFIX): value
        for key, value in state["state_dict"].items()
        if key.startswith(_MODEL_PREFIX)
    }
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(
            f"checkpoint '{path}' does not fit the run's model: missing "
            f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    model.eval()
    return TrainedRun(run_dir, cfg, tokenizer, model, constraint, path, sha256_of(path))
