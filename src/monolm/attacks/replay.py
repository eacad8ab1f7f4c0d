"""A finished attack's attacked inputs replayed on other runs' models, from its files (the
study's transfer stage): `replay_attack(source, targets, out_dir, conf_dir)`.

The source is one attack.py output dir: `attack.json` (its full resolved config, the subject it
attacked) and `examples.jsonl` (per example the clean and attacked token ids, the tokens changed,
the status). The examples are rebuilt exactly as attack.py built them (`plan_attack`,
`split_rows`, `build_examples` on the recorded config) and checked against the recorded rows (the
same example ids in order, the same clean ids: otherwise the data or the tokenizer changed since
the attack); the recorded ids are then scored on each target by the function attack.py's
in-process transfer uses (`transfer_cell`), so the rows and cells are the ones
`attack.transfer_to` would have written. Every check runs before any weights load, and the
source's weights never load.

Outputs in `out_dir`: `transfer.json` (provenance of the source's config plus the replay, the
attack's name, the source (its dir and subject record), one cell per target as in attack.py's
transfer.json, a note) and `<target>.examples.jsonl` per target (`measure`'s rows plus
`source_status`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from monolm.attacks.base import Attack, AttackOutcome, AttackPlan, AttackRun, AttackSettings
from monolm.attacks.config import AttackRunConfig
from monolm.attacks.examples import AttackExample, ExampleSettings, build_examples, pack
from monolm.attacks.plan import (
    check_run_settings,
    check_transfer_targets,
    plan_attack,
    tokenizer_identity,
)
from monolm.attacks.registry import attack_settings
from monolm.attacks.transfer import Measurement, safe_name, transfer_cell
from monolm.config.typed import typed_settings
from monolm.data.sources import split_rows
from monolm.errors import UserError
from monolm.inference import placement_of
from monolm.provenance import provenance, read_json_object, read_jsonl, write_json
from monolm.run_dir import (
    ATTACK_EXAMPLES,
    ATTACK_RECORD,
    TRANSFER_RECORD,
    examples_file,
    is_run_dir,
)
from monolm.subjects import SubjectRef, load_subject_tokenizer

log = logging.getLogger(__name__)

# What replaying needs of each recorded row (attack.py's examples.jsonl).
ROW_KEYS = ("id", "clean_ids", "attacked_ids", "tokens_changed", "status")
NOTE = (
    "the source attack's attacked inputs (its examples.jsonl, the same examples and token ids) "
    "replayed on each target; cells as in attack.py's transfer.json, success judged by the "
    "source attack's thresholds and floors"
)


class _Recorded(Attack):
    """The attack as recorded: replaying runs none of it, so none of its pre-flight checks
    (they guard running it: a control's matched attack, a trigger's optimisation split)."""

    name = "recorded"
    settings_type = AttackSettings

    def run(self, settings: AttackSettings, run: AttackRun) -> AttackOutcome:
        raise AssertionError("a recorded attack is replayed, never run")


def _read_record(source: Path) -> dict[str, Any]:
    """The source's attack.json, checked: one attack dir, the keys a replay reads."""
    path = source / ATTACK_RECORD
    if not source.is_dir():
        raise UserError(f"attack dir '{source}' does not exist (give one attack.py output dir)")
    if not path.is_file():
        sweep = sorted(source.glob(f"*/{ATTACK_RECORD}"))
        if sweep:
            raise UserError(
                f"'{source}' holds a sweep of {len(sweep)} attacks ({sweep[0].parent.name}/"
                f"{ATTACK_RECORD}, ...): replay one attack dir, e.g. '{sweep[0].parent}'"
            )
        raise UserError(f"'{source}' has no {ATTACK_RECORD}: not an attack.py output dir")
    record = read_json_object(path)
    for key in ("config", "subject"):
        if not isinstance(record.get(key), dict):
            raise UserError(f"'{path}' is corrupt: no '{key}' object (needs config and subject)")
    return record


def _read_rows(source: Path) -> list[dict[str, Any]]:
    """The source's examples.jsonl, every row with the keys a replay reads."""
    path = source / ATTACK_EXAMPLES
    if not path.is_file():
        raise UserError(f"'{source}' has no {ATTACK_EXAMPLES}: the attacked inputs are missing")
    rows = []
    for number, row in read_jsonl(path):
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            raise UserError(
                f"'{path}': row {number} (example {row.get('id')!r}) has no '{missing[0]}' "
                f"(a replay needs {', '.join(ROW_KEYS)})"
            )
        for key in ("clean_ids", "attacked_ids"):
            ids = row[key]
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                raise UserError(
                    f"'{path}': row {number} (example {row['id']!r}): '{key}' is not a list of "
                    "token ids"
                )
        rows.append(row)
    if not rows:
        raise UserError(f"'{path}' has no rows: nothing to replay")
    return rows


def _config(record: dict[str, Any], path: Path) -> DictConfig:
    """The recorded config, typed on attack.py's schema (as attack.py saw it, resolved)."""
    try:
        typed = typed_settings(AttackRunConfig, record["config"], "")
    except UserError as exc:
        raise UserError(f"'{path}': config does not fit attack.py's schema ({exc})") from exc
    return OmegaConf.structured(typed)


def _target_refs(
    targets: dict[str, Path], conf_dir: Path, cache_dir: str, source: SubjectRef
) -> list[SubjectRef]:
    """Each target a training run dir sharing the source's tokenizer; names unique as files."""
    if not targets:
        raise UserError("no targets to replay on: give {name: train run dir}")
    files: dict[str, str] = {}
    for name, path in targets.items():
        if not name or not str(name).strip():
            raise UserError(f"target name {name!r} for '{path}' is empty: name each target")
        if not is_run_dir(Path(path)):
            raise UserError(
                f"target '{name}': '{path}' is not a training run dir (no run.json); give train "
                "run dirs"
            )
        file = safe_name(str(name))
        if file in files:
            raise UserError(
                f"targets '{files[file]}' and '{name}' would write the same file "
                f"{examples_file(file)}: give names that differ in letters or digits"
            )
        files[file] = str(name)
    identity = tokenizer_identity(load_subject_tokenizer(source, cache_dir))
    return check_transfer_targets(
        [str(path) for path in targets.values()],
        conf_dir,
        cache_dir,
        {source.name: identity},
        "replay target",
    )


def _source_plan(
    cfg: DictConfig, conf_dir: Path, subject: dict[str, Any], path: Path
) -> tuple[AttackSettings, SubjectRef, AttackPlan]:
    """attack.py's plan of the subject the record names (one run of an attacked sweep)."""
    _, settings = attack_settings(cfg.attack)
    planned = plan_attack(cfg, conf_dir, _Recorded(), settings)
    name = subject.get("run_dir") or subject.get("model")
    if len(planned) > 1:
        planned = [(ref, plan) for ref, plan in planned if ref.name == name]
    if len(planned) != 1:
        raise UserError(
            f"'{path}' attacked {name!r}, which its config (run_dir={cfg.run_dir}) no longer names"
        )
    return settings, *planned[0]


def _check_examples(examples: list[AttackExample], rows: list[dict[str, Any]], path: Path) -> None:
    """The rebuilt examples are the recorded ones: same ids in order, same clean inputs."""
    why = "the data or the tokenizer changed since the attack"
    for index, (example, row) in enumerate(zip(examples, rows, strict=False)):
        mine = json.loads(json.dumps(example.id))
        if mine != row["id"]:
            raise UserError(
                f"'{path}' row {index + 1} is example {row['id']!r} but the recorded config now "
                f"gives example {mine!r} there: {why}"
            )
        if list(pack(example).ids) != row["clean_ids"]:
            raise UserError(
                f"'{path}': example {row['id']!r}'s clean_ids differ from its input rebuilt from "
                f"the recorded config: {why}"
            )
    if len(examples) != len(rows):
        first = rows[len(examples)]["id"] if len(rows) > len(examples) else examples[len(rows)].id
        raise UserError(
            f"'{path}' has {len(rows)} examples but the recorded config now gives "
            f"{len(examples)} (first differing: example {first!r}): {why}"
        )


def _outcome(rows: list[dict[str, Any]]) -> AttackOutcome:
    return AttackOutcome(
        clean=[tuple(row["clean_ids"]) for row in rows],
        attacked=[tuple(row["attacked_ids"]) for row in rows],
        tokens_changed=[row["tokens_changed"] for row in rows],
        per_example=[{} for _ in rows],
        info={},
    )


def replay_attack(source: Path, targets: dict[str, Path], out_dir: Path, conf_dir: Path) -> Path:
    """Replay the attack in `source` (one attack.py output dir) on each of `targets` (name ->
    train run dir); write `out_dir/transfer.json` and `out_dir/<name>.examples.jsonl`; return
    the transfer.json path. Bad input is a UserError before any weights load."""
    source, out_dir = Path(source), Path(out_dir)
    record = _read_record(source)
    rows = _read_rows(source)
    record_path, rows_path = source / ATTACK_RECORD, source / ATTACK_EXAMPLES
    if out_dir.resolve() == source.resolve():
        raise UserError(
            f"out_dir '{out_dir}' is the source attack dir: write the replay elsewhere (its own "
            f"{TRANSFER_RECORD} would be overwritten)"
        )
    cfg = _config(record, record_path)
    check_run_settings(cfg)
    placement = placement_of(cfg)
    cache_dir, seed = str(cfg.paths.cache_dir), int(cfg.seed)
    try:
        settings, ref, plan = _source_plan(cfg, conf_dir, record["subject"], record_path)
    except UserError as exc:
        raise UserError(f"replaying '{source}': {exc}") from exc
    refs = _target_refs(targets, conf_dir, cache_dir, ref)
    examples = _examples(cfg, ref, plan, seed, cache_dir)
    _check_examples(examples, rows, rows_path)
    measurement = Measurement.of(cfg, settings, placement)
    outcome = _outcome(rows)
    statuses = [row["status"] for row in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = {
        name: transfer_cell(
            measurement,
            str(source),
            target,
            plan.family,
            examples,
            outcome,
            statuses,
            out_dir,
            Path(examples_file(safe_name(str(name)))),
            cache_dir,
            seed,
        )
        for name, target in zip(targets, refs, strict=True)
    }
    config = {
        **record["config"],
        "replay": {"attack_dir": str(source), "targets": {n: str(p) for n, p in targets.items()}},
    }
    path = out_dir / TRANSFER_RECORD
    write_json(
        path,
        {
            **provenance(config, seed),
            "attack": settings.name,
            "source": {"attack_dir": str(source), "subject": record["subject"]},
            "cells": cells,
            "note": NOTE,
        },
    )
    return path


def _examples(
    cfg: DictConfig, ref: SubjectRef, plan: AttackPlan, seed: int, cache_dir: str
) -> list[AttackExample]:
    """The source's examples, built as attack.py built them (its tokenizer, no weights)."""
    tokenizer = load_subject_tokenizer(ref, cache_dir)
    rows = split_rows(plan.dataset, cfg.split, ref.data_seed(seed), cfg.max_examples)
    examples, _ = build_examples(
        rows, plan.dataset, tokenizer, plan.family, ExampleSettings.of(cfg)
    )
    return examples
