"""`attack.py`'s checks and plan: everything that can be wrong is found before any model loads.

The run settings' ranges, the attack and its settings (typed, per option), the subjects (a run
dir, a sweep dir of them, or a model), the dataset each is attacked on, the attack's own
pre-flight checks (`Attack.check`), and the transfer targets (they exist and share the sources'
tokenizer, since attacked inputs travel as token ids).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from monolm.attacks.base import Attack, AttackPlan, AttackSettings
from monolm.attacks.examples import example_selection
from monolm.config.eval_schema import check_measurement_settings
from monolm.config.typed import at_least
from monolm.data.tokenize import tokenizer_fingerprint
from monolm.errors import UserError
from monolm.subjects import (
    SubjectQuery,
    SubjectRef,
    dataset_option,
    load_subject_tokenizer,
    resolve_subjects,
    resolve_target,
)

_AT_LEAST_ONE = (
    "max_examples",
    "context_tokens",
    "continuation_tokens",
    "min_context_tokens",
)


def check_run_settings(cfg: DictConfig) -> None:
    """The attack.py keys outside `attack.`: ranges, before anything is resolved."""
    check_measurement_settings(cfg)
    at_least("", cfg, _AT_LEAST_ONE, 1)


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
    return dataset


def plan_attack(
    cfg: DictConfig, conf_dir: Path, attack: Attack, settings: AttackSettings
) -> list[tuple[SubjectRef, AttackPlan]]:
    """Every subject with its plan, checked by the attack itself."""
    refs = resolve_subjects(SubjectQuery.of(cfg), conf_dir)
    out_root = Path(cfg.paths.output_dir)
    planned = []
    for ref in refs:
        dataset = _dataset(cfg, conf_dir, ref.family, ref.own_dataset)
        split = cfg.split or dataset.validation_split or "held out of train"
        sweep = len(refs) > 1 and ref.run is not None
        out_dir = out_root / ref.label if sweep else out_root
        run_name = ref.label if ref.run is not None else None
        plan = AttackPlan(
            ref.family, dataset, str(split), out_dir, run_name, ref, example_selection(cfg)
        )
        attack.check(settings, plan)
        planned.append((ref, plan))
    return planned


def check_transfer_targets(
    targets: list[str], conf_dir: Path, cache_dir: str, source_fingerprints: dict[str, str]
) -> list[SubjectRef]:
    """Every target exists and shares the sources' tokenizer (inputs travel as token ids)."""
    resolved = []
    for target in targets:
        try:
            ref = resolve_target(conf_dir, target)
        except UserError as exc:
            raise UserError(f"attack.transfer_to: {exc}") from exc
        fingerprint = tokenizer_fingerprint(load_subject_tokenizer(ref, cache_dir))
        for source, source_fingerprint in source_fingerprints.items():
            if fingerprint != source_fingerprint:
                raise UserError(
                    f"attack.transfer_to: '{target}' has a different tokenizer from '{source}'; "
                    "attacked inputs are token ids, so transfer needs the same tokenizer"
                )
        resolved.append(ref)
    return resolved
