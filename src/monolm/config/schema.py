"""Structured-config schema for `train.py`.

Registered in Hydra's ConfigStore as `train_schema` and composed first in `conf/train.yaml`, so
an unknown key or a value of the wrong type fails at composition, before anything is loaded.
Groups whose options have different shapes (constraint, logger) are typed loosely here and
validated by the code that builds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


@dataclass
class FFNLayout:
    """Where the feed-forward sublayers live, for constraints to find them.

    `blocks` are glob patterns over `model.named_modules()` names of the FFN containers;
    `input_projections` / `output_projections` are child names inside a block (W1 and W2 in
    `W2 act(W1 x)`; a gated FFN `W2 (act(W1_0 x) * W1_1 x)` lists the activated projection
    first); `activation` is the child holding the activation function; `attention_outputs` are
    glob patterns over full module names of attention output layers.
    """

    blocks: list[str] = MISSING
    input_projections: list[str] = MISSING
    output_projections: list[str] = MISSING
    activation: str = "act"
    attention_outputs: list[str] = field(default_factory=list)
    gated: bool = False


@dataclass
class ModelConfig:
    name: str = MISSING
    family: str = MISSING  # causal | seq2seq
    name_or_path: str | None = None  # Hugging Face hub id or local directory
    revision: str | None = None
    pretrained: bool = True  # false: random weights (on `published` offline, else the hub config)
    architecture: dict[str, Any] | None = None  # build from config with no download
    # A real option's architecture as its hub config.json publishes it (vocabulary and special
    # token ids included): what pretrained=false builds from, offline. Pretrained weights bring
    # their own config and never read it.
    published: dict[str, Any] | None = None
    tokenizer: str | None = None  # hub id / local dir; "bundled" builds the project tokenizer
    trust_remote_code: bool = False
    ffn: FFNLayout = field(default_factory=FFNLayout)


@dataclass
class DatasetConfig:
    name: str = MISSING
    task: str = MISSING  # language_modeling | summarization | classification | question_answering
    path: str | None = None  # datasets.load_dataset path (hub id or builder)
    config_name: str | None = None
    revision: str | None = None
    data_files: Any = None  # {split: local file(s) or file(s) inside the hub repo}
    bundled: str | None = None  # a dataset shipped with the package; data_files, if set, win
    train_split: str = "train"
    validation_split: str | None = "validation"
    validation_fraction: float = 0.0  # without a validation split: hold out this share of train
    max_train_examples: int | None = None
    max_validation_examples: int | None = None
    text_field: str = "text"
    source_field: str = "article"
    target_field: str = "highlights"
    source_prefix: str = ""
    max_length: int = 512  # LM block length, or source length for summarisation
    max_target_length: int = 128
    # classification | question_answering (docs/adapters.md): the model reads `prompt` (a
    # str.format template over the row's fields) and is trained on the answer tokens only.
    prompt: str = ""
    target_delimiter: str = " "  # between prompt and answer (causal models; lm-eval's default)
    label_field: str = "label"  # classification: the integer label
    choices: list[str] = field(default_factory=list)  # the verbalised labels, index = label id
    positive_label: int | None = None  # classification: also report F1 of this class (MRPC: 1)
    answers_field: str = "answers"  # question answering: {"text": [...], "answer_start": [...]}
    no_answer: str = "unanswerable"  # what the model says for an unanswerable question
    # the seed of the validation_fraction hold-out; null: the run's seed. Fixed for datasets
    # whose held-out split selects models, so every arm and seed trains on the same examples.
    split_seed: int | None = None


@dataclass
class DataConfig:
    batch_size: int = 8  # per device, per micro-batch
    eval_batch_size: int = 16
    num_workers: int = 0
    tokenize_num_proc: int | None = None


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "linear"  # linear | cosine | constant
    warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    schedule_steps: int | None = None  # lr schedule horizon in optimizer steps; default: max_steps


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | fsdp
    precision: str = "32-true"
    max_steps: int = 200
    max_epochs: int | None = None
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    num_sanity_val_steps: int = 0
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    gradient_clip_algorithm: str = "norm"
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool = True
    enable_model_summary: bool = True
    deterministic: Any = None


@dataclass
class CallbacksConfig:
    checkpoint_every_n_steps: int = 100
    keep_checkpoints: int = 2  # periodic checkpoints kept besides last.ckpt (newest first)
    lr_monitor: bool = True
    throughput: bool = True
    progress_refresh_rate: int = 10


@dataclass
class PathsConfig:
    root_dir: str = MISSING
    output_dir: str = MISSING
    cache_dir: str = MISSING


@dataclass
class ResumeConfig:
    """Continuing a run in an existing run dir (src/monolm/training/identity.py)."""

    # Settings (other than model, constraint, dataset, seed) this segment may change, e.g.
    # [optim.lr]; each change is recorded in run.json and metrics.json.
    allow_changes: list[str] = field(default_factory=list)
    # A lock whose holder runs on another host is taken over once its heartbeat (touched every
    # minute) is this old; on the same host, as soon as its pid is gone.
    lock_stale_after_s: float = 3600.0


@dataclass
class TrainConfig:
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    constraint: Any = MISSING
    adapter: Any = MISSING  # conf/adapter: none | lora (typed by constraints.registry)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = None
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    tags: list[str] = field(default_factory=list)


def by_family(causal: Any, seq2seq: Any, *, _root_: Any) -> Any:
    """`${by_family:a,b}`: `a` for a causal model, `b` for a seq2seq one (dataset/tiny.yaml)."""
    family = _root_.model.family
    if family not in ("causal", "seq2seq"):
        raise ValueError(f"model.family='{family}' is not causal or seq2seq")
    return causal if family == "causal" else seq2seq


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """`${gpus_per_node:${trainer.accelerator},${trainer.devices}}` for the launchers: the GPUs a
    job asks for on each node, none for a CPU trainer (`auto`, as in trainer=ddp, asks for GPUs:
    the submitting host's hardware says nothing about the compute nodes')."""
    if str(accelerator) not in ("gpu", "cuda", "auto"):
        return None
    if not isinstance(devices, int) or devices < 1:
        raise ValueError(
            f"trainer.devices={devices}: a SLURM job needs a number of GPUs per node (e.g. 4)"
        )
    return devices


NAME_LIMIT = 80  # characters of a name inside a directory name


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:NAME_LIMIT]
    return name if name.strip(".") else "_"


def subject_name(*candidates: Any) -> str:
    """`${subject_name:${run_dir},${model}}`: the first value set, as a short filesystem-safe name
    for output directories: its last path component (a run dir's basename, a hub id's model name,
    an option's name), characters other than [A-Za-z0-9._-] replaced by '_', at most 80."""
    for value in candidates:
        if value is None or not str(value).strip():
            continue
        text = str(value).strip().rstrip("/\\")
        last = re.split(r"[/\\]", text)[-1] if text else ""
        if last in ("", ".", ".."):
            last = Path(str(value)).expanduser().resolve().name or "root"
        return _safe_name(last)
    return "unnamed"


def attack_label(name: Any, mimic: Any = None) -> str:
    """`${attack_label:${attack.name},${attack.mimic}}`: the attack's name; the random control
    is named with the attack it mimics (random-hotflip, random-uat)."""
    label = f"{name}-{mimic}" if str(name) == "random" and mimic else str(name)
    return _safe_name(label)


def conf_options(group: str, *exclude: str, _root_: Any) -> str:
    """`${conf_options:<dir>[,<excluded option>...]}`: the options (YAML files) of a conf
    directory, relative to the entry point's config dir, comma-separated; for the --help
    templates (conf/hydra/help/train.yaml, ...), which list each entry point's own groups."""
    sources = _root_.hydra.runtime.config_sources
    main = next((s for s in sources if s.provider == "main" and s.schema == "file"), None)
    if main is None:
        return "?"
    folder = Path(str(main.path)) / group
    names = {p.stem for p in folder.glob("*.yaml")} - set(exclude)
    return ", ".join(sorted(names))


def register_configs() -> None:
    """Make `train_schema` available to the defaults list of conf/train.yaml, and the resolvers
    the configs use."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    OmegaConf.register_new_resolver("by_family", by_family, replace=True)
    OmegaConf.register_new_resolver("gpus_per_node", gpus_per_node, replace=True)
    OmegaConf.register_new_resolver("subject_name", subject_name, replace=True)
    OmegaConf.register_new_resolver("attack_label", attack_label, replace=True)
    OmegaConf.register_new_resolver("conf_options", conf_options, replace=True)
