"""A study dir's finished stages, loaded once: every run's evaluation and attacks, the transfers
and the training curves, keyed by subject, arm, seed and checkpoint step (None: the final model);
the simple baselines' evaluations, keyed by subject and baseline; each subject's cka.json. Only
done stages are read
(`records.stage_states`); failed, incomplete and missing ones are listed, never read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monolm.errors import UserError
from monolm.evaluation.representations import CKA_RECORD
from monolm.study.measures import (
    Measure,
    RunValues,
    attack_measures,
    attack_values,
    difference,
    eval_measures,
    eval_values,
)
from monolm.study.records import (
    AttackRecord,
    StageState,
    StudyRecord,
    TaskRecord,
    TransferRecord,
    load_attack,
    load_eval,
    load_study,
    load_training_curves,
    load_transfer,
    read_json,
    stage_states,
)

RunKey = tuple[str, str, int, int | None]  # subject, arm, seed, step


@dataclass
class Run:
    evaluate: dict[str, TaskRecord] | None = None
    attacks: dict[str, AttackRecord] = field(default_factory=dict)
    controls: dict[str, AttackRecord] = field(default_factory=dict)


@dataclass
class StudyData:
    study_dir: Path
    study: StudyRecord
    states: dict[str, StageState]
    runs: dict[RunKey, Run]
    transfers: dict[tuple[str, int, str, str], TransferRecord]  # subject, seed, attack, source
    curves: dict[tuple[str, str, int], dict[str, tuple[tuple[int, float], ...]] | None]
    # (subject, baseline) -> the simple baseline's evaluation (study.baselines)
    baselines: dict[tuple[str, str], dict[str, TaskRecord]] = field(default_factory=dict)
    # subject -> its representations stage's cka.json (study.representations)
    representations: dict[str, dict[str, Any]] = field(default_factory=dict)
    _cache: dict[tuple[str, RunKey], RunValues | None] = field(default_factory=dict)

    @property
    def settings(self):
        return self.study.settings

    @property
    def arms(self) -> list[str]:
        return list(self.settings.arms)

    @property
    def subjects(self) -> list[str]:
        return list(self.settings.subjects)

    @property
    def steps(self) -> list[int | None]:
        return [*sorted(self.settings.checkpoints), None]

    def measures(self, subject: str) -> list[Measure]:
        """Every measure with a value in some run of `subject`: the evaluation tasks in the order
        the first evaluation lists them, then per attack its own, its control's and their
        difference."""
        found: list[Measure] = []
        for (run_subject, *_), run in self.runs.items():
            if run_subject != subject or run.evaluate is None:
                continue
            for task in run.evaluate.values():
                found.extend(m for m in eval_measures(task.name, task.kind) if m not in found)
        for name in self.settings.attacks:
            ran = [r for (s, *_), r in self.runs.items() if s == subject]
            if any(name in r.attacks for r in ran):
                found.extend(attack_measures("attack", name))
            if any(name in r.controls for r in ran):
                found.extend(attack_measures("control", name))
            if any(name in r.attacks and name in r.controls for r in ran):
                found.extend(attack_measures("attack_vs_control", name))
        return found

    def values(self, measure: Measure, key: RunKey) -> RunValues | None:
        """The run's per-example values of `measure`; None when its stage is not done."""
        cache_key = (measure.key, key)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._values(measure, key)
        return self._cache[cache_key]

    def _values(self, measure: Measure, key: RunKey) -> RunValues | None:
        run = self.runs.get(key)
        if run is None:
            return None
        if measure.stage == "evaluate":
            if run.evaluate is None or measure.name not in run.evaluate:
                return None
            return eval_values(measure, run.evaluate[measure.name])
        if measure.stage == "attack_vs_control":
            if measure.name not in run.attacks or measure.name not in run.controls:
                return None
            return difference(
                attack_values(measure, run.attacks[measure.name]),
                attack_values(measure, run.controls[measure.name]),
            )
        records = run.attacks if measure.stage == "attack" else run.controls
        if measure.name not in records:
            return None
        return attack_values(measure, records[measure.name])


def load_data(study_dir: Path) -> StudyData:
    study = load_study(study_dir)
    states = stage_states(study_dir, study)
    runs: dict[RunKey, Run] = {}
    transfers: dict[tuple[str, int, str, str], TransferRecord] = {}
    curves: dict[tuple[str, str, int], dict | None] = {}
    baselines: dict[tuple[str, str], dict[str, TaskRecord]] = {}
    representations: dict[str, dict[str, Any]] = {}
    for stage in study.stages:
        # tuning trials and selections: the report's Tuning section reads them (report.py)
        if stage.kind in ("report", "tune", "select") or states[stage.key].state != "done":
            continue
        out = study_dir / stage.dir
        if stage.simple_baseline is not None and stage.subject is not None:
            baselines[stage.subject, stage.simple_baseline] = load_eval(out)
            continue
        if stage.kind == "representations" and stage.subject is not None:
            representations[stage.subject] = read_json(out / CKA_RECORD)
            continue
        if stage.subject is None or stage.seed is None or stage.arm is None:
            raise UserError(f"'{study.path}': stage {stage.key} names no subject, arm or seed")
        if stage.kind == "train":
            curves[stage.subject, stage.arm, stage.seed] = load_training_curves(out)
            continue
        if stage.kind == "transfer":
            record = load_transfer(out)
            if record.source is not None and record.source != stage.arm:
                raise UserError(
                    f"'{record.path}': source arm '{record.source}', but the plan's stage "
                    f"{stage.key} replays arm '{stage.arm}'"
                )
            transfers[stage.subject, stage.seed, stage.name or "", stage.arm] = record
            continue
        run = runs.setdefault((stage.subject, stage.arm, stage.seed, stage.step), Run())
        if stage.kind == "evaluate":
            run.evaluate = load_eval(out)
        elif stage.kind == "attack":
            run.attacks[stage.name or ""] = load_attack(out)
        elif stage.kind == "control":
            run.controls[stage.name or ""] = load_attack(out)
    return StudyData(study_dir, study, states, runs, transfers, curves, baselines, representations)
