"""What `evaluate.py` evaluates: a training run's checkpoint, or a model with no training.

`run_dir=` rebuilds the run's trained model from the run dir alone (config, tokenizer,
constraint, checkpoint loaded weights-only) and never falls back to pretrained weights.
`model=` takes a conf/model option (pretrained weights as train.py would start from), a local
Hugging Face directory (an export of this framework carries its model config and constraint
record) or a hub id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase

from monolm.config.schema import DatasetConfig, ModelConfig
from monolm.constraints.base import Constraint, NoConstraint
from monolm.constraints.export import EXPORT_RECORD
from monolm.errors import UserError, did_you_mean
from monolm.training.checkpoint_io import LAST

# conf/model options whose FFN layout describes a plain model of this architecture.
_LAYOUT_OPTION = {("gpt_neox", False): "pythia_70m", ("t5", False): "t5_small",
                  ("t5", True): "flan_t5_base"}  # fmt: skip


@dataclass
class Subject:
    """A loaded model with what the tasks need to know about it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_cfg: DictConfig  # a conf/model config (family, ffn layout, ...)
    constraint: Constraint
    constrained_layers: set[str]
    own_dataset: DictConfig | None  # the data a run trained on (None for a plain model)
    data_cfg: DictConfig | None
    seed: int
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return str(self.model_cfg.family)


def model_option(conf_dir: Path, name: str) -> DictConfig:
    """conf/model/<name>.yaml on the schema (typo -> UserError naming the options)."""
    path = conf_dir / "model" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir / "model").glob("*.yaml"))
        raise UserError(f"unknown model option '{name}': {did_you_mean(name, options)}")
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path))


def dataset_option(conf_dir: Path, name: str, family: str) -> DictConfig:
    """conf/dataset/<name>.yaml on the schema, resolved for a model of `family`."""
    path = conf_dir / "dataset" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (conf_dir / "dataset").glob("*.yaml"))
        raise UserError(f"unknown dataset '{name}': {did_you_mean(name, options)}")
    merged = OmegaConf.merge(OmegaConf.structured(DatasetConfig), OmegaConf.load(path))
    root = OmegaConf.create({"model": {"family": family}, "dataset": merged})
    return OmegaConf.create(OmegaConf.to_container(root.dataset, resolve=True))


def is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file()


def run_dirs_under(path: Path) -> list[Path]:
    """`path` itself if it is a run dir, else the run dirs of a sweep directory."""
    if is_run_dir(path):
        return [path]
    if not path.is_dir():
        raise UserError(f"run_dir='{path}' does not exist")
    found = sorted(p.parent for p in path.glob("*/run.json"))
    if not found:
        raise UserError(
            f"run_dir='{path}' is neither a train run dir (run.json) nor a sweep of them"
        )
    return found


def check_run_dir(path: Path, checkpoint: str | None) -> Path:
    """The checkpoint file to evaluate; errors before anything is loaded."""
    ckpt = Path(checkpoint) if checkpoint else path / "checkpoints" / LAST
    if checkpoint and not ckpt.is_absolute() and not ckpt.exists():
        ckpt = path / "checkpoints" / checkpoint
    if not ckpt.is_file():
        raise UserError(
            f"checkpoint '{ckpt}' does not exist: '{path}' has no trained weights to evaluate "
            "(no fallback to pretrained weights)"
        )
    return ckpt


def family_of(conf_dir: Path, model: str) -> str:
    """The family of `model=` without loading weights."""
    if (conf_dir / "model" / f"{model}.yaml").is_file() or not (
        "/" in model or Path(model).exists()
    ):
        return str(model_option(conf_dir, model).family)  # an option, or a typo of one
    return "seq2seq" if _hf_config(model).is_encoder_decoder else "causal"


def _hf_config(source: str) -> Any:
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"model='{source}' is not a conf/model option, a local Hugging Face directory or a "
            f"reachable hub id ({str(exc).splitlines()[0]})"
        ) from exc


def plain_model_cfg(conf_dir: Path, source: str) -> tuple[DictConfig, set[str]]:
    """A model config for a directory or hub id: an export's own, else by architecture."""
    local = Path(source)
    if (local / EXPORT_RECORD).is_file():
        record = json.loads((local / EXPORT_RECORD).read_text())
        cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), record["config"]["model"])
        constrained = set(record.get("constrained_layers", []))
    else:
        hf = _hf_config(source)
        gated = bool(getattr(hf, "is_gated_act", False))
        option = _LAYOUT_OPTION.get((hf.model_type, gated))
        if option is None:
            raise UserError(f"model='{source}' is a {hf.model_type}: supported are GPT-NeoX and T5")
        cfg = model_option(conf_dir, option)
        constrained = set()
    cfg.name = local.name or source
    cfg.name_or_path, cfg.architecture, cfg.pretrained, cfg.tokenizer = source, None, True, None
    return cfg, constrained


def load_subject(cfg: DictConfig, conf_dir: Path, run_dir: Path | None) -> Subject:
    """Load what `cfg` names (run_dir given explicitly: one of a sweep's runs)."""
    from monolm.models.loading import load_model, load_model_config, load_tokenizer

    if run_dir is not None:
        from monolm.runs import load_trained_run

        checkpoint = check_run_dir(run_dir, cfg.checkpoint)
        run = load_trained_run(run_dir, checkpoint)
        return Subject(
            model=run.model,
            tokenizer=run.tokenizer,
            model_cfg=run.config.model,
            constraint=run.constraint,
            constrained_layers=set(getattr(run.constraint, "layers", {})),
            own_dataset=run.config.dataset,
            data_cfg=run.config.data,
            seed=int(run.config.seed),
            source={"run_dir": str(run_dir), "checkpoint": str(run.checkpoint),
                    "checkpoint_sha256": run.checkpoint_sha256},
        )  # fmt: skip
    name = str(cfg.model)
    if (conf_dir / "model" / f"{name}.yaml").is_file():
        model_cfg, constrained = model_option(conf_dir, name), set()
    else:
        model_cfg, constrained = plain_model_cfg(conf_dir, name)
    tokenizer = load_tokenizer(model_cfg, cfg.paths.cache_dir)
    torch.manual_seed(cfg.seed)
    model = load_model(model_cfg, load_model_config(model_cfg, tokenizer)).eval()
    source: dict[str, Any] = {"model": name}
    if (Path(name) / EXPORT_RECORD).is_file():
        record = json.loads((Path(name) / EXPORT_RECORD).read_text())
        source["exported_from_checkpoint_sha256"] = record["checkpoint_sha256"]
    return Subject(model, tokenizer, model_cfg, NoConstraint(), constrained, None, None,
                   int(cfg.seed), source)  # fmt: skip
