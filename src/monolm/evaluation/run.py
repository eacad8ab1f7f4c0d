"""`evaluate.py`'s body: check everything cheap, then load each subject and run its tasks.

A baseline (`baseline=majority|uniform`, `evaluation/baselines.py`) is a subject with no model:
its predictions are scored by the same rows and metrics.

Output (the evaluate run dir, Hydra's output dir): `eval.json` (metrics with CIs, n, dataset and
split, the subject's identity (`Subject.record`), the full config, code and package versions)
and one `<task>.examples.jsonl` per task. Evaluating a sweep dir writes one such set per run, in
subdirectories named after the runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from monolm.config.eval_schema import check_measurement_settings
from monolm.evaluation.baselines import BaselineSubject, resolve_baseline, run_baseline
from monolm.evaluation.representations import plan_cka
from monolm.evaluation.runners import RUNNERS
from monolm.evaluation.tasks import PlannedTask, TaskContext, plan_tasks
from monolm.inference import placement_of
from monolm.provenance import provenance, write_json, write_jsonl
from monolm.run_dir import EVAL_RECORD, examples_file
from monolm.subjects import Subject, SubjectQuery, SubjectRef, load_subject, resolve_subjects

log = logging.getLogger(__name__)


def plan_subjects(
    cfg: DictConfig, conf_dir: Path
) -> list[tuple[SubjectRef | BaselineSubject, list[PlannedTask]]]:
    """(subject, its tasks) for everything this call evaluates, checked up front."""
    if cfg.baseline is not None:
        baseline = resolve_baseline(cfg)
        return [(baseline, plan_tasks(cfg, conf_dir, baseline.family, None))]
    return [
        (ref, plan_tasks(cfg, conf_dir, ref.family, ref.own_dataset))
        for ref in resolve_subjects(SubjectQuery.of(cfg), conf_dir)
    ]


def _write(
    out_dir: Path,
    cfg: DictConfig,
    subject: Subject | BaselineSubject,
    results: dict[str, Any],
    plans: list[PlannedTask],
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for task in plans:
        result = results[task.name]
        examples = out_dir / examples_file(task.name)
        write_jsonl(examples, result.rows)
        files = []
        for name, write in result.files.items():
            files += [Path(p).name for p in write(out_dir / name) or [out_dir / name]]
        tasks[task.name] = {
            "kind": task.kind,
            "dataset": task.dataset.name if task.dataset is not None else None,
            "source": OmegaConf.to_container(task.dataset) if task.dataset is not None else None,
            "split": task.split or (task.dataset.validation_split if task.dataset else None),
            "n": len(result.rows),
            "metrics": result.metrics,
            **result.info,
            "examples_file": examples.name,
            **({"files": files} if files else {}),
        }
    payload = {
        **provenance(OmegaConf.to_container(cfg, resolve=True), int(cfg.seed)),
        "subject": subject.record(),
        "tasks": tasks,
    }
    path = out_dir / EVAL_RECORD
    write_json(path, payload)
    return path


def evaluate(cfg: DictConfig, conf_dir: Path) -> list[Path]:
    """Evaluate what `cfg` names; return the eval.json paths written."""
    check_measurement_settings(cfg)
    placement = placement_of(cfg)
    plans = plan_subjects(cfg, conf_dir)
    refs = [ref for ref, _ in plans if isinstance(ref, SubjectRef)]
    cka = plan_cka(cfg, conf_dir, refs, placement.torch_device)
    out_root = Path(cfg.paths.output_dir)
    written = []
    for ref, tasks in plans:
        if isinstance(ref, BaselineSubject):
            subject, runners = ref, dict.fromkeys(RUNNERS, run_baseline)
        else:
            subject, runners = load_subject(ref, cfg.paths.cache_dir, int(cfg.seed)), RUNNERS
            subject.model.to(placement.torch_device)
        context = TaskContext.of(subject, cfg, placement.autocast_dtype, cka)
        results = {}
        for task in tasks:
            with tqdm(total=0, unit="ex", dynamic_ncols=True, leave=False) as progress:
                results[task.name] = runners[task.kind](task, context, progress)
            summary = ", ".join(
                f"{k} {v['mean']:.4g}" for k, v in results[task.name].metrics.items()
            )
            log.info("%s (%s): %s", task.name, task.kind, summary)
        out_dir = out_root / ref.label if len(plans) > 1 and ref.run is not None else out_root
        written.append(_write(out_dir, cfg, subject, results, tasks))
    for path in written:
        print(path)
    return written
