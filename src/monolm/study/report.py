"""The study report, from files only: `write_report(study_dir)` reads `study.json` and every
finished stage, and writes into `<study_dir>/report/`:

- `results.json`: every number (`build_results`), the stages done, failed, incomplete and
  missing, the tuning (each arm's trials and chosen configuration), the simple baselines beside
  the arms (`baseline_results`), and provenance;
- `report.md`: the study's note, then tables of those numbers and links to the figures; what
  the tests say is stated mechanically (p, adjusted p), nothing else is concluded;
- `tables.tex`: booktabs tables of the per-arm summaries and the paired comparisons;
- `figures/*.png|pdf` (`monolm.figures`).

A failed or missing stage is listed, never averaged: the arms summarise the seeds they have, and
a seed missing in either arm of a comparison is dropped from it and named. The same files give
byte-identical outputs (fixed bootstrap seed, fixed orders, figures without timestamps).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from monolm.metrics.across_seeds import fewest_seeds_note
from monolm.provenance import provenance
from monolm.study.aggregate import (
    BOOTSTRAP,
    adjust,
    arm_comparisons,
    arm_summaries,
    attack_vs_control,
)
from monolm.study.baseline_results import simple_baselines
from monolm.study.data import StudyData, load_data
from monolm.study.measures import attack_measures
from monolm.study.stages.select import SELECTION, read_selection
from monolm.study.views import (
    audit,
    budget_curves,
    budget_differences,
    quality_view,
    transfer_matrix,
)

REPORT_DIR = "report"
RESULTS = "results.json"
REPORT = "report.md"
TABLES = "tables.tex"
FIGURES_DIR = "figures"
TRAINING_COLUMNS = ("val/loss", "train/loss")


def _stages(data: StudyData) -> dict[str, Any]:
    out: dict[str, Any] = {"counts": {}, "done": [], "failed": [], "incomplete": [], "missing": []}
    for state in data.states.values():
        if state.state == "done":
            out["done"].append(state.key)
        else:
            entry = {"key": state.key, "kind": state.kind, "reason": state.reason}
            if state.log is not None:
                entry["log"] = state.log
            out[state.state].append(entry)
    out["counts"] = {key: len(out[key]) for key in ("done", "failed", "incomplete", "missing")}
    return out


def _training(data: StudyData, subject: str) -> dict[str, Any]:
    """Per logged column and arm, each seed's last logged step and value."""
    out: dict[str, Any] = {}
    for column in TRAINING_COLUMNS:
        arms = {}
        for arm in data.arms:
            seeds = []
            for seed in data.settings.seeds:
                logged = (data.curves.get((subject, arm, seed)) or {}).get(column)
                if logged:
                    seeds.append(
                        {
                            "seed": seed,
                            "last_step": logged[-1][0],
                            "last_value": logged[-1][1],
                            "points": len(logged),
                        }
                    )
            if seeds:
                arms[arm] = seeds
        if arms:
            out[column] = arms
    return out


def _tuning(data: StudyData) -> dict[str, Any] | None:
    """Per subject and arm: the grid, each trial's value and the chosen configuration (from the
    select stage's selection.json, when it is done), and the budget per arm: its trials and the
    steps each trained."""
    tuning = data.settings.tuning
    if tuning is None:
        return None
    subjects: dict[str, dict[str, Any]] = {}
    for stage in data.study.stages:
        if stage.kind != "select" or stage.subject is None or stage.arm is None:
            continue
        state = data.states[stage.key]
        entry: dict[str, Any] = {
            "grid": tuning.grids.get(stage.arm),
            "state": state.state,
            "reason": state.reason,
            "trials": [],
            "chosen": None,
        }
        if state.state == "done":
            record = read_selection(data.study_dir / stage.dir / SELECTION)
            entry["trials"] = list(record.get("trials") or [])
            entry["chosen"] = record["chosen"]
        steps = sorted({t["steps"] for t in entry["trials"] if t.get("steps") is not None})
        entry["budget"] = {"trials": len(tuning.trials(stage.arm)), "steps": steps}
        subjects.setdefault(stage.subject, {})[stage.arm] = entry
    return {
        "select": tuning.select,
        "mode": tuning.mode,
        "seed": tuning.seed,
        "overrides": list(tuning.overrides),
        "subjects": subjects,
    }


def _representations(data: StudyData, subject: str) -> dict[str, Any] | None:
    """The subject's CKA (cka.json of its representations stage): per comparison (arm vs arm,
    arm vs base, seed floor) the mean over layers and each layer, with intervals."""
    record = data.representations.get(subject)
    if record is None:
        return None
    comparisons = [
        {
            "a": c["a"],
            "b": c["b"],
            "floor": bool(c["floor"]),
            "mean": c["mean"],
            "layers": [{k: d[k] for k in ("layer", "cka", "low", "high")} for d in c["diagonal"]],
        }
        for c in record["comparisons"]
    ]
    inputs = record["inputs"]
    return {
        "estimator": record["estimator"],
        "pooling": record["pooling"],
        "interval": record["interval"],
        "inputs": {k: inputs[k] for k in ("dataset", "split", "n", "sha256")},
        "comparisons": comparisons,
    }


def _subject(data: StudyData, subject: str) -> dict[str, Any]:
    measures = data.measures(subject)
    comparisons = [c for m in measures for c in arm_comparisons(data, subject, m)]
    versus = []
    for name in data.settings.attacks:
        pairs = zip(attack_measures("attack", name), attack_measures("control", name), strict=True)
        if any(m.key.startswith(f"control/{name}/") for m in measures):
            versus.extend(c for a, b in pairs for c in attack_vs_control(data, subject, a, b))
    transfers = {
        name: transfer_matrix(data, subject, name)
        for name, spec in data.settings.attacks.items()
        if spec.transfer
    }
    summaries = {m.key: arm_summaries(data, subject, m) for m in measures}
    return {
        "measures": [m.key for m in measures],
        "summaries": summaries,
        "simple_baselines": simple_baselines(data, subject, summaries),
        "comparisons": comparisons,
        "attack_vs_control": versus,
        "quality_view": quality_view(data, subject),
        "transfer": transfers,
        "audit": {name: audit(data, subject, name) for name in data.settings.attacks},
        "budget_curves": {
            name: budget_curves(data, subject, name) for name in data.settings.attacks
        },
        "training": _training(data, subject),
        "representations": _representations(data, subject),
    }


def clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, tuples to lists, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_of(data: StudyData) -> dict[str, Any]:
    """Everything the report shows, as one JSON-serialisable dict (see the module docstring)."""
    settings = data.settings
    subjects = {subject: _subject(data, subject) for subject in data.subjects}
    comparisons = [
        c for s in subjects.values() for c in (*s["comparisons"], *s["attack_vs_control"])
    ]
    multiple = adjust(comparisons, settings.primary)
    note = fewest_seeds_note(len(settings.seeds))
    seed = settings.seeds[0] if len(settings.seeds) == 1 else None
    return clean(
        {
            "study": {
                "name": settings.name,
                "note": settings.note,
                "arms": data.arms,
                "baseline": data.study.baseline,
                "seeds": list(settings.seeds),
                "subjects": data.subjects,
                "attacks": list(settings.attacks),
                "checkpoints": list(settings.checkpoints),
                "primary": list(settings.primary),
            },
            "bootstrap": {
                **BOOTSTRAP,
                "method": "paired multi-bootstrap over seeds and "
                "examples (monolm.metrics.across_seeds.compare_arms)",
            },
            "notes": [note] if note else [],
            "stages": _stages(data),
            "budgets": budget_differences(data),
            "tuning": _tuning(data),
            "subjects": subjects,
            "multiple_comparisons": multiple,
            **provenance(data.study.raw_settings, seed),
        }
    )


def build_results(study_dir: Path) -> dict[str, Any]:
    """The report's numbers from `study_dir`'s files (nothing written)."""
    return results_of(load_data(Path(study_dir)))


def write_report(study_dir: Path, *, figures: bool = True) -> list[Path]:
    """Aggregate `study_dir` into `<study_dir>/report/`; returns the paths written. `figures`
    False skips the figures (tests of the numbers)."""
    from monolm.study.drawing import draw_figures
    from monolm.study.sections import latex_tables, markdown_report

    study_dir = Path(study_dir)
    data = load_data(study_dir)
    results = results_of(data)
    planned = [stage.dir for stage in data.study.stages if stage.kind == "report"]
    out = study_dir / (planned[0] if planned else REPORT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    drawn: list[dict[str, str]] = []
    if figures:
        drawn, paths = draw_figures(data, results, out / FIGURES_DIR)
        written.extend(paths)
    results["figures"] = drawn
    texts = {
        RESULTS: json.dumps(results, indent=2, allow_nan=False) + "\n",
        REPORT: markdown_report(results),
        TABLES: latex_tables(results),
    }
    for name, text in texts.items():
        path = out / name
        partial = path.with_name(f".{name}.partial")
        partial.write_text(text)
        partial.replace(path)
        written.append(path)
    return written
