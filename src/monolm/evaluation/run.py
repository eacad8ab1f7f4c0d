"""`evaluate.py`'s body: check everything cheap, then load each subject and run its tasks.

Output (the evaluate run dir, Hydra's output dir): `eval.json` (metrics with CIs, n, dataset and
split, the model, the checkpoint's sha256, the full config, code and package versions) and one
`<task>.examples.jsonl` per task. Evaluating a sweep dir writes one such set per run, in
subdirectories named after the runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from monolm.devices import check_device_settings, device_and_autocast
from monolm.errors import UserError
from monolm.evaluation.subject import (
    Subject,
    check_run_dir,
    family_of,
    load_subject,
    run_dirs_under,
)
from monolm.evaluation.tasks import RUNNERS, PlannedTask, inference, plan_tasks
from monolm.runs import run_config
from monolm.training.record import provenance, write_json

log = logging.getLogger(__name__)


def _check(cfg: DictConfig) -> None:
    if (cfg.run_dir is None) == (cfg.model is None):
        raise UserError(
            "say what to evaluate: run_dir=<train run dir> or model=<conf/model option, local "
            "directory or hub id> (exactly one)"
        )
    for key in ("batch_size", "generation.batch_size", "generation.num_beams",
                "bootstrap.resamples"):  # fmt: skip
        value = OmegaConf.select(cfg, key)
        if not value >= 1:
            raise UserError(f"{key}={value} must be >= 1")
    if not 0 < cfg.bootstrap.confidence < 1:
        raise UserError(f"bootstrap.confidence={cfg.bootstrap.confidence} must be in (0, 1)")
    check_device_settings(cfg)


def _plans(cfg: DictConfig, conf_dir: Path) -> list[tuple[Path | None, list[PlannedTask]]]:
    """(run dir or None, its tasks) for everything this call evaluates, checked up front."""
    if cfg.model is not None:
        return [(None, plan_tasks(cfg, conf_dir, family_of(conf_dir, str(cfg.model)), None))]
    plans = []
    for run_dir in run_dirs_under(Path(str(cfg.run_dir))):
        check_run_dir(run_dir, cfg.checkpoint)
        config = run_config(run_dir)
        plans.append((run_dir, plan_tasks(cfg, conf_dir, str(config.model.family),
                                          config.dataset)))  # fmt: skip
    return plans


def _write(out_dir: Path, cfg: DictConfig, subject: Subject, results: dict[str, Any],
           plans: list[PlannedTask]) -> Path:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for task in plans:
        result = results[task.name]
        examples = out_dir / f"{task.name}.examples.jsonl"
        partial = examples.with_name(f".{examples.name}.partial")
        with partial.open("w") as handle:
            for row in result.rows:
                handle.write(json.dumps(row, default=str) + "\n")
        partial.replace(examples)
        tasks[task.name] = {
            "kind": task.kind,
            "dataset": task.dataset.name if task.dataset is not None else None,
            "source": OmegaConf.to_container(task.dataset) if task.dataset is not None else None,
            "split": task.split or (task.dataset.validation_split if task.dataset else None),
            "n": len(result.rows),
            "metrics": result.metrics,
            **result.info,
            "examples_file": examples.name,
        }
    payload = {
        **provenance(OmegaConf.to_container(cfg, resolve=True), int(cfg.seed)),
        "subject": {**subject.source, "model_name": subject.model_cfg.name,
                    "family": subject.family,
                    "constraint": getattr(subject.constraint, "name", "none")},
        "tasks": tasks,
    }  # fmt: skip
    path = out_dir / "eval.json"
    write_json(path, payload)
    return path


def evaluate(cfg: DictConfig, conf_dir: Path) -> list[Path]:
    """Evaluate what `cfg` names; return the eval.json paths written."""
    _check(cfg)
    plans = _plans(cfg, conf_dir)
    device, autocast = device_and_autocast(cfg)
    out_root = Path(cfg.paths.output_dir)
    written = []
    for run_dir, tasks in plans:
        subject = load_subject(cfg, conf_dir, run_dir)
        subject.model.to(device).eval()
        results = {}
        for task in tasks:
            with tqdm(total=0, unit="ex", dynamic_ncols=True, leave=False) as progress:
                if task.kind == "monotonicity":
                    results[task.name] = RUNNERS[task.kind](task, subject, cfg, progress)
                    continue
                with inference(subject, autocast):
                    results[task.name] = RUNNERS[task.kind](task, subject, cfg, progress)
            summary = ", ".join(
                f"{k} {v['mean']:.4g}" for k, v in results[task.name].metrics.items()
            )
            log.info("%s (%s): %s", task.name, task.kind, summary)
        out_dir = out_root / run_dir.name if len(plans) > 1 and run_dir is not None else out_root
        written.append(_write(out_dir, cfg, subject, results, tasks))
    for path in written:
        print(path)
    return written
