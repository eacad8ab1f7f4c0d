"""`attack.py`'s checks and plan: everything that can be wrong is found before any model loads.

The run settings' ranges, the attack and its settings (typed, per option), the subjects (a run
dir, a sweep dir of them, or a model), the dataset each is attacked on, the attack's own
pre-flight checks (`Attack.check`), and the transfer targets (they exist and share the sources'
tokenizer, since attacked inputs travel as token ids: compared on what decides the ids, never on
saved truncation or padding state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedTokenizerBase

from monolm.attacks.base import Attack, AttackPlan, AttackSettings
from monolm.attacks.examples import example_selection
from monolm.config.eval_schema import check_measurement_settings
from monolm.config.typed import at_least
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


# Parts of a fast tokenizer's state that do not decide which ids a text gets: how a call pads or
# truncates (saved in tokenizer.json by whichever call came last) and the format version.
_INCIDENTAL = ("truncation", "padding", "version")


def tokenizer_identity(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """What decides token ids: the model (vocabulary, merges, unknown token...), the added
    tokens, the normaliser, pre-tokeniser, post-processor and decoder, and the special tokens
    (strings and ids); never truncation or padding state."""
    if tokenizer.is_fast:
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        for key in _INCIDENTAL:
            state.pop(key, None)
    else:
        state = {"class": type(tokenizer).__name__, "vocab": tokenizer.get_vocab()}
    specials = {}
    for name, value in tokenizer.special_tokens_map.items():
        ids = tokenizer.convert_tokens_to_ids(value)
        specials[name] = {"token": value, "id": ids}
    state["special_tokens"] = specials
    return state


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def tokenizer_difference(source: Any, target: Any, key: str = "") -> tuple[str, Any, Any] | None:
    """The first (key path, source value, target value) where two tokenizer identities differ."""
    if isinstance(source, dict) and isinstance(target, dict):
        for name in sorted(source.keys() | target.keys(), key=str):
            if name not in source or name not in target:
                return f"{key}.{name}".lstrip("."), source.get(name), target.get(name)
            found = tokenizer_difference(source[name], target[name], f"{key}.{name}")
            if found is not None:
                return found
        return None
    if isinstance(source, list) and isinstance(target, list):
        for index, (a, b) in enumerate(zip(source, target, strict=False)):
            found = tokenizer_difference(a, b, f"{key}[{index}]")
            if found is not None:
                return found
        if len(source) != len(target):
            return f"{key} (length)".lstrip("."), len(source), len(target)
        return None
    return None if source == target else (key.lstrip("."), source, target)


def check_same_tokenizer(
    source: str,
    source_identity: dict[str, Any],
    target: str,
    target_identity: dict[str, Any],
    key: str = "attack.transfer_to",
) -> None:
    """Refuse a transfer target whose tokenizer gives other ids, naming both sides and the first
    thing that differs (`key`: where the target was given)."""
    found = tokenizer_difference(source_identity, target_identity)
    if found is None:
        return
    where, theirs, mine = found
    raise UserError(
        f"{key}: target '{target}' and source '{source}' have different tokenizers "
        f"(first difference, {where}: source {_short(theirs)}, target {_short(mine)}); attacked "
        "inputs are token ids, so transfer needs the same tokenizer"
    )


def check_transfer_targets(
    targets: list[str],
    conf_dir: Path,
    cache_dir: str,
    source_tokenizers: dict[str, dict[str, Any]],
    key: str = "attack.transfer_to",
) -> list[SubjectRef]:
    """Every target exists and shares the sources' tokenizer (inputs travel as token ids);
    `source_tokenizers`: each source's `tokenizer_identity`; `key`: where the targets were
    given (messages name it)."""
    resolved = []
    for target in targets:
        try:
            ref = resolve_target(conf_dir, target)
        except UserError as exc:
            raise UserError(f"{key}: {exc}") from exc
        identity = tokenizer_identity(load_subject_tokenizer(ref, cache_dir))
        for source, source_identity in source_tokenizers.items():
            check_same_tokenizer(source, source_identity, target, identity, key)
        resolved.append(ref)
    return resolved
