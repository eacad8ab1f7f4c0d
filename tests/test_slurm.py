"""hydra/launcher=slurm against a real single-node SLURM cluster (scripts/slurm_cluster.sh):
a 3-seed sweep, and a job requeued mid-training that resumes and ends bit-identical to an
uninterrupted run. Every wait is bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, wait_for_checkpoint
from tests.test_resume import assert_same_tensors, last, train

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = ("trainer.val_check_interval=null", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "dataset.max_validation_examples=8",
        "data.batch_size=4")  # fmt: skip
ON_SLURM = ("hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=30")  # fmt: skip


def _sweep(env: dict[str, str], sweep_dir: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, "train.py", "-m", *ON_SLURM, *TINY, *overrides,
               f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _finish(process: subprocess.Popen, timeout: float) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the sweep did not end within {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def test_a_three_seed_sweep_runs_as_slurm_jobs(slurm: dict[str, str], tmp_path: Path) -> None:
    _finish(_sweep(slurm, tmp_path, "seed=42,1337,2024", "trainer.max_steps=3"), timeout=600)
    run_dirs = sorted(p.parent for p in tmp_path.glob("*/run.json"))
    assert len(run_dirs) == 3
    seeds = set()
    for run_dir in run_dirs:
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "completed" and record["slurm_job_id"]
        assert last(run_dir)["global_step"] == 3
        seeds.add(record["config"]["seed"])
    assert seeds == {42, 1337, 2024}
    assert list((tmp_path / ".submitit").glob("*/*_log.out"))  # each job's log, for debugging


@pytest.mark.parametrize(
    ("interrupt", "signal_name"),
    [
        (["scontrol", "requeue"], "SIGTERM"),  # SLURM requeues; the job gets SIGTERM
        # What submitit's --signal does before a time limit or on preemption: submitit's
        # handler requeues the job once training has saved.
        (["scancel", "--signal=USR2"], "SIGUSR2"),
    ],
    ids=["scontrol-requeue", "sigusr2-submitit-requeue"],
)
def test_an_interrupted_job_is_requeued_resumes_and_ends_bit_identical(
    slurm: dict[str, str], tmp_path: Path, interrupt: list[str], signal_name: str
) -> None:
    steps = ("seed=5", "trainer.max_steps=40", "optim.schedule_steps=40",
             "callbacks.checkpoint_every_n_steps=1")  # fmt: skip
    sweep = tmp_path / "sweep"
    process = _sweep(slurm, sweep, *steps)
    wait_for_checkpoint(process, sweep, "0_*/checkpoints/step-0000003.ckpt")
    job = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm, capture_output=True, text=True,
                         timeout=30, check=True).stdout.split()[0]  # fmt: skip
    subprocess.run([*interrupt, job], env=slurm, timeout=30, check=True)
    _finish(process, timeout=600)

    (run_dir,) = [p.parent for p in sweep.glob("0_*/run.json")]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    earlier = record["previous_segments"]
    assert any(s.get("status") == "stopped" and s.get("stopped_by") == signal_name
               for s in earlier)  # fmt: skip
    log = (run_dir / "train.log").read_text()
    assert f"{signal_name}: saved" in log and "resuming from" in log

    train(tmp_path / "straight", *TINY, *steps)
    straight, resumed = last(tmp_path / "straight"), last(run_dir)
    assert straight["global_step"] == resumed["global_step"] == 40
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer")
