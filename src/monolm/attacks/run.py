"""`attack.py`'s body: plan, then per subject attack, measure, replay on the transfer targets.

Outputs (the attack run dir, Hydra's output dir; one subdirectory per run when a sweep dir is
attacked): `attack.json` (aggregates with bootstrap CIs, queries, the candidate vocabulary, the
full config, the model and its checkpoint's sha256, code and package versions), `examples.jsonl`
(one row per attacked example: ids and text of the clean and attacked input, NLLs, summaries and
ROUGE-L, status, queries, flips), `triggers.json` (trigger attacks: every restart's trigger as ids
and text) and, with `attack.transfer_to`, `transfer.json` (the matrix: source x target) and
`transfer/<target>.examples.jsonl`.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from monolm.attacks.examples import (
    AttackExample,
    causal_lm_example,
    causal_summary_example,
    pack,
    seq2seq_example,
)
from monolm.attacks.hotflip import FlipSettings, flip_search
from monolm.attacks.objective import Objective
from monolm.attacks.outcome import aggregate, measure
from monolm.attacks.plan import (
    ATTACK_RECORD,
    EXAMPLES_FILE,
    TRIGGERS_FILE,
    Plan,
    check_transfer_targets,
    check_trigger_init,
    plan_attack,
    search_kind,
    source_tokenizer,
)
from monolm.attacks.triggers import TriggerSettings, best_restart, trigger_search
from monolm.attacks.vocabulary import CandidateVocabulary, candidate_vocabulary
from monolm.data.sources import split_rows
from monolm.data.tokenize import tokenizer_fingerprint
from monolm.devices import device_and_autocast
from monolm.errors import UserError
from monolm.evaluation.subject import Subject, is_run_dir, load_subject
from monolm.training.record import provenance, write_json

log = logging.getLogger(__name__)


def build_examples(
    rows: Any, dataset: DictConfig, tokenizer: Any, family: str, cfg: DictConfig
) -> tuple[list[AttackExample], int]:
    """Attack examples from raw rows, and how many rows were left out (too short)."""
    ids = list(rows["id"]) if "id" in rows.column_names else list(range(len(rows)))
    needed = [dataset.text_field] if dataset.task == "language_modeling" else [
        dataset.source_field, dataset.target_field]  # fmt: skip
    missing = [f for f in needed if f not in rows.column_names]
    if missing:
        raise UserError(f"dataset '{dataset.name}' has no field {missing[0]!r}; its fields: "
                        f"{rows.column_names}")  # fmt: skip
    examples: list[AttackExample] = []
    left_out = 0
    for example_id, row in zip(ids, rows, strict=True):
        if family == "seq2seq":
            examples.append(seq2seq_example(
                tokenizer, example_id, row[dataset.source_field], row[dataset.target_field],
                dataset.source_prefix, dataset.max_length, dataset.max_target_length))  # fmt: skip
        elif dataset.task == "language_modeling":
            example = causal_lm_example(tokenizer, example_id, row[dataset.text_field],
                                        cfg.context_tokens, cfg.continuation_tokens,
                                        cfg.min_context_tokens, dataset.max_length)  # fmt: skip
            left_out += example is None
            if example is not None:
                examples.append(example)
        else:
            examples.append(causal_summary_example(
                tokenizer, example_id, dataset.source_prefix + row[dataset.source_field],
                row[dataset.target_field], cfg.generation.causal_prompt_suffix,
                dataset.max_length, dataset.max_target_length))  # fmt: skip
    if not examples:
        raise UserError(
            f"no example of '{dataset.name}' is long enough: documents need at least "
            f"min_context_tokens + continuation_tokens = "
            f"{cfg.min_context_tokens + cfg.continuation_tokens} tokens"
        )
    return examples, left_out


def _matched_flip_budgets(base: Path, examples: Sequence[AttackExample]) -> list[int]:
    spent = {}
    for line in (base / EXAMPLES_FILE).read_text().splitlines():
        row = json.loads(line)
        spent[json.dumps(row["id"])] = int(row["queries"])
    budgets = []
    for example in examples:
        key = json.dumps(example.id)
        if key not in spent:
            raise UserError(f"example {example.id!r} was not attacked in attack.queries_from="
                            f"'{base}': the control needs the same examples")  # fmt: skip
        budgets.append(spent[key])
    return budgets


def _matched_restart_budgets(base: Path, restarts: int) -> list[int]:
    recorded = json.loads((base / TRIGGERS_FILE).read_text())["restarts"]
    if len(recorded) != restarts:
        raise UserError(f"attack.queries_from='{base}' ran {len(recorded)} restarts, this control "
                        f"{restarts}: set attack.trigger.restarts={len(recorded)}")  # fmt: skip
    return [int(r["queries"]) for r in recorded]


def _flip_attack(
    cfg: DictConfig, plan: Plan, objective: Objective, tokenizer: Any,
    examples: list[AttackExample], vocab: CandidateVocabulary, generator: torch.Generator,
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[int], list[dict], dict]:  # fmt: skip
    settings = FlipSettings(**OmegaConf.to_container(cfg.attack.flip))
    proposer = "random" if cfg.attack.name == "random" else "gradient"
    budgets = _matched_flip_budgets(plan.queries_from, examples) if plan.queries_from else None
    with tqdm(total=len(examples), desc=f"{cfg.attack.name}: attacking", unit="ex",
              dynamic_ncols=True, leave=False) as bar:  # fmt: skip
        results = flip_search(objective, examples, vocab, settings, proposer, budgets, generator,
                              bar.update)  # fmt: skip
    extras = []
    for result in results:
        extras.append({
            "queries": result.queries, "gradient_queries": result.gradient_queries,
            "query_budget": result.budget, "steps": result.steps,
            "loss_trajectory": result.trajectory,
            "flips": [{"position": p, "old": o, "new": n, "old_text": tokenizer.decode([o]),
                       "new_text": tokenizer.decode([n])} for p, o, n in result.best.flips],
        })  # fmt: skip
    clean = [r.clean.ids for r in results]
    attacked = [r.best.ids for r in results]
    changed = [
        sum(a != b for a, b in zip(c, x, strict=True)) for c, x in zip(clean, attacked, strict=True)
    ]
    info = {"settings": asdict(settings), "proposer": proposer,
            "queries_total": sum(r.queries for r in results),
            "gradient_queries_total": sum(r.gradient_queries for r in results)}  # fmt: skip
    return clean, attacked, changed, extras, info


def _trigger_attack(
    cfg: DictConfig, plan: Plan, objective: Objective, tokenizer: Any,
    examples: list[AttackExample], vocab: CandidateVocabulary, generator: torch.Generator,
    seed: int, out_dir: Path,
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]], list[int], list[dict], dict]:  # fmt: skip
    settings = TriggerSettings(**OmegaConf.to_container(cfg.attack.trigger))
    proposer = "random" if cfg.attack.name == "random" else "gradient"
    opt_rows = split_rows(plan.dataset, settings.optimization_split, seed,
                          settings.optimization_examples, which="train")  # fmt: skip
    optimization, _ = build_examples(opt_rows, plan.dataset, tokenizer, plan.family, cfg)
    initial = (check_trigger_init(tokenizer, settings.init),) * settings.length
    budgets = (_matched_restart_budgets(plan.queries_from, settings.restarts)
               if plan.queries_from else None)  # fmt: skip
    total = settings.restarts * settings.steps if proposer == "gradient" else None
    with tqdm(total=total, desc=f"{cfg.attack.name}: optimising the trigger", unit="batch",
              dynamic_ncols=True, leave=False) as bar:  # fmt: skip
        restarts = trigger_search(objective, optimization, vocab, settings, initial, proposer,
                                  budgets, generator, bar.update)  # fmt: skip
    best = best_restart(restarts)
    record = {
        "best_restart": best.index, "trigger_ids": list(best.trigger),
        "trigger_text": tokenizer.decode(best.trigger), "position": settings.position,
        "restarts": [{**asdict(r), "trigger": list(r.trigger), "initial": list(r.initial),
                      "trigger_text": tokenizer.decode(r.trigger),
                      "initial_text": tokenizer.decode(r.initial)} for r in restarts],
    }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / TRIGGERS_FILE, record)
    clean = [pack(e).ids for e in examples]
    attacked = [pack(e, best.trigger, settings.position).ids for e in examples]
    extras = [{"trigger_ids": list(best.trigger)} for _ in examples]
    info = {"settings": asdict(settings), "proposer": proposer,
            "optimization_examples": len(optimization),
            "optimization_split": settings.optimization_split or plan.dataset.train_split,
            "trigger_ids": list(best.trigger), "trigger_text": record["trigger_text"],
            "best_restart": best.index,
            "queries_total": sum(r.queries for r in restarts),
            "queries_per_restart": [r.queries for r in restarts],
            "gradient_queries_total": sum(r.gradient_queries for r in restarts),
            "triggers_file": TRIGGERS_FILE}  # fmt: skip
    return clean, attacked, [settings.length] * len(examples), extras, info


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")
    partial.replace(path)


def _subject_record(subject: Subject) -> dict[str, Any]:
    return {**subject.source, "model_name": subject.model_cfg.name, "family": subject.family,
            "constraint": getattr(subject.constraint, "name", "none")}  # fmt: skip


def _objective(subject: Subject, cfg: DictConfig) -> Objective:
    device, autocast = device_and_autocast(cfg)
    subject.model.to(device).eval()
    return Objective(subject.model, subject.constraint, subject.tokenizer.pad_token_id,
                     int(cfg.batch_size), autocast)  # fmt: skip


def _load_target(cfg: DictConfig, conf_dir: Path, target: str) -> Subject:
    """A transfer target (a run dir, its last checkpoint; or a model), loaded like a subject."""
    other = OmegaConf.merge(cfg, {"checkpoint": None, "run_dir": None, "model": None})
    if is_run_dir(Path(target)):
        return load_subject(other, conf_dir, Path(target))
    other.model = target
    return load_subject(other, conf_dir, None)


def _measured(
    subject: Subject, cfg: DictConfig, examples: list[AttackExample],
    clean: list[tuple[int, ...]], attacked: list[tuple[int, ...]], changed: list[int],
    objective: Objective | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    objective = objective or _objective(subject, cfg)
    with tqdm(total=2 * len(examples), unit="summary", desc="measuring: generating",
              disable=not objective.seq2seq, dynamic_ncols=True, leave=False) as bar:  # fmt: skip
        return measure(objective, subject.tokenizer, examples, clean, attacked, changed, cfg,
                       bar.update)  # fmt: skip


def _summary(aggregates: dict[str, Any]) -> dict[str, Any]:
    rate = aggregates["success_rate"]
    return {"success_rate": rate["mean"] if rate else None,
            "delta_nll": aggregates["delta_nll"]["mean"],
            "relative_nll": (aggregates["relative_nll"] or {}).get("mean"),
            **{k: aggregates[k] for k in ("n", "successes", "failures", "skipped")}}  # fmt: skip


def attack(cfg: DictConfig, conf_dir: Path) -> list[Path]:
    """Attack what `cfg` names; returns the attack.json paths written."""
    plans = plan_attack(cfg, conf_dir)
    tokenizers = {}
    for plan in plans:  # cheap checks that need the tokenizer, before any weights load
        tokenizer = source_tokenizer(plan, cfg, conf_dir)
        if search_kind(cfg) == "trigger":
            check_trigger_init(tokenizer, cfg.attack.trigger.init)
        tokenizers[str(plan.run_dir or cfg.model)] = tokenizer_fingerprint(tokenizer)
    check_transfer_targets(cfg, conf_dir, tokenizers)
    out_root = Path(cfg.paths.output_dir)
    written, matrix = [], {}
    for plan in plans:
        name = str(plan.run_dir or cfg.model)
        out_dir = out_root / plan.run_dir.name if len(plans) > 1 and plan.run_dir else out_root
        torch.manual_seed(int(cfg.seed))
        generator = torch.Generator().manual_seed(int(cfg.seed))
        subject = load_subject(cfg, conf_dir, plan.run_dir)
        tokenizer = subject.tokenizer
        rows = split_rows(plan.dataset, cfg.split, subject.seed, cfg.max_examples)
        examples, left_out = build_examples(rows, plan.dataset, tokenizer, plan.family, cfg)
        vocab = candidate_vocabulary(
            tokenizer, subject.model.get_input_embeddings().weight.shape[0]
        )
        objective = _objective(subject, cfg)
        if search_kind(cfg) == "flip":
            clean, attacked, changed, extras, info = _flip_attack(
                cfg, plan, objective, tokenizer, examples, vocab, generator)  # fmt: skip
        else:
            clean, attacked, changed, extras, info = _trigger_attack(
                cfg, plan, objective, tokenizer, examples, vocab, generator, subject.seed,
                out_dir)  # fmt: skip
        queries_spent = objective.queries
        rows_out = _measured(subject, cfg, examples, clean, attacked, changed, objective)
        for row, extra in zip(rows_out, extras, strict=True):
            row.update(extra)
        aggregates = aggregate(rows_out, cfg.bootstrap)
        _write_rows(out_dir / EXAMPLES_FILE, rows_out)
        payload: dict[str, Any] = {
            **provenance(OmegaConf.to_container(cfg, resolve=True), int(cfg.seed)),
            "subject": _subject_record(subject),
            "attack": {"name": cfg.attack.name, "mimic": cfg.attack.mimic,
                       "queries_from": str(plan.queries_from) if plan.queries_from else None,
                       **info, "attack_queries": queries_spent,
                       "model_seconds": objective.model_seconds},
            "data": {"dataset": plan.dataset.name, "split": cfg.split or
                     plan.dataset.validation_split or "held out of train",
                     "examples": len(examples), "left_out_too_short": left_out},
            "candidate_vocabulary": vocab.summary(),
            "conventions": _conventions(cfg, plan.family),
            "metrics": aggregates,
            "examples_file": EXAMPLES_FILE,
        }  # fmt: skip
        row_of_matrix = {name: _summary(aggregates)}
        del objective, subject
        gc.collect()
        for target in cfg.attack.transfer_to:
            target = str(target)
            if target == name:
                continue
            log.info("transfer: replaying %s's attacked inputs on %s", name, target)
            other = _load_target(cfg, conf_dir, target)
            target_rows = _measured(other, cfg, examples, clean, attacked, changed)
            for row, source_row in zip(target_rows, rows_out, strict=True):
                row["source_status"] = source_row["status"]
            file = out_dir / "transfer" / f"{_safe(target)}.examples.jsonl"
            _write_rows(file, target_rows)
            row_of_matrix[target] = {**_summary(aggregate(target_rows, cfg.bootstrap)),
                                     "examples_file": str(file.relative_to(out_dir))}  # fmt: skip
            del other
            gc.collect()
        if cfg.attack.transfer_to:
            payload["transfer"] = row_of_matrix
        matrix[name] = row_of_matrix
        path = out_dir / ATTACK_RECORD
        write_json(path, payload)
        written.append(path)
        log.info(
            "%s on %s: success rate %s, delta NLL %.4g nats/token",
            cfg.attack.name,
            name,
            row_of_matrix[name]["success_rate"],
            row_of_matrix[name]["delta_nll"],
        )
    if cfg.attack.transfer_to:
        write_json(out_root / "transfer.json", _transfer_record(cfg, matrix))
    for path in written:
        print(path)
    return written


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/"))[-120:]


def _transfer_record(cfg: DictConfig, matrix: dict[str, dict[str, Any]]) -> dict[str, Any]:
    targets = list(dict.fromkeys(t for row in matrix.values() for t in row))
    return {
        **provenance(OmegaConf.to_container(cfg, resolve=True), int(cfg.seed)),
        "attack": cfg.attack.name,
        "sources": list(matrix), "targets": targets,
        "success_rate": [[matrix[s].get(t, {}).get("success_rate") for t in targets]
                         for s in matrix],
        "delta_nll": [[matrix[s].get(t, {}).get("delta_nll") for t in targets] for s in matrix],
        "cells": matrix,
        "note": "rows: the model attacked (white-box on the diagonal); columns: the model the "
                "attacked inputs were replayed on, same examples and token ids",
    }  # fmt: skip


def _conventions(cfg: DictConfig, family: str) -> dict[str, str]:
    success = (
        f"relative ROUGE-L drop (clean - attacked) / clean > {cfg.attack.success_threshold}; "
        f"skipped when clean ROUGE-L < {cfg.attack.rouge_floor}"
        if family == "seq2seq"
        else f"relative NLL increase (attacked - clean) / clean > "
        f"{cfg.attack.nll_success_threshold}; skipped when clean NLL < {cfg.attack.nll_floor}"
    )
    return {
        "loss": "mean NLL in nats per target token: the reference summary (seq2seq) or the "
        "original continuation only (causal LM)",
        "success": success,
        "success_rate": "successes / (successes + failures)",
        "queries": "sequences passed through the model while attacking (gradient passes "
        "included; gradient_queries counts those also back-propagated)",
        "rougeL": "F1 x 100 of the generated summary against the reference (rouge-score, stemming)",
        "ci": f"percentile bootstrap, {cfg.bootstrap.resamples} resamples",
    }
