"""Structured-config schema for `evaluate.py` (registered as `evaluate_schema`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from monolm.config.schema import PathsConfig
from monolm.config.typed import at_least
from monolm.errors import UserError

TASK_KINDS = (
    "own",
    "summarization",
    "perplexity",
    "lambada",
    "hellaswag",
    "classification",
    "question_answering",
    "monotonicity",
    "cka",
)
BASELINES = ("majority", "uniform")  # evaluate.py baseline=<name>: a subject with no model


@dataclass
class TaskConfig:
    """One evaluation: what to measure (`kind`) on which data.

    `dataset` names a conf/dataset option; `split` is the split evaluated; `data_files` replaces
    the dataset's source with local files in the same schema (as in train.py). `max_examples`
    keeps the split's first rows, except for question answering, where it keeps a subset with
    the split's answerable/unanswerable ratio, chosen by a hash of the ids.
    """

    kind: str = MISSING
    dataset: str | None = None
    split: str | None = None
    data_files: Any = None
    max_examples: int | None = None


@dataclass
class GenerationConfig:
    num_beams: int = 4
    length_penalty: float = 1.2
    min_new_tokens: int = 10
    max_new_tokens: int = 80
    no_repeat_ngram_size: int = 3
    batch_size: int = 8
    causal_prompt_suffix: str = "\nTL;DR:"  # causal models summarise what follows the article


@dataclass
class PerplexityConfig:
    max_length: int | None = None  # window length; null: the model's context length
    stride: int | None = None  # null: lm-eval rolling windows; n: strided sliding window


@dataclass
class BootstrapConfig:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass
class CkaConfig:
    """Task kind `cka` (src/monolm/evaluation/representations.py): the evaluated subject's layer
    representations against other subjects' on the same inputs.

    `against` and each `floor` entry name subjects as `attack.transfer_to` does: a train run dir,
    a conf/model option, an export or model directory, or a hub id. A floor is two runs of one
    arm that differ only by their seed: how far two seeds drift apart. Subjects are labelled by
    the shortest end of their path that tells them apart (`none/s0`, `tiny_pythia`).
    """

    against: list[str] = field(default_factory=list)
    all_pairs: bool = False  # also compare the `against` subjects with each other
    floor: list[list[str]] = field(default_factory=list)  # [[run, run], ...]
    pooling: str = "mean"  # mean: one row per example; tokens: one row per non-padding token
    max_length: int = 128  # tokens read per input (truncated)
    max_rows: int = 2048  # token pooling: more rows is an error (gram matrices are rows^2)


@dataclass
class EvaluateConfig:
    run_dir: str | None = None  # a train.py run dir (or a sweep dir of them)
    checkpoint: str | None = None  # a checkpoint file inside it; null: checkpoints/last.ckpt
    model: str | None = None  # or: a conf/model option, a local HF directory or a hub id
    baseline: str | None = None  # or: majority | uniform (classification; QA: majority abstains)
    task: dict[str, TaskConfig] = field(default_factory=dict)
    seed: int = 0
    batch_size: int = 16
    max_examples: int | None = None  # cap for every task (a task's own cap wins)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on GPU) | 32 | bf16
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    cka: CkaConfig = field(default_factory=CkaConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


def check_measurement_settings(cfg: Any) -> None:
    """The keys evaluate.py and attack.py share (batch size, generation, bootstrap): ranges."""
    at_least("", cfg, ("batch_size",), 1)
    at_least("generation", cfg.generation, ("batch_size", "num_beams"), 1)
    at_least("bootstrap", cfg.bootstrap, ("resamples",), 1)
    if not 0 < cfg.bootstrap.confidence < 1:
        raise UserError(f"bootstrap.confidence={cfg.bootstrap.confidence} must be in (0, 1)")


def register_evaluate_configs() -> None:
    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)
