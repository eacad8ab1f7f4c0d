"""The SLURM executor: one job array per stage group, chained by SLURM's own dependencies,
submitted through submitit; `run` returns once everything is queued.

Groups: per subject, the tuning trials of every arm (one task per arm x grid point) and the
select stages (one task per arm, `afterany` on the trials: a failed trial is skipped and
listed, not fatal); the training runs (one task per seed x arm, in plan order; `afterok` on the
select array when the arms are tuned); each evaluate / attack / control stage at each
checkpoint (the same task order, so task i depends on training task i: `aftercorr`); each
attack's transfers (`afterok` on the training arrays and the source attacks); one array per
simple baseline (majority, uniform, zero_shot: every subject's; no dependency); the report
(`afterany` on everything: a failed stage is reported, not hidden). `--kill-on-invalid-dep=yes`
ends the dependents of a failed task instead of leaving them pending for ever.

Each array task runs its stage in-process (`StageTask`, picklable, with submitit's
`checkpoint()`): on SIGUSR2 before a time limit or on preemption, training saves and submitit
requeues the task, which resumes the run; a task whose stage is already done returns at once.
A group whose every stage is done is not submitted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monolm.config.eval_schema import BASELINES as MODEL_FREE_BASELINES
from monolm.errors import UserError
from monolm.provenance import write_json
from monolm.study.plan import KINDS, Stage
from monolm.study.stages import is_done, run_stage

SUBMISSIONS = "slurm.json"
LOG_DIR = "slurm"


@dataclass
class StageResources:
    """What one array task of a stage kind asks SLURM for."""

    timeout_min: int = 60
    cpus_per_task: int = 8
    mem_gb: float = 64
    gpus_per_node: int = 1


@dataclass
class ExecutorSettings:
    """conf/executor/<option>.yaml: `kind` local or slurm; the rest is SLURM's."""

    kind: str = "local"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # per stage kind (tune, select, train, evaluate, attack, control, transfer, representations,
    # report);
    # `default` for the rest (tune: train's when not given); `baseline` for the arrays of the
    # model-free simple baselines (evaluate's when not given)
    resources: dict[str, StageResources] = field(default_factory=dict)
    max_num_timeout: int = 20  # timeouts requeue at most this many times
    signal_delay_s: int = 300  # SIGUSR2 this long before the time limit: save and requeue
    array_parallelism: int = 256
    setup: list[str] = field(default_factory=list)  # shell lines before each task
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other sbatch option

    def check(self) -> None:
        if self.kind not in ("local", "slurm"):
            raise UserError(f"executor.kind={self.kind}: one of local, slurm")
        for name in self.resources:
            if name not in RESOURCE_NAMES:
                raise UserError(f"executor.resources.{name}: one of {', '.join(RESOURCE_NAMES)}")
        for name, resources in self.resources.items():
            for key, value in asdict(resources).items():
                if value < (1 if key != "gpus_per_node" else 0):
                    raise UserError(f"executor.resources.{name}.{key}={value} must be >= 1")
        if "dependency" in self.additional_parameters:
            raise UserError(
                "executor.additional_parameters.dependency: the study sets each array's "
                "dependencies itself; remove it"
            )

    def resources_of(self, kind: str) -> StageResources:
        return (
            self.resources.get(kind)
            or (self.resources.get(RESOURCES_LIKE[kind]) if kind in RESOURCES_LIKE else None)
            or self.resources.get("default")
            or StageResources()
        )

    def resources_of_group(self, group: Group) -> StageResources:
        """Its kind's resources; a model-free simple baseline's array: `resources.baseline`."""
        model_free = all(s.simple_baseline in MODEL_FREE_BASELINES for s in group.stages)
        if model_free and MODEL_FREE_RESOURCES in self.resources:
            return self.resources[MODEL_FREE_RESOURCES]
        return self.resources_of(group.kind)


GROUP_KINDS = KINDS  # every kind of stage is a kind of array
# a tuning trial is a training run; the representations stage an evaluation
RESOURCES_LIKE = {"tune": "train", "representations": "evaluate"}
# a model-free simple baseline (majority, uniform) is an evaluate stage that loads no model: its
# array asks for `resources.baseline` when given (no GPU), else for what `evaluate` does
MODEL_FREE_RESOURCES = "baseline"
RESOURCE_NAMES = (*GROUP_KINDS, MODEL_FREE_RESOURCES, "default")


@dataclass
class StageTask:
    """One job array's stages; task `i` runs `stages[i]` in-process. Picklable (submitit
    pickles it) and checkpointable: on SIGUSR2 submitit calls `checkpoint` and requeues the
    task with the same index."""

    study_dir: Path
    conf_dir: Path
    stages: list[Stage]
    hashes: list[str]

    def __call__(self, index: int) -> str:
        stage, sha256 = self.stages[index], self.hashes[index]
        if stage.kind != "report" and is_done(self.study_dir, stage, sha256):
            return f"{stage.key}: already done"
        run_stage(self.study_dir, self.conf_dir, stage, sha256)
        return f"{stage.key}: done"

    def checkpoint(self, index: int) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, index)


def group_of(stage: Stage) -> str:
    """The array a stage belongs to: its subject, kind, attack and checkpoint; a simple
    baseline's: its baseline, every subject's in one array (`baselines.<baseline>`)."""
    if stage.simple_baseline is not None:
        return f"baselines.{stage.simple_baseline}"
    parts = [
        stage.subject,
        stage.kind,
        stage.name,
        None if stage.step is None else f"step-{stage.step}",
    ]
    return ".".join(p for p in parts if p is not None)


@dataclass
class Group:
    name: str
    kind: str
    stages: list[Stage] = field(default_factory=list)

    def index(self, key: str) -> int | None:
        for i, stage in enumerate(self.stages):
            if stage.key == key:
                return i
        return None


def build_groups(stages: list[Stage]) -> list[Group]:
    groups: dict[str, Group] = {}
    for stage in stages:
        name = group_of(stage)
        groups.setdefault(name, Group(name, stage.kind)).stages.append(stage)
    return list(groups.values())


def dependency_of(group: Group, groups: list[Group], array_ids: dict[str, str]) -> str | None:
    """`aftercorr` on a group whose task i is exactly what task i needs; `afterok` on the other
    groups it needs; `afterany` on everything for the report, and on the trials for a select
    group (it skips a failed trial). Groups not submitted (all done) are not waited for."""
    if group.kind == "report":
        ids = [array_ids[g.name] for g in groups if g.name in array_ids and g is not group]
        return f"afterany:{':'.join(ids)}" if ids else None
    by_key = {s.key: g for g in groups for s in g.stages}
    needed: dict[str, Group] = {}
    for stage in group.stages:
        for need in stage.needs:
            needed[by_key[need].name] = by_key[need]
    if group.kind == "select":
        ids = [array_ids[name] for name in needed if name in array_ids]
        return f"afterany:{':'.join(ids)}" if ids else None
    corr, ok = [], []
    for name, upstream in needed.items():
        if name not in array_ids:
            continue
        one_to_one = len(upstream.stages) == len(group.stages) and all(
            stage.needs and upstream.index(_need_in(stage, upstream)) == i
            for i, stage in enumerate(group.stages)
        )
        (corr if one_to_one else ok).append(array_ids[name])
    parts = [f"aftercorr:{i}" for i in corr] + ([f"afterok:{':'.join(ok)}"] if ok else [])
    return ",".join(parts) or None


def _need_in(stage: Stage, upstream: Group) -> str:
    keys = {s.key for s in upstream.stages}
    found = [need for need in stage.needs if need in keys]
    return found[0] if len(found) == 1 else ""


def _squeue(job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Task id -> (state, reason) for those of `job_ids`' tasks SLURM still knows."""
    ids = sorted(set(job_ids))
    if not ids or shutil.which("squeue") is None:
        return {}
    done = subprocess.run(
        ["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T|%r"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    rows = {}
    for line in done.stdout.splitlines():
        task, state, reason = [*line.split("|"), "", ""][:3]
        rows[task.strip()] = (state.strip(), reason.strip())
    return rows


def read_submissions(study_dir: Path) -> list[dict[str, Any]]:
    path = study_dir / SUBMISSIONS
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
        return list(record["submissions"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"'{path}' is corrupt ({type(exc).__name__}: {exc})") from exc


def queued_tasks(study_dir: Path) -> dict[str, tuple[str, str, str]]:
    """Stage key -> (SLURM task id, state, reason) for the tasks of this study SLURM still
    holds (pending or running), from the latest submission of each stage."""
    tasks: dict[str, str] = {}
    for submission in read_submissions(study_dir):
        for array in submission["arrays"]:
            for i, key in enumerate(array["stages"]):
                tasks[key] = f"{array['array_id']}_{i}"
    queue = _squeue({task.split("_")[0] for task in tasks.values()})
    return {key: (task, *queue[task]) for key, task in tasks.items() if task in queue}


def submit(
    study_dir: Path,
    conf_dir: Path,
    study_name: str,
    stages: list[Stage],
    hashes: dict[str, str],
    settings: ExecutorSettings,
) -> dict[str, Any]:
    """Submit every group with a stage not done yet; returns (and appends to `slurm.json`)
    what was submitted. Refused while this study still has tasks queued or running."""
    import submitit

    still = queued_tasks(study_dir)
    if still:
        some = ", ".join(sorted({task.split("_")[0] for task, _, _ in still.values()}))
        raise UserError(
            f"study_dir={study_dir} still has SLURM jobs queued or running ({some}): wait for "
            "them or scancel them before submitting again"
        )
    groups = build_groups(stages)
    array_ids: dict[str, str] = {}
    arrays = []
    for group in groups:
        pending = [s for s in group.stages if not is_done(study_dir, s, hashes[s.key])]
        if not pending and group.kind != "report":
            continue
        resources = settings.resources_of_group(group)
        executor = submitit.SlurmExecutor(
            folder=study_dir / LOG_DIR / group.name, max_num_timeout=settings.max_num_timeout
        )
        dependency = dependency_of(group, groups, array_ids)
        extra = dict(settings.additional_parameters)
        if dependency is not None and group.kind != "report":
            extra["kill_on_invalid_dep"] = "yes"
        executor.update_parameters(
            job_name=f"{study_name}.{group.name}",
            partition=settings.partition,
            account=settings.account,
            qos=settings.qos,
            time=resources.timeout_min,
            cpus_per_task=resources.cpus_per_task,
            mem=f"{int(resources.mem_gb * 1024)}M",
            gpus_per_node=resources.gpus_per_node or None,
            signal_delay_s=settings.signal_delay_s,
            array_parallelism=settings.array_parallelism,
            setup=list(settings.setup),
            dependency=dependency,
            additional_parameters=extra,
        )
        task = StageTask(study_dir, conf_dir, group.stages, [hashes[s.key] for s in group.stages])
        jobs = executor.map_array(task, range(len(group.stages)))
        array_id = str(jobs[0].job_id).split("_")[0]
        array_ids[group.name] = array_id
        arrays.append(
            {
                "group": group.name,
                "kind": group.kind,
                "array_id": array_id,
                "dependency": dependency,
                "stages": [s.key for s in group.stages],
                "already_done": [s.key for s in group.stages if s not in pending],
                "logs": str(study_dir / LOG_DIR / group.name),
            }
        )
    submission = {"submitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "arrays": arrays}
    write_json(study_dir / SUBMISSIONS, {"submissions": [*read_submissions(study_dir), submission]})
    return submission
