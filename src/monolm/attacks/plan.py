"""`attack.py`'s checks and plan: everything that can be wrong is found before any model loads.

Settings ranges, the attack and what the random control mimics, the subjects (a run dir, a sweep
dir of them, or a model), the dataset each is attacked on, the transfer targets (their checkpoints
exist and their tokenizers are the source's, since inputs travel as token ids), and the attack
output whose query counts a random control matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from monolm.attacks.examples import POSITIONS
from monolm.config.attack_schema import ATTACKS, MIMICS
from monolm.data.tokenize import tokenizer_fingerprint
from monolm.devices import check_device_settings
from monolm.errors import UserError, did_you_mean
from monolm.evaluation.subject import (
    check_run_dir,
    dataset_option,
    family_of,
    is_run_dir,
    model_option,
    plain_model_cfg,
    run_dirs_under,
)
from monolm.runs import run_config

ATTACK_RECORD = "attack.json"
EXAMPLES_FILE = "examples.jsonl"
TRIGGERS_FILE = "triggers.json"


@dataclass
class Plan:
    run_dir: Path | None  # None: cfg.model
    family: str
    dataset: DictConfig
    queries_from: Path | None  # the matched attack's output dir (random control)


def search_kind(cfg: DictConfig) -> str:
    """'flip' (hotflip, or random mimicking it) or 'trigger' (uat, or random mimicking it)."""
    name = cfg.attack.name if cfg.attack.name != "random" else cfg.attack.mimic
    return "flip" if name == "hotflip" else "trigger"


def _at_least(cfg: DictConfig, keys: tuple[str, ...], low: int) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None and not value >= low:
            raise UserError(f"{key}={value} must be >= {low}")


def check_settings(cfg: DictConfig) -> None:
    if (cfg.run_dir is None) == (cfg.model is None):
        raise UserError(
            "say what to attack: run_dir=<train run dir> or model=<conf/model option, local "
            "directory or hub id> (exactly one)"
        )
    attack = cfg.attack
    if attack.name not in ATTACKS:
        raise UserError(f"attack.name='{attack.name}': {did_you_mean(attack.name, ATTACKS)}")
    if attack.name == "random" and attack.mimic not in MIMICS:
        raise UserError(f"attack.mimic={attack.mimic}: the random control mimics one of "
                        f"{', '.join(MIMICS)}")  # fmt: skip
    if attack.name != "random" and attack.queries_from is not None:
        raise UserError("attack.queries_from is for attack=random (the control) only")
    _at_least(cfg, ("attack.flip.budget",), 0)
    _at_least(cfg, ("attack.flip.top_k", "attack.flip.beam", "attack.trigger.length",
                    "attack.trigger.top_k", "attack.trigger.beam", "attack.trigger.restarts",
                    "attack.trigger.steps", "attack.trigger.batch_size",
                    "attack.trigger.optimization_examples", "batch_size", "max_examples",
                    "context_tokens", "continuation_tokens", "min_context_tokens",
                    "generation.batch_size", "generation.num_beams", "bootstrap.resamples"),
              1)  # fmt: skip
    if attack.trigger.position not in POSITIONS:
        raise UserError(f"attack.trigger.position={attack.trigger.position}: one of "
                        f"{', '.join(POSITIONS)}")  # fmt: skip
    for key in ("success_threshold", "nll_success_threshold", "rouge_floor", "nll_floor"):
        if not attack[key] >= 0:
            raise UserError(f"attack.{key}={attack[key]} must be >= 0")
    if not 0 < cfg.bootstrap.confidence < 1:
        raise UserError(f"bootstrap.confidence={cfg.bootstrap.confidence} must be in (0, 1)")
    check_device_settings(cfg)


def _dataset(cfg: DictConfig, conf_dir: Path, family: str, own: DictConfig | None) -> DictConfig:
    if cfg.dataset is not None:
        dataset = dataset_option(conf_dir, str(cfg.dataset), family)
    else:
        dataset = own if own is not None else dataset_option(conf_dir, "tiny", family)
        dataset = OmegaConf.create(OmegaConf.to_container(dataset, resolve=True))
    if cfg.data_files is not None:
        dataset.data_files, dataset.bundled = cfg.data_files, None
    if family == "seq2seq" and dataset.task != "summarization":
        raise UserError(
            f"dataset '{dataset.name}' is {dataset.task} data: a seq2seq model is attacked on "
            "summarisation data (the loss is the reference summary's NLL)"
        )
    if search_kind(cfg) == "trigger":
        evaluation = cfg.split or dataset.validation_split or "held out of train"
        optimization = cfg.attack.trigger.optimization_split or dataset.train_split
        if optimization == evaluation:
            raise UserError(
                f"split={evaluation} is also attack.trigger.optimization_split: a trigger must be "
                "evaluated on examples it was not optimised on"
            )
    return dataset


def _matched_attack(cfg: DictConfig, run_dir: Path | None) -> Path | None:
    if cfg.attack.queries_from is None:
        return None
    base = Path(str(cfg.attack.queries_from))
    if run_dir is not None and (base / run_dir.name / ATTACK_RECORD).is_file():
        base = base / run_dir.name  # an attack of a whole sweep: the same run's subdir
    record_path = base / ATTACK_RECORD
    if not record_path.is_file():
        raise UserError(f"attack.queries_from='{base}' has no {ATTACK_RECORD}: not an attack.py "
                        "output dir")  # fmt: skip
    try:
        record = json.loads(record_path.read_text())
        matched = record["config"]["attack"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"'{record_path}' is corrupt ({type(exc).__name__}: {exc})") from exc
    if matched["name"] != cfg.attack.mimic:
        raise UserError(f"attack.queries_from='{base}' is a {matched['name']} attack; this control "
                        f"mimics {cfg.attack.mimic}")  # fmt: skip
    group = "flip" if cfg.attack.mimic == "hotflip" else "trigger"
    mine = OmegaConf.to_container(cfg.attack[group])
    for key, value in mine.items():
        if matched[group].get(key) != value and key != "steps":
            raise UserError(
                f"attack.{group}.{key}={value} but the attack in queries_from used "
                f"{matched[group].get(key)}: the control must run the same search"
            )
    wanted = EXAMPLES_FILE if group == "flip" else TRIGGERS_FILE
    if not (base / wanted).is_file():
        raise UserError(f"attack.queries_from='{base}' has no {wanted}")
    return base


def plan_attack(cfg: DictConfig, conf_dir: Path) -> list[Plan]:
    check_settings(cfg)
    if cfg.model is not None:
        family = family_of(conf_dir, str(cfg.model))
        return [Plan(None, family, _dataset(cfg, conf_dir, family, None),
                     _matched_attack(cfg, None))]  # fmt: skip
    plans = []
    for run_dir in run_dirs_under(Path(str(cfg.run_dir))):
        check_run_dir(run_dir, cfg.checkpoint)
        config = run_config(run_dir)
        family = str(config.model.family)
        plans.append(Plan(run_dir, family, _dataset(cfg, conf_dir, family, config.dataset),
                          _matched_attack(cfg, run_dir)))  # fmt: skip
    return plans


def target_tokenizer(target: str, conf_dir: Path, cache_dir: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a transfer target (a run dir or a model), loaded without its weights."""
    from monolm.models.loading import load_tokenizer

    path = Path(target)
    if is_run_dir(path):
        check_run_dir(path, None)
        return AutoTokenizer.from_pretrained(path / "tokenizer")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"attack.transfer_to: '{target}' is neither a train run dir (run.json) "
                        "nor a model directory")  # fmt: skip
    if (conf_dir / "model" / f"{target}.yaml").is_file():
        model_cfg = model_option(conf_dir, target)
    else:
        family_of(conf_dir, target)  # a typo of an option -> a one-line error naming the options
        model_cfg = plain_model_cfg(conf_dir, target)[0]
    return load_tokenizer(model_cfg, cache_dir)


def check_transfer_targets(
    cfg: DictConfig, conf_dir: Path, source_tokenizers: dict[str, Any]
) -> None:
    """Every target exists and shares the sources' tokenizer (inputs travel as token ids)."""
    for target in cfg.attack.transfer_to:
        fingerprint = tokenizer_fingerprint(
            target_tokenizer(str(target), conf_dir, cfg.paths.cache_dir)
        )
        for source, source_fingerprint in source_tokenizers.items():
            if fingerprint != source_fingerprint:
                raise UserError(
                    f"attack.transfer_to: '{target}' has a different tokenizer from '{source}'; "
                    "attacked inputs are token ids, so transfer needs the same tokenizer"
                )


def check_trigger_init(tokenizer: PreTrainedTokenizerBase, init: str) -> int:
    """The id of `attack.trigger.init`, which must be one candidate token."""
    from monolm.attacks.vocabulary import round_trip_failures, special_ids

    ids = tokenizer(init, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] in special_ids(tokenizer) or round_trip_failures(tokenizer, ids):
        raise UserError(
            f"attack.trigger.init={init!r} is {len(ids)} tokens {ids}: it must be one candidate "
            "token (not special, surviving a decode/encode round trip), e.g. ' the'"
        )
    return ids[0]


def source_tokenizer(plan: Plan, cfg: DictConfig, conf_dir: Path) -> PreTrainedTokenizerBase:
    target = str(plan.run_dir) if plan.run_dir is not None else str(cfg.model)
    return target_tokenizer(target, conf_dir, cfg.paths.cache_dir)
