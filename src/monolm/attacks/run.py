"""`attack.py`'s body: plan, then per subject attack, measure, replay on the transfer targets.

Outputs (the attack run dir, Hydra's output dir; one subdirectory per run when a sweep dir is
attacked): `attack.json` (aggregates with bootstrap CIs, queries, the candidate vocabulary, the
full config, the subject's identity (`Subject.record`), the resolved dataset, code and package
versions), `examples.jsonl` (one row per attacked example: ids and text of the clean and
attacked input, NLLs, summaries and ROUGE-L, status, queries, flips), the attack's own records
(a trigger attack's `triggers.json`: every restart's trigger as ids and text) and, with
`attack.transfer_to`, `transfer.json` (the matrix: source x target, each cell with its
subject's identity) and `transfer/<target>.examples.jsonl`.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from monolm.attacks.audit import audit_attack, audit_text, check_audit
from monolm.attacks.base import AttackOutcome, AttackPlan, AttackRun, AttackSettings
from monolm.attacks.examples import AttackExample, ExampleSettings, build_examples
from monolm.attacks.outcome import aggregate, budget_curve, rate_text
from monolm.attacks.plan import (
    check_run_settings,
    check_transfer_targets,
    plan_attack,
    tokenizer_identity,
)
from monolm.attacks.registry import attack_settings
from monolm.attacks.transfer import Measurement, safe_name, summary, transfer_cell
from monolm.attacks.vocabulary import candidate_vocabulary
from monolm.config.eval_schema import BootstrapConfig
from monolm.data.sources import split_rows
from monolm.inference import placement_of
from monolm.provenance import provenance, write_json, write_jsonl
from monolm.run_dir import (
    ATTACK_AUDIT,
    ATTACK_EXAMPLES,
    ATTACK_RECORD,
    TRANSFER_DIR,
    TRANSFER_RECORD,
    examples_file,
)
from monolm.subjects import SubjectRef, load_subject, load_subject_tokenizer

log = logging.getLogger(__name__)


def attack(cfg: DictConfig, conf_dir: Path) -> list[Path]:
    """Attack what `cfg` names; returns the attack.json paths written."""
    kind, settings = attack_settings(cfg.attack)
    check_audit(kind, settings)
    check_run_settings(cfg)
    placement = placement_of(cfg)
    planned = plan_attack(cfg, conf_dir, kind, settings)
    cache_dir = str(cfg.paths.cache_dir)
    tokenizers = {}
    for ref, _ in planned:  # cheap checks that need the tokenizer, before any weights load
        tokenizer = load_subject_tokenizer(ref, cache_dir)
        tokenizers[ref.name] = tokenizer_identity(tokenizer)  # what decides ids, as loaded
        kind.check_tokenizer(settings, tokenizer)
    targets = check_transfer_targets(
        [str(t) for t in settings.transfer_to], conf_dir, cache_dir, tokenizers
    )
    measurement = Measurement.of(cfg, settings, placement)
    example_settings = ExampleSettings.of(cfg)
    written, matrix = [], {}
    for ref, plan in planned:
        torch.manual_seed(int(cfg.seed))
        subject = load_subject(ref, cache_dir, int(cfg.seed))
        rows = split_rows(plan.dataset, cfg.split, subject.seed, cfg.max_examples)
        examples, left_out = build_examples(
            rows, plan.dataset, subject.tokenizer, plan.family, example_settings
        )
        rows_of_embeddings = subject.model.get_input_embeddings().weight.shape[0]
        vocab = candidate_vocabulary(subject.tokenizer, rows_of_embeddings)
        objective = measurement.objective(subject)
        run = AttackRun(
            objective,
            subject.tokenizer,
            examples,
            vocab,
            torch.Generator().manual_seed(int(cfg.seed)),
            plan,
            example_settings,
            subject.seed,
            subject.record(),
        )
        outcome = kind.run(settings, run)
        queries_spent = objective.queries
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        for name, record in outcome.records.items():
            write_json(plan.out_dir / name, record)
        rows_out = measurement.rows(objective, subject, examples, outcome)
        for row, extra in zip(rows_out, outcome.per_example, strict=True):
            row.update(extra)
        aggregates = aggregate(rows_out, measurement.bootstrap)
        curves = outcome.info.pop("curves", None) or [r["curve"] for r in rows_out if "curve" in r]
        write_jsonl(plan.out_dir / ATTACK_EXAMPLES, rows_out)
        payload: dict[str, Any] = {
            **provenance(OmegaConf.to_container(cfg, resolve=True), int(cfg.seed)),
            "subject": subject.record(),
            "attack": {
                "name": settings.name,
                **outcome.info,
                "attack_queries": queries_spent,
                "model_seconds": objective.model_seconds,
            },
            "data": {
                "dataset": plan.dataset.name,
                "split": plan.split,
                "examples": len(examples),
                "left_out_too_short": left_out,
                "source": OmegaConf.to_container(plan.dataset, resolve=True),
            },
            "candidate_vocabulary": vocab.summary(),
            "conventions": _conventions(settings, measurement.bootstrap, plan.family),
            "metrics": aggregates,
            "success_rate_text": rate_text(aggregates, settings, plan.family),
            "budget_curve": budget_curve(curves, measurement.bootstrap),
            "examples_file": ATTACK_EXAMPLES,
        }
        if settings.audit.examples > 0:  # after the attack and its measurement: changes neither
            payload["audit"], audit_rows = audit_attack(kind, settings, run, outcome)
            payload["audit"]["file"] = ATTACK_AUDIT
            write_jsonl(plan.out_dir / ATTACK_AUDIT, audit_rows)
            log.info("%s", audit_text(payload["audit"]))
        cells = {
            ref.name: {
                **summary(aggregates),
                "success_rate_text": payload["success_rate_text"],
                "subject": subject.record(),
            }
        }
        del objective, subject, run
        gc.collect()
        cells.update(
            _transfer(
                measurement,
                ref,
                plan,
                examples,
                outcome,
                rows_out,
                targets,
                cache_dir,
                int(cfg.seed),
            )
        )
        if targets:
            payload["transfer"] = cells
        matrix[ref.name] = cells
        path = plan.out_dir / ATTACK_RECORD
        write_json(path, payload)
        written.append(path)
        log.info(
            "%s on %s: %s, delta NLL %.4g nats/token",
            settings.name,
            ref.name,
            payload["success_rate_text"],
            cells[ref.name]["delta_nll"],
        )
    if targets:
        out_root = Path(cfg.paths.output_dir)
        write_json(out_root / TRANSFER_RECORD, _transfer_record(cfg, settings.name, matrix))
    for path in written:
        print(path)
    return written


def _transfer(
    measurement: Measurement,
    source: SubjectRef,
    plan: AttackPlan,
    examples: list[AttackExample],
    outcome: AttackOutcome,
    source_rows: list[dict[str, Any]],
    targets: list[SubjectRef],
    cache_dir: str,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """The source's attacked inputs replayed on each target: one matrix cell per target."""
    statuses = [row["status"] for row in source_rows]
    return {
        target.name: transfer_cell(
            measurement,
            source.name,
            target,
            plan.family,
            examples,
            outcome,
            statuses,
            plan.out_dir,
            Path(TRANSFER_DIR) / examples_file(safe_name(target.name)),
            cache_dir,
            seed,
        )
        for target in targets
        if target.name != source.name
    }


def _transfer_record(
    cfg: DictConfig, attack_name: str, matrix: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    targets = list(dict.fromkeys(t for row in matrix.values() for t in row))
    return {
        **provenance(OmegaConf.to_container(cfg, resolve=True), int(cfg.seed)),
        "attack": attack_name,
        "sources": list(matrix),
        "targets": targets,
        "success_rate": [
            [matrix[s].get(t, {}).get("success_rate") for t in targets] for s in matrix
        ],
        "delta_nll": [[matrix[s].get(t, {}).get("delta_nll") for t in targets] for s in matrix],
        "cells": matrix,
        "note": "rows: the model attacked (white-box on the diagonal); columns: the model the "
        "attacked inputs were replayed on, same examples and token ids",
    }


def _conventions(
    settings: AttackSettings, bootstrap: BootstrapConfig, family: str
) -> dict[str, str]:
    success = (
        f"relative ROUGE-L drop (clean - attacked) / clean > {settings.success_threshold}; "
        f"skipped when clean ROUGE-L < {settings.rouge_floor}"
        if family == "seq2seq"
        else f"relative NLL increase (attacked - clean) / clean > "
        f"{settings.nll_success_threshold}; skipped when clean NLL < {settings.nll_floor}"
    )
    return {
        "loss": "mean NLL in nats per target token: the reference summary (seq2seq) or the "
        "original continuation only (causal LM)",
        "success": success,
        "success_rate": "successes / (successes + failures)",
        "queries": "sequences passed through the model while attacking (gradient passes "
        "included; gradient_queries counts those also back-propagated)",
        "rougeL": "F1 x 100 of the generated summary against the reference (rouge-score, stemming)",
        "ci": f"percentile bootstrap, {bootstrap.resamples} resamples",
    }
