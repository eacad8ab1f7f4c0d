"""Structured-config schema for `attack.py` (registered as `attack_schema`); each attack
option's own schema lives beside its algorithm (see attacks/registry.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from monolm.config.eval_schema import BootstrapConfig, GenerationConfig
from monolm.config.schema import PathsConfig


@dataclass
class AttackRunConfig:
    run_dir: str | None = None  # a train.py run dir (or a sweep dir of them)
    checkpoint: str | None = None  # a checkpoint file inside it; null: checkpoints/last.ckpt
    model: str | None = None  # or: a conf/model option, a local HF directory or a hub id
    # The attack option (conf/attack/attack/<name>.yaml), typed by its own schema.
    attack: Any = MISSING
    dataset: str | None = None  # a conf/dataset option; null: the run's own dataset
    split: str | None = None  # evaluation split; null: the validation split training held out
    data_files: Any = None  # local files in the dataset's schema instead of its source
    max_examples: int | None = 64  # evaluation examples attacked
    context_tokens: int = 128  # causal LM data: context read before the continuation
    continuation_tokens: int = 32  # causal LM data: the tokens whose NLL is attacked
    min_context_tokens: int = 16  # shorter documents are left out (counted)
    seed: int = 0
    batch_size: int = 32  # sequences per forward pass when scoring candidates
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on GPU) | 32 | bf16
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def register_attack_configs() -> None:
    """`attack_schema` for conf/attack/attack.yaml, and every attack option's schema."""
    from monolm.attacks.registry import register_attack_schemas

    ConfigStore.instance().store(name="attack_schema", node=AttackRunConfig)
    register_attack_schemas()
