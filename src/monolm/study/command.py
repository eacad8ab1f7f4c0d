"""The `python -m monolm.study` command: compose conf/study.yaml, then plan, run or report."""

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
from monolm.study.local import STAGE_FAILURE, run_local
from monolm.study.plan import STUDY_PLAN, Stage, build_plan, plan_record, stage_hashes
from monolm.study.settings import StudySettings
from monolm.study.stages import STAGE_LOG, is_done

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
COMMANDS = ("plan", "run", "status")
EXECUTORS = ("local",)


def compose_study(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("study", overrides=overrides)


def study_dir_of(cfg: DictConfig, settings: StudySettings, command: str) -> Path:
    if cfg.study_dir is not None:
        return Path(str(cfg.study_dir)).resolve()
    if command != "plan" and command != "run":
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


def status_lines(study_dir: Path, stages: list[Stage], hashes: dict[str, str]) -> list[str]:
    lines = []
    for stage in stages:
        out = study_dir / stage.dir
        if stage.kind in ("transfer", "report"):
            state = "not run by this executor yet"
        elif is_done(study_dir, stage, hashes[stage.key]):
            state = "done"
        elif (out / STAGE_FAILURE).is_file():
            state = f"failed (log: {out / STAGE_LOG})"
        elif out.exists():
            state = "incomplete or changed"
        else:
            state = "missing"
        lines.append(f"  {stage.key:<48} {state}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m monolm.study", description=__doc__)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. study=tiny")
    args = parser.parse_args(argv)
    cfg = compose_study(args.overrides)
    settings = typed_settings(
        StudySettings, OmegaConf.to_container(cfg.study, resolve=True), "study."
    )
    if cfg.executor not in EXECUTORS:
        raise UserError(f"executor={cfg.executor}: one of {', '.join(EXECUTORS)}")
    study_dir = study_dir_of(cfg, settings, args.command)
    stages = build_plan(settings, study_dir)
    hashes = stage_hashes(stages)
    if args.command == "status":
        if not (study_dir / STUDY_PLAN).is_file():
            raise UserError(f"study_dir={study_dir} has no {STUDY_PLAN}: run plan or run first")
        print(f"study {settings.name} in {study_dir}", *status_lines(study_dir, stages, hashes),
              sep="\n")  # fmt: skip
        return
    check_same_study(study_dir, settings)
    path = write_plan(study_dir, cfg, settings, stages)
    print(f"{path}: {len(stages)} stages")
    if args.command == "plan":
        return
    outcome = run_local(study_dir, CONF_DIR, stages, hashes)
    print(
        f"study {settings.name}: {len(outcome.ran)} ran, {len(outcome.skipped)} already done, "
        f"{len(outcome.failed)} failed, {len(outcome.blocked)} blocked, "
        f"{len(outcome.not_runnable)} not run by this executor yet"
    )
    for key, reason in outcome.failed.items():
        print(f"  failed: {key}: {reason}", file=sys.stderr)
    if outcome.failed:
        sys.exit(1)
