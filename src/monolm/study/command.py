"""The `python -m monolm.study` command: compose conf/study.yaml, then plan, run, status or
report."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from monolm.config.typed import typed_settings
from monolm.errors import UserError
from monolm.provenance import provenance, write_json
from monolm.study.bookkeeping import (
    failure_record,
    running_record,
    stage_log_path,
    stage_record,
)
from monolm.study.local import run_local
from monolm.study.plan import CONF_DIR, STUDY_PLAN, Stage, build_plan, plan_record, stage_hashes
from monolm.study.settings import StudySettings
from monolm.study.slurm import ExecutorSettings, queued_tasks, submit
from monolm.study.stages import blocking_needs, check_stages, is_done, run_stage

COMMANDS = ("plan", "run", "status", "report")


def compose_study(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("study", overrides=overrides)


def study_dir_of(cfg: DictConfig, settings: StudySettings, command: str) -> Path:
    if cfg.study_dir is not None:
        return Path(str(cfg.study_dir)).resolve()
    if command not in ("plan", "run"):
        raise UserError(f"{command} needs study_dir=<the study's dir> (it has no default)")
    stamp = time.strftime("%Y-%m-%d/%H-%M-%S")
    return (Path("outputs/study") / f"{stamp}_{settings.name}").resolve()


def write_plan(
    study_dir: Path, cfg: DictConfig, settings: StudySettings, stages: list[Stage]
) -> Path:
    study_dir.mkdir(parents=True, exist_ok=True)
    path = study_dir / STUDY_PLAN
    config = OmegaConf.to_container(cfg, resolve=True)
    seed = settings.seeds[0] if len(settings.seeds) == 1 else None
    write_json(path, {**plan_record(settings, study_dir, stages), **provenance(config, seed)})
    return path


def check_same_study(study_dir: Path, settings: StudySettings) -> None:
    """A study dir holds one study: another study's name is refused (its stages would mix)."""
    path = study_dir / STUDY_PLAN
    if not path.is_file():
        if study_dir.is_dir() and any(study_dir.iterdir()):
            raise UserError(f"study_dir={study_dir} is not empty and has no {STUDY_PLAN}")
        return
    try:
        recorded = json.loads(path.read_text())["study"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"'{path}' is corrupt ({type(exc).__name__}: {exc})") from exc
    if recorded != settings.name:
        raise UserError(
            f"study_dir={study_dir} holds study '{recorded}', not '{settings.name}': "
            "give another study_dir"
        )


def stage_state(
    study_dir: Path,
    stage: Stage,
    sha256: str,
    queued: dict[str, tuple[str, str, str]],
    unavailable: dict[str, str],
) -> str:
    """done, running, queued on SLURM, failed (with its log), blocked (a stage it needs failed),
    changed, or missing. `unavailable`: the keys found failed or blocked so far."""
    log = stage_log_path(study_dir, stage)
    if is_done(study_dir, stage, sha256):
        return "done"
    running = running_record(study_dir, stage)
    if running is not None:
        where = running.get("slurm_job_id") or f"{running.get('host')} pid {running.get('pid')}"
        return f"running ({where}; log: {log})"
    if stage.key in queued:
        task, state, reason = queued[stage.key]
        shown = f", {reason}" if reason not in ("", "None", "(null)") else ""
        return f"{state.lower()} on SLURM ({task}{shown})"
    failure = failure_record(study_dir, stage)
    if failure is not None:
        unavailable[stage.key] = "failed"
        return f"failed: {failure.get('reason')} (log: {log})"
    blocking = blocking_needs(stage, unavailable)
    if blocking:
        unavailable[stage.key] = "is blocked"
        return f"blocked: needs {blocking[0]}, which {unavailable[blocking[0]]}"
    if stage_record(study_dir, stage) is not None:
        return "changed since it ran (reruns)"
    return "missing"


def status_lines(study_dir: Path, stages: list[Stage], hashes: dict[str, str]) -> list[str]:
    queued = queued_tasks(study_dir)
    unavailable: dict[str, str] = {}
    width = max(len(s.key) for s in stages)
    return [
        f"  {s.key:<{width}}  {stage_state(study_dir, s, hashes[s.key], queued, unavailable)}"
        for s in stages
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m monolm.study", description=__doc__)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. study=tiny")
    args = parser.parse_args(argv)
    cfg = compose_study(args.overrides)
    settings = typed_settings(
        StudySettings, OmegaConf.to_container(cfg.study, resolve=True), "study."
    )
    executor = typed_settings(
        ExecutorSettings, OmegaConf.to_container(cfg.executor, resolve=True), "executor."
    )
    executor.check()
    study_dir = study_dir_of(cfg, settings, args.command)
    stages = build_plan(settings, study_dir, CONF_DIR)
    hashes = stage_hashes(stages, study_dir)
    if args.command in ("status", "report"):
        if not (study_dir / STUDY_PLAN).is_file():
            raise UserError(f"study_dir={study_dir} has no {STUDY_PLAN}: run plan or run first")
        check_same_study(study_dir, settings)
        if args.command == "status":
            print(f"study {settings.name} in {study_dir}", *status_lines(study_dir, stages, hashes),
                  sep="\n")  # fmt: skip
        else:
            (report,) = [s for s in stages if s.kind == "report"]
            run_stage(study_dir, CONF_DIR, report, hashes[report.key])
            print(study_dir / report.dir)
        return
    check_same_study(study_dir, settings)
    check_stages(study_dir, CONF_DIR, stages)
    path = write_plan(study_dir, cfg, settings, stages)
    print(f"{path}: {len(stages)} stages")
    if args.command == "plan":
        return
    if executor.kind == "slurm":
        submission = submit(study_dir, CONF_DIR, settings.name, stages, hashes, executor)
        for array in submission["arrays"]:
            print(f"  {array['array_id']:>10}  {array['group']:<40} {array['dependency'] or ''}")
        print(f"submitted {len(submission['arrays'])} job arrays; progress: python -m "
              f"monolm.study status study={settings.name} study_dir={study_dir}")  # fmt: skip
        return
    outcome = run_local(study_dir, CONF_DIR, stages, hashes)
    print(f"study {settings.name}: {outcome.summary()}")
    for key, reason in outcome.failed.items():
        print(f"  failed: {key}: {reason}", file=sys.stderr)
    if outcome.failed:
        sys.exit(1)
