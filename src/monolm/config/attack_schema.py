"""Structured-config schema for `attack.py` (registered as `attack_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from monolm.attacks.hotflip import FlipSettings
from monolm.attacks.triggers import TriggerSettings
from monolm.config.eval_schema import BootstrapConfig, GenerationConfig
from monolm.config.schema import PathsConfig

ATTACKS = ("hotflip", "uat", "random")
MIMICS = ("hotflip", "uat")


@dataclass
class AttackSettings:
    """What `attack=<option>` selects; every key is overridable (`attack.flip.budget=3`)."""

    name: str = MISSING  # hotflip | uat | random
    mimic: str | None = None  # random: the gradient attack it controls (hotflip | uat)
    # random: an attack.py output dir of the attack it controls; each example (hotflip) or
    # restart (uat) gets exactly the queries that attack spent there. null: the most it could.
    queries_from: str | None = None
    flip: FlipSettings = field(default_factory=FlipSettings)
    trigger: TriggerSettings = field(default_factory=TriggerSettings)
    # Success: seq2seq, relative ROUGE-L drop of the generated summary above success_threshold;
    # causal LM, relative NLL increase above nll_success_threshold. Examples whose clean score is
    # under the floor (ROUGE-L x 100 below rouge_floor; NLL below nll_floor nats/token, where a
    # relative increase means nothing) are reported as skipped.
    success_threshold: float = 0.15
    nll_success_threshold: float = 0.15
    rouge_floor: float = 5.0
    nll_floor: float = 0.05
    transfer_to: list[str] = field(default_factory=list)  # run dirs or models to replay on


@dataclass
class AttackRunConfig:
    run_dir: str | None = None  # a train.py run dir (or a sweep dir of them)
    checkpoint: str | None = None  # a checkpoint file inside it; null: checkpoints/last.ckpt
    model: str | None = None  # or: a conf/model option, a local HF directory or a hub id
    attack: AttackSettings = field(default_factory=AttackSettings)
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
    ConfigStore.instance().store(name="attack_schema", node=AttackRunConfig)
