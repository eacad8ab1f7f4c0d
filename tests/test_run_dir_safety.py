"""A run directory is never damaged: by a command aimed at it by mistake, by a second writer, by
a resume with changed settings, by a full disk. Each case through `train.py` in a subprocess,
with the sha256 of every file in the run dir before and after."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from monolm.provenance import write_json_reserved
from monolm.run_lock import LockHolder, RunLock
from tests.helpers import FAST, REPO, run_script, wait_for_checkpoint
from tests.test_resume import assert_same_tensors, last

QUICK = (*FAST, "trainer.val_check_interval=null", "logger=csv")


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_script("train.py", f"hydra.run.dir={run_dir}", *QUICK, *overrides)


def trained(run_dir: Path, *overrides: str) -> Path:
    result = train(run_dir, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ")
    return lines[0]


def last_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a run that failed after it started (Lightning's warnings from
    before the failure may precede it)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.stderr
    return lines[-1]


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def lr_rows(run_dir: Path) -> list[tuple[int, float]]:
    """(step, lr) of every row the lr monitor logged, in file order."""
    rows = csv_rows(run_dir)
    return [(int(r["step"]), float(r["lr-AdamW/decay"])) for r in rows if r.get("lr-AdamW/decay")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-step tiny_pythia run (monotone-free baseline, seed 42)."""
    return trained(tmp_path_factory.mktemp("finished") / "run", "trainer.max_steps=3")


# --- identity before anything is written ----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model=tiny_t5", "model.name 'tiny_pythia' -> 'tiny_t5'"),
        ("constraint=monotonic", "constraint.name 'none' -> 'monotonic'"),
        ("seed=7", "seed 42 -> 7"),
    ],
    ids=["model", "constraint", "seed"],
)
def test_a_command_for_another_run_is_refused_and_changes_nothing(
    finished_run: Path, override: str, named: str
) -> None:
    before = snapshot(finished_run)
    result = train(finished_run, "trainer.max_steps=3", override)
    assert result.returncode == 2
    line = error_line(result)
    assert named in line and "hold" in line and "another run" in line
    assert snapshot(finished_run) == before


@pytest.mark.slow
def test_a_directory_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "evaluation"
    other.mkdir()
    (other / "eval.json").write_text("{}")
    result = train(other, "trainer.max_steps=1")
    assert result.returncode == 2
    assert "is not empty (eval.json)" in error_line(result)
    assert sorted(p.name for p in other.iterdir()) == ["eval.json"]


@pytest.mark.slow
def test_an_lr_change_is_refused_then_allowed_explicitly_recorded_and_in_effect(
    tmp_path: Path,
) -> None:
    run_dir = trained(tmp_path / "run", "trainer.max_steps=2", "optim.schedule_steps=4",
                      "optim.warmup_ratio=0", "optim.min_lr_ratio=0")  # fmt: skip
    common = ("trainer.max_steps=4", "optim.schedule_steps=4", "optim.warmup_ratio=0",
              "optim.min_lr_ratio=0", "optim.lr=0.01")  # fmt: skip
    before = snapshot(run_dir)
    refused = train(run_dir, *common)
    assert refused.returncode == 2
    line = error_line(refused)
    assert "optim.lr 0.001 -> 0.01" in line and "resume.allow_changes=[optim.lr]" in line
    assert snapshot(run_dir) == before

    allowed = train(run_dir, *common, "resume.allow_changes=[optim.lr]")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    change = {"before": 0.001, "after": 0.01, "allowed_by": "resume.allow_changes"}
    assert record["changes"]["optim.lr"] == change
    assert record["changes"]["trainer.max_steps"]["allowed_by"] == "continuation"
    history = json.loads((run_dir / "metrics.json").read_text())["config_history"]
    assert [h["changes"].get("optim.lr") for h in history] == [None, change]
    # the new lr took effect (a restored optimizer would otherwise keep the old one): linear
    # decay over 4 steps, from 1e-3 for steps 0-1, from 1e-2 from step 2 on
    lrs = dict(lr_rows(run_dir))
    assert lrs[1] == pytest.approx(1e-3 * 3 / 4) and lrs[2] == pytest.approx(1e-2 * 2 / 4)
    assert (run_dir / ".hydra" / "segment-2" / "config.yaml").is_file()
    assert "optim.lr=0.01" not in (run_dir / ".hydra" / "overrides.yaml").read_text()


@pytest.mark.slow
def test_training_longer_without_pinning_the_schedule_is_refused_with_the_fix(
    finished_run: Path,
) -> None:
    before = snapshot(finished_run)
    result = train(finished_run, "trainer.max_steps=6")
    assert result.returncode == 2
    line = error_line(result)
    assert "optim.schedule_steps 3 -> 6" in line and "optim.schedule_steps=3" in line
    assert snapshot(finished_run) == before


# --- logs append; records say what ran ------------------------------------------------------


@pytest.mark.slow
def test_a_resumed_run_keeps_every_segments_csv_rows_and_records_the_precision_that_ran(
    tmp_path: Path,
) -> None:
    common = ("optim.schedule_steps=4", "trainer.precision=16-mixed")  # CPU: runs as bf16
    run_dir = trained(tmp_path / "run", *common, "trainer.max_steps=2")
    first = csv_rows(run_dir)
    trained(run_dir, *common, "trainer.max_steps=4")
    rows = csv_rows(run_dir)
    assert rows[: len(first)] == [{**row, **{k: "" for k in rows[0].keys() - row.keys()}}
                                  for row in first]  # fmt: skip
    assert [step for step, _ in lr_rows(run_dir)] == [0, 1, 2, 3]  # each step once, in order
    for record in ("run.json", "metrics.json"):
        ran = json.loads((run_dir / record).read_text())["ran_with"]
        assert ran["precision"] == "bf16-mixed" and ran["device"] == "cpu", record
    assert json.loads((run_dir / "run.json").read_text())["config"]["trainer"]["precision"] == (
        "16-mixed"
    )  # what was asked stays recorded as asked


# --- one writer -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_writer_is_refused_and_the_first_finishes_and_resumes_bit_exact(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    schedule = "optim.schedule_steps=1000"
    first = subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *QUICK, "trainer.max_steps=1000",
         schedule, "callbacks.checkpoint_every_n_steps=2"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_checkpoint(first, run_dir / "checkpoints", "step-*.ckpt")
        second = train(run_dir, "trainer.max_steps=1000", schedule)
        assert second.returncode == 2
        holder = json.loads((run_dir / "run.lock").read_text())
        assert f"being written by pid {holder['pid']} on {holder['host']}" in error_line(second)
        first.send_signal(signal.SIGUSR2)  # the first ends its segment: saves and stops
    finally:
        _, stderr = first.communicate(timeout=600)
    assert first.returncode == 128 + signal.SIGUSR2, stderr[-3000:]
    assert not (run_dir / "run.lock").exists()
    total = last(run_dir)["global_step"] + 2
    trained(run_dir, f"trainer.max_steps={total}", schedule)
    reference = trained(tmp_path / "straight", f"trainer.max_steps={total}", schedule)
    assert_same_tensors(last(run_dir)["state_dict"], last(reference)["state_dict"])
    assert_same_tensors(last(run_dir)["optimizer_states"], last(reference)["optimizer_states"])


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_a_stale_lock_is_taken_over_and_the_takeover_recorded(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stale = {**LockHolder.me().__dict__, "pid": _dead_pid(), "pid_start": None}
    (run_dir / "run.lock").write_text(json.dumps(stale))
    result = train(run_dir, "trainer.max_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "took over the lock" in output and f"pid {stale['pid']}" in output
    taken = json.loads((run_dir / "run.json").read_text())["lock_taken_over"]
    assert taken["holder"]["pid"] == stale["pid"] and "not running" in taken["reason"]
    assert not (run_dir / "run.lock").exists()


def _lock_of(folder: Path, **holder: object) -> Path:
    path = folder / "run.lock"
    path.write_text(json.dumps({**LockHolder.me().__dict__, **holder}))
    return path


def test_a_live_holder_on_this_host_keeps_its_lock(tmp_path: Path) -> None:
    path = _lock_of(tmp_path, pid=os.getppid(), pid_start=None)
    with pytest.raises(Exception, match=f"being written by pid {os.getppid()}"):
        RunLock(path).acquire()
    assert json.loads(path.read_text())["pid"] == os.getppid()


def test_a_lock_from_another_host_is_taken_over_only_once_its_heartbeat_is_old(
    tmp_path: Path,
) -> None:
    path = _lock_of(tmp_path, host="node-elsewhere", pid=1, slurm_job_id=None)
    with pytest.raises(Exception, match="node-elsewhere"):
        RunLock(path, stale_after_s=600).acquire()
    old = time.time() - 601
    os.utime(path, (old, old))
    lock = RunLock(path, stale_after_s=600).acquire()
    try:
        assert lock.taken_over is not None and "heartbeat is 60" in lock.taken_over["reason"]
        assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not path.exists()


def test_a_requeued_slurm_job_takes_over_its_own_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    path = _lock_of(tmp_path, host="node-before-requeue", pid=1, slurm_job_id="4242")
    with RunLock(path) as lock:
        assert "requeued" in lock.taken_over["reason"]


def test_releasing_never_removes_a_lock_another_writer_took(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "run.lock").acquire()
    _lock_of(tmp_path, host="another-writer", pid=1)  # e.g. taken over after a long pause
    lock.release()
    assert json.loads((tmp_path / "run.lock").read_text())["host"] == "another-writer"


# --- failure leaves truth --------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 48 MB tmpfs (needs root to mount; skipped with the reason otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root: the full-disk cases run where tests run as root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free - leave
    with filler.open("wb") as handle:
        handle.truncate(0)
        chunk = b"\0" * (1 << 20)
        while free > 0:
            handle.write(chunk[: min(len(chunk), free)])
            free -= len(chunk)
    return filler


def test_a_status_is_recorded_on_a_full_disk(small_disk: Path) -> None:
    record = small_disk / "run.json"
    write_json_reserved(record, {"status": "running", "failure": None})
    fill(small_disk, leave=0)
    with pytest.raises(OSError):
        (small_disk / "new-file").write_text("x" * 100_000)  # the disk is full
    write_json_reserved(record, {"status": "failed", "failure": "No space left " + "x" * 900})
    assert json.loads(record.read_text())["status"] == "failed"
    with pytest.raises(OSError):  # more than the room it kept: refused, the record stays
        write_json_reserved(record, {"status": "failed", "failure": "x" * 10_000})
    assert json.loads(record.read_text())["status"] == "failed"


@pytest.mark.slow
def test_a_full_disk_leaves_no_partial_file_a_failed_record_and_a_resumable_run(
    small_disk: Path,
) -> None:
    run_dir = small_disk / "run"
    common = ("optim.schedule_steps=8", "callbacks.checkpoint_every_n_steps=4",
              "callbacks.keep_checkpoints=1")  # fmt: skip
    trained(run_dir, *common, "trainer.max_steps=4")
    filler = fill(small_disk, leave=2 << 20)  # less than one checkpoint
    result = train(run_dir, *common, "trainer.max_steps=8")
    assert result.returncode == 1
    line = last_line(result)
    assert "step-0000008.ckpt' failed" in line and "run.json says failed" in line
    assert "traceback in" in line and "Traceback" in (run_dir / "train.log").read_text()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".partial")]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "step-0000008.ckpt" in record["failure"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4

    filler.unlink()
    trained(run_dir, *common, "trainer.max_steps=8")
    assert last(run_dir)["global_step"] == 8
    # each step once: the rows the failed segment logged past step 4 were dropped, then re-logged
    assert [step for step, _ in lr_rows(run_dir)] == list(range(8))
