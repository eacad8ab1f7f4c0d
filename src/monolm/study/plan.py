"""The plan of a study: every stage of every run, its deterministic directory, the overrides it
runs with, what it needs, and a hash of what defines it (`study.json`).

Directories, relative to the study dir:

    runs/<subject>/<arm>/tune/<trial>                      a tuning trial (train.py), one per
                                                           grid point of the arm
    runs/<subject>/<arm>/select                            selection.json: the arm's best trial
    runs/<subject>/<arm>/s<seed>/train                     train.py
    runs/<subject>/<arm>/s<seed>/eval[/step-<n>]           evaluate.py on it (or a checkpoint)
    runs/<subject>/<arm>/s<seed>/attack/<name>[/step-<n>]  attack.py
    runs/<subject>/<arm>/s<seed>/control/<name>[...]      its matched random control
    transfer/<subject>/s<seed>/<name>/<source arm>         the source's attacked inputs replayed
                                                           on the other arms of the seed
    baselines/<subject>/<baseline>                         evaluate.py on a simple baseline
                                                           (majority, uniform, zero_shot)
    representations/<subject>                              evaluate.py task=[cka]: the arms'
                                                           first-seed runs (and the base model)
                                                           pairwise, each arm's seed floor
    report                                                 the study's report

A stage is done when its outputs validate and the hash it recorded equals the plan's (its own
definition and, through them, everything upstream): a rerun skips finished work and redoes
changed work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monolm.run_dir import PERIODIC_CHECKPOINT_NAME
from monolm.study.settings import AttackSpec, StudySettings
from monolm.study.simple_baselines import baseline_stages, evaluated_tasks, subject_model

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"
STUDY_PLAN = "study.json"
KINDS = (
    "tune",
    "select",
    "train",
    "evaluate",
    "attack",
    "control",
    "transfer",
    "representations",
    "report",
)
# a select stage's overrides: what it selects on, how, and each trial (JSON: dir, overrides)
SELECT_METRIC, SELECT_MODE, SELECT_TRIAL = "select=", "mode=", "trial="


@dataclass(frozen=True)
class Stage:
    """One unit of work: `kind` runs with `overrides` into `dir` once every stage in `needs`
    is done."""

    kind: str
    key: str  # unique in the plan, e.g. "tiny_t5/none/s0/attack/gcg"
    dir: str  # relative to the study dir
    overrides: tuple[str, ...]
    needs: tuple[str, ...] = ()
    subject: str | None = None
    arm: str | None = None
    seed: int | None = None
    name: str | None = None  # the attack's name (attack, control, transfer)
    step: int | None = None  # a checkpoint's training step (quality-matched view)
    targets: tuple[str, ...] = field(default=())  # transfer: the arms replayed on
    # a tuned arm's seed run: the dir of its select stage, whose chosen overrides it appends
    # when it runs (read from selection.json then; the hash chains through the select stage's)
    selection: str | None = None
    # an evaluate stage of a simple baseline (majority, uniform, zero_shot: study.baselines)
    # instead of an arm's run; it needs nothing
    simple_baseline: str | None = None

    def own_sha256(self, study_dir: Path) -> str:
        """What defines the stage itself: its kind, overrides and targets, with paths inside the
        study dir taken relative to it (a study dir moved elsewhere keeps its finished work)."""
        inside = str(study_dir)
        defining = {
            "kind": self.kind,
            "overrides": [o.replace(inside, "<study_dir>") for o in self.overrides],
            "targets": list(self.targets),
        }
        if self.selection is not None:  # absent otherwise: untuned studies keep their hashes
            defining["selection"] = self.selection
        return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()


def stage_hashes(stages: list[Stage], study_dir: Path) -> dict[str, str]:
    """Each stage's hash: its own definition and the hashes of everything it needs, so a
    changed training run changes the hash of every stage downstream of it."""
    out: dict[str, str] = {}
    for stage in stages:  # planned in dependency order
        chain = [stage.own_sha256(study_dir), *(out[need] for need in stage.needs)]
        out[stage.key] = hashlib.sha256("\n".join(chain).encode()).hexdigest()
    return out


def _arm_dir(subject: str, arm: str) -> str:
    return f"runs/{subject}/{arm}"


def _run_dir(subject: str, arm: str, seed: int) -> str:
    return f"{_arm_dir(subject, arm)}/s{seed}"


def _checkpoint_dirs(step: int | None) -> str:
    return "" if step is None else f"/step-{step}"


def _checkpoint(study_dir: Path, train: str, step: int | None) -> list[str]:
    if step is None:
        return []
    name = PERIODIC_CHECKPOINT_NAME.format(step=step)
    return [f"checkpoint={study_dir / train / 'checkpoints' / f'{name}.ckpt'}"]


def build_plan(settings: StudySettings, study_dir: Path, conf_dir: Path = CONF_DIR) -> list[Stage]:
    """Every stage, in an order that runs each after what it needs (a subject's simple
    baselines first: they need nothing and take seconds, or one evaluation of the base model).
    `conf_dir` is read only for the simple baselines (the evaluate tasks, the dataset's task
    option)."""
    settings.check()
    stages: list[Stage] = []
    tasks = evaluated_tasks(settings, conf_dir, study_dir) if settings.baselines else {}
    for subject, subject_overrides in settings.subjects.items():
        for name, where, overrides in baseline_stages(settings, conf_dir, subject, tasks):
            stages.append(
                Stage(
                    "evaluate",
                    f"{subject}/baseline/{name}",
                    where,
                    overrides,
                    subject=subject,
                    simple_baseline=name,
                )
            )
        selects: dict[str, Stage] = {}
        for arm in settings.arms if settings.tuned else ():
            trials = list(_trials(settings, subject, arm))
            selects[arm] = _select(settings, study_dir, subject, arm, trials)
            stages += [*(stage for stage, _ in trials), selects[arm]]
        trains: dict[tuple[str, int], Stage] = {}
        for seed in settings.seeds:
            for arm, arm_overrides in settings.arms.items():
                base = _run_dir(subject, arm, seed)
                select = selects.get(arm)
                train = Stage(
                    "train",
                    f"{subject}/{arm}/s{seed}/train",
                    f"{base}/train",
                    (*subject_overrides, *arm_overrides, f"seed={seed}"),
                    needs=() if select is None else (select.key,),
                    subject=subject,
                    arm=arm,
                    seed=seed,
                    selection=None if select is None else select.dir,
                )
                trains[arm, seed] = train
                stages.append(train)
                stages.extend(_per_run(settings, study_dir, train, base))
        stages.extend(_transfers(settings, study_dir, trains, subject))
        if settings.representations is not None:
            stages.append(_representations(settings, study_dir, conf_dir, trains, subject))
    stages.append(
        Stage(
            "report",
            "report",
            "report",
            (),
            needs=tuple(s.key for s in stages),
        )
    )
    return stages


def _trials(
    settings: StudySettings, subject: str, arm: str
) -> Iterator[tuple[Stage, tuple[str, ...]]]:
    """The arm's tuning trials, each a training run with the subject's and the arm's overrides,
    the trials' shared ones, its grid point and the trials' seed; with its grid point."""
    tuning = settings.tuning
    assert tuning is not None
    for trial in tuning.trials(arm):
        yield (
            Stage(
                "tune",
                f"{subject}/{arm}/tune/{trial.name}",
                f"{_arm_dir(subject, arm)}/tune/{trial.name}",
                (
                    *settings.subjects[subject],
                    *settings.arms[arm],
                    *tuning.overrides,
                    *trial.overrides,
                    f"seed={tuning.seed}",
                ),
                subject=subject,
                arm=arm,
                seed=tuning.seed,
            ),
            trial.overrides,
        )


def _select(
    settings: StudySettings,
    study_dir: Path,
    subject: str,
    arm: str,
    trials: list[tuple[Stage, tuple[str, ...]]],
) -> Stage:
    """The stage that reads every trial's metrics.json and picks the arm's configuration."""
    tuning = settings.tuning
    assert tuning is not None
    described = [
        json.dumps(
            {"dir": str(study_dir / stage.dir), "overrides": list(point)}, ensure_ascii=False
        )
        for stage, point in trials
    ]
    return Stage(
        "select",
        f"{subject}/{arm}/select",
        f"{_arm_dir(subject, arm)}/select",
        (
            f"{SELECT_METRIC}{tuning.select}",
            f"{SELECT_MODE}{tuning.mode}",
            *(f"{SELECT_TRIAL}{trial}" for trial in described),
        ),
        needs=tuple(stage.key for stage, _ in trials),
        subject=subject,
        arm=arm,
    )


def _per_run(settings: StudySettings, study_dir: Path, train: Stage, base: str) -> Iterator[Stage]:
    run_dir = f"run_dir={study_dir / train.dir}"
    where = {"subject": train.subject, "arm": train.arm, "seed": train.seed}
    for step in (None, *settings.checkpoints):
        at = _checkpoint_dirs(step)
        checkpoint = _checkpoint(study_dir, train.dir, step)
        if settings.evaluate is not None:
            yield Stage(
                "evaluate",
                f"{train.key[: -len('/train')]}/evaluate{at}",
                f"{base}/eval{at}",
                (run_dir, *checkpoint, *settings.evaluate),
                needs=(train.key,),
                step=step,
                **where,
            )
        for name, spec in settings.attacks.items():
            attack = Stage(
                "attack",
                f"{train.key[: -len('/train')]}/attack/{name}{at}",
                f"{base}/attack/{name}{at}",
                (run_dir, *checkpoint, *settings.attack_overrides, *_option(spec, name)),
                needs=(train.key,),
                name=name,
                step=step,
                **where,
            )
            yield attack
            if spec.control:
                yield Stage(
                    "control",
                    f"{train.key[: -len('/train')]}/control/{name}{at}",
                    f"{base}/control/{name}{at}",
                    (
                        run_dir,
                        *checkpoint,
                        *settings.attack_overrides,
                        "attack=random",
                        f"attack.mimic={spec.option(name)}",
                        f"attack.queries_from={study_dir / attack.dir}",
                        *spec.settings_overrides(),
                    ),
                    needs=(attack.key,),
                    name=name,
                    step=step,
                    **where,
                )


def _option(spec: AttackSpec, name: str) -> list[str]:
    """The attack's overrides, with `attack=<name>` first when they pick no option."""
    if any(o.startswith("attack=") for o in spec.overrides):
        return list(spec.overrides)
    return [f"attack={name}", *spec.overrides]


def _transfers(
    settings: StudySettings,
    study_dir: Path,
    trains: dict[tuple[str, int], Stage],
    subject: str,
) -> Iterator[Stage]:
    arms = list(settings.arms)
    for seed in settings.seeds:
        for name, spec in settings.attacks.items():
            if not spec.transfer:
                continue
            for source in arms:
                targets = tuple(a for a in arms if a != source)
                attack_key = f"{subject}/{source}/s{seed}/attack/{name}"
                yield Stage(
                    "transfer",
                    f"{subject}/s{seed}/transfer/{name}/{source}",
                    f"transfer/{subject}/s{seed}/{name}/{source}",
                    (
                        f"source={study_dir / _run_dir(subject, source, seed)}/attack/{name}",
                        *(f"target.{t}={study_dir / trains[t, seed].dir}" for t in targets),
                    ),
                    needs=(attack_key, *(trains[t, seed].key for t in arms)),
                    subject=subject,
                    arm=source,
                    seed=seed,
                    name=name,
                    targets=targets,
                )


def _quoted(path: Path | str) -> str:
    """A list element of an override, quoted (a path may hold characters Hydra parses)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _representations(
    settings: StudySettings,
    study_dir: Path,
    conf_dir: Path,
    trains: dict[tuple[str, int], Stage],
    subject: str,
) -> Stage:
    """CKA of the subject's arms (their first seed's runs), pairwise and with the base model,
    and each arm's first two seeds as its floor, in one evaluate.py call."""
    spec = settings.representations
    assert spec is not None
    first, *others = settings.arms
    seed = settings.seeds[0]
    against = [study_dir / trains[arm, seed].dir for arm in others]
    base = (
        [subject_model(conf_dir, subject, settings.subjects[subject], "representations' base")]
        if spec.base
        else []
    )
    floors = [
        f"[{_quoted(study_dir / trains[arm, seed].dir)},"
        f"{_quoted(study_dir / trains[arm, settings.seeds[1]].dir)}]"
        for arm in settings.arms
        if len(settings.seeds) > 1
    ]
    used = [trains[arm, s] for arm in settings.arms for s in settings.seeds[:2]]
    return Stage(
        "representations",
        f"{subject}/representations",
        f"representations/{subject}",
        (
            f"run_dir={study_dir / trains[first, seed].dir}",
            # a base model built from an architecture is then the first seed's initial weights
            f"seed={seed}",
            "task=[cka]",
            f"cka.against=[{','.join(_quoted(p) for p in [*against, *base])}]",
            "cka.all_pairs=true",
            *([f"cka.floor=[{','.join(floors)}]"] if floors else []),
            *spec.overrides,
        ),
        needs=tuple(stage.key for stage in used),
        subject=subject,
    )


def plan_record(settings: StudySettings, study_dir: Path, stages: list[Stage]) -> dict[str, Any]:
    """study.json's content."""
    hashes = stage_hashes(stages, study_dir)
    return {
        "study": settings.name,
        "study_dir": str(study_dir),
        "settings": asdict(settings),
        "baseline": settings.baseline_arm,
        "stages": [{**asdict(s), "sha256": hashes[s.key]} for s in stages],
    }
