"""Transfer: an attack's attacked inputs (token ids) scored on another model, the same way for
attack.py's in-process `attack.transfer_to` and for a replay of a finished attack from its files
(attacks/replay.py). `Measurement` judges attacked inputs on any model; `transfer_cell` scores
one target, writes its per-example rows and returns its matrix cell.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from monolm.attacks.base import AttackOutcome, AttackSettings
from monolm.attacks.examples import AttackExample
from monolm.attacks.objective import Objective
from monolm.attacks.outcome import aggregate, measure, rate_text
from monolm.config.eval_schema import BootstrapConfig, GenerationConfig
from monolm.inference import Placement
from monolm.provenance import write_jsonl
from monolm.subjects import Subject, SubjectRef, load_subject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """How attacked inputs are judged, for the attacked model and every transfer target."""

    settings: AttackSettings  # thresholds and floors
    generation: GenerationConfig
    bootstrap: BootstrapConfig
    placement: Placement
    batch_size: int

    @classmethod
    def of(cls, cfg: DictConfig, settings: AttackSettings, placement: Placement) -> Measurement:
        """From an attack config (typed on the attack.py schema)."""
        return cls(
            settings,
            OmegaConf.to_object(cfg.generation),
            OmegaConf.to_object(cfg.bootstrap),
            placement,
            int(cfg.batch_size),
        )

    def objective(self, subject: Subject) -> Objective:
        subject.model.to(self.placement.torch_device).eval()
        return Objective(
            subject.model,
            subject.transform,
            subject.tokenizer.pad_token_id,
            self.batch_size,
            self.placement.autocast_dtype,
        )

    def rows(
        self,
        objective: Objective,
        subject: Subject,
        examples: list[AttackExample],
        outcome: AttackOutcome,
    ) -> list[dict[str, Any]]:
        with tqdm(
            total=2 * len(examples),
            unit="summary",
            desc="measuring: generating",
            disable=not objective.seq2seq,
            dynamic_ncols=True,
            leave=False,
        ) as bar:
            return measure(
                objective,
                subject.tokenizer,
                examples,
                outcome,
                self.settings,
                self.generation,
                bar.update,
            )


def summary(aggregates: dict[str, Any]) -> dict[str, Any]:
    """A matrix cell's numbers: success rate, mean NLL changes and the counts."""
    rate = aggregates["success_rate"]
    return {
        "success_rate": rate["mean"] if rate else None,
        "delta_nll": aggregates["delta_nll"]["mean"],
        "relative_nll": (aggregates["relative_nll"] or {}).get("mean"),
        **{k: aggregates[k] for k in ("n", "decided", "successes", "failures", "skipped")},
    }


def safe_name(name: str) -> str:
    """A subject's name as a file name (a run dir's path flattened, at most 120 characters)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name.strip("/"))[-120:]


def transfer_cell(
    measurement: Measurement,
    source: str,
    target: SubjectRef,
    family: str,
    examples: list[AttackExample],
    outcome: AttackOutcome,
    source_statuses: list[str],
    out_dir: Path,
    rows_file: Path,
    cache_dir: str,
    seed: int,
) -> dict[str, Any]:
    """The source's attacked inputs (`outcome`, on `examples`) scored on `target`: its rows
    (`measure`'s, with the source's status as `source_status`) written to `out_dir/rows_file`,
    and its matrix cell returned. `family`: the source's (how success is judged in words)."""
    log.info("transfer: replaying %s's attacked inputs on %s", source, target.name)
    other = load_subject(target, cache_dir, seed)
    target_rows = measurement.rows(measurement.objective(other), other, examples, outcome)
    for row, status in zip(target_rows, source_statuses, strict=True):
        row["source_status"] = status
    write_jsonl(out_dir / rows_file, target_rows)
    target_aggregates = aggregate(target_rows, measurement.bootstrap)
    text = rate_text(target_aggregates, measurement.settings, family)
    log.info("transfer %s -> %s: %s", source, target.name, text)
    cell = {
        **summary(target_aggregates),
        "success_rate_text": text,
        "examples_file": str(rows_file),
        "subject": other.record(),
    }
    del other
    gc.collect()
    return cell
