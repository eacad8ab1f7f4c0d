"""`python -m monolm.study run executor=slurm` on a real single-node SLURM cluster
(scripts/slurm_cluster.sh): the stage graph is SLURM's own (what squeue shows is what the plan
says), a training task requeued mid-way resumes and its dependents still run, a failed stage
shows up in status and in the report, and the report runs whatever failed. Every wait is
bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

MICRO = (f"hydra.searchpath=[file://{REPO / 'tests' / 'data' / 'conf'}]", "study=micro")
CPU_TASK = "{default:{timeout_min:30,cpus_per_task:1,mem_gb:1,gpus_per_node:0}}"
ON_SLURM = ("executor=slurm", "~executor.resources", f"+executor.resources={CPU_TASK}")
# 40 steps with a checkpoint at every one: long enough to requeue mid-way; no checkpoint stages.
TRAIN = ("model=tiny_pythia", "trainer.max_steps=40", "optim.schedule_steps=40",
         "callbacks.checkpoint_every_n_steps=1", "trainer.val_check_interval=null",
         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
         "data.batch_size=4", "dataset.max_validation_examples=8")  # fmt: skip
LONGER = (
    "study.subjects.tiny_pythia=[" + ",".join(f'"{o}"' for o in TRAIN) + "]",
    "study.checkpoints=[]",
    # an attack whose every task fails at run time (top_k must be >= 1)
    '+study.attacks.broken={overrides:["attack=gcg","attack.gcg.top_k=0"],transfer:false}',
)


def study(env: dict[str, str], command: str, study_dir: Path, *extra: str):
    return subprocess.run(
        [sys.executable, "-m", "monolm.study", command, *MICRO, f"study_dir={study_dir}", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def squeue(env: dict[str, str], *fields: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "|".join(fields)], env=env,
                         capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    return [line.split("|") for line in out.splitlines()]


def wait_until_idle(env: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while squeue(env, "%i"):
        left = squeue(env, "%i", "%T", "%r")
        assert time.monotonic() < deadline, f"jobs still queued after {timeout} s: {left}"
        time.sleep(2)


def test_a_study_on_slurm_is_its_dependency_graph_survives_a_requeue_and_reports_a_failure(
    slurm: dict[str, str], tmp_path: Path
) -> None:
    submitted = study(slurm, "run", tmp_path, *ON_SLURM, *LONGER)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    arrays = json.loads((tmp_path / "slurm.json").read_text())["submissions"][-1]["arrays"]
    ids = {a["group"]: a["array_id"] for a in arrays}
    train = ids["tiny_pythia.train"]
    assert (
        [a["dependency"] for a in arrays]
        == [
            None,  # training
            f"aftercorr:{train}",  # evaluate
            f"aftercorr:{train}",  # attack gcg
            f"aftercorr:{ids['tiny_pythia.attack.gcg']}",  # its control
            f"aftercorr:{train}",  # the broken attack
            f"aftercorr:{ids['tiny_pythia.attack.broken']}",  # its control
            "afterany:" + ":".join(a["array_id"] for a in arrays[:-1]),  # the report
        ]
    )
    # What SLURM holds is that graph: every dependent task waits on its array's upstream.
    shown = {task: dependency for task, dependency in squeue(slurm, "%i", "%E")}
    for array in arrays[1:-1]:
        upstream = array["dependency"].split(":")[1]
        for i in range(2):
            assert f"aftercorr:{upstream}_*" in shown[f"{array['array_id']}_{i}"]

    # Signal the first training task as submitit's --signal does before a time limit or on
    # preemption, once it has saved step 3: training saves, submitit calls the task's
    # checkpoint() and requeues it; it resumes the run and its dependents still run. (SLURM's
    # own requeue, SIGTERM, is the same path in training: tests/test_slurm.py.)
    run = tmp_path / "runs/tiny_pythia/none/s0/train"
    deadline = time.monotonic() + 300
    while not (run / "checkpoints/step-0000003.ckpt").exists():
        assert time.monotonic() < deadline, "training never reached step 3"
        time.sleep(0.05)
    subprocess.run(["scancel", "--signal=USR2", f"{train}_0"], env=slurm, timeout=30, check=True)
    wait_until_idle(slurm, timeout=900)

    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "completed"
    assert any(s.get("stopped_by") == "SIGUSR2" for s in record["previous_segments"])
    status = study(slurm, "status", tmp_path, *LONGER)
    assert status.returncode == 0, status.stderr
    states = {
        line.split()[0]: " ".join(line.split()[1:]) for line in status.stdout.splitlines()[1:]
    }
    for arm in ("none", "monotonic"):
        for stage in ("train", "evaluate", "attack/gcg", "control/gcg"):
            assert states[f"tiny_pythia/{arm}/s0/{stage}"] == "done", states
        broken = states[f"tiny_pythia/{arm}/s0/attack/broken"]
        assert broken.startswith("failed: UserError: attack.gcg.top_k=0"), broken
        assert "stage.log" in broken
        assert states[f"tiny_pythia/{arm}/s0/control/broken"].startswith("blocked"), states
    assert states["report"] == "done"
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    failed = {s["key"] for s in results["stages"]["failed"]}
    assert failed == {f"tiny_pythia/{arm}/s0/attack/broken" for arm in ("none", "monotonic")}
