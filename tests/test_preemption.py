"""Preemption and timeouts: a stop signal only sets a flag; at the next optimizer-step boundary
last.ckpt is saved, training stops, and the run resumes from it exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monolm.training.callbacks import StepSeeder
from tests.helpers import FAST, REPO, compose_train, wait_for_checkpoint
from tests.test_resume import assert_same_tensors, last, train

pytestmark = pytest.mark.slow

COMMON = (*FAST, "trainer.val_check_interval=null", "optim.schedule_steps=1000",
          "trainer.accumulate_grad_batches=2", "dataset.max_train_examples=400",
          "callbacks.checkpoint_every_n_steps=3")  # fmt: skip


def _processed_batches(checkpoint: dict) -> int:
    return checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["processed"]


def test_a_signal_in_process_saves_at_the_next_step_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monolm.training.run import train as train_in_process

    original = StepSeeder.on_train_batch_start

    def signal_at_batch_6(self, trainer, pl_module, batch, batch_idx: int) -> None:
        original(self, trainer, pl_module, batch, batch_idx)
        if batch_idx == 6:  # mid-accumulation: the step boundary is after batch 7
            os.kill(os.getpid(), signal.SIGUSR2)

    monkeypatch.setattr(StepSeeder, "on_train_batch_start", signal_at_batch_6)
    previous = signal.getsignal(signal.SIGUSR2)
    cfg = compose_train(*COMMON, "trainer.max_steps=1000", f"paths.output_dir={tmp_path}")
    with pytest.raises(SystemExit) as stopped:
        train_in_process(cfg)
    assert stopped.value.code == 128 + signal.SIGUSR2
    assert signal.getsignal(signal.SIGUSR2) == previous  # handlers restored
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4 and _processed_batches(checkpoint) == 8
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "stopped" and record["stopped_by"] == "SIGUSR2"
    assert record["stopped_at_step"] == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR2], ids=["SIGTERM", "SIGUSR2"])
def test_a_signalled_training_process_stops_at_a_step_and_resumes_exactly(
    tmp_path: Path, sig: signal.Signals
) -> None:
    run_dir = tmp_path / "signalled"
    command = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *COMMON,
               "trainer.max_steps=1000"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_checkpoint(process, run_dir, "checkpoints/step-0000003.ckpt")
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + sig, stderr[-3000:]
    checkpoint = last(run_dir)
    stopped_at = checkpoint["global_step"]
    assert 3 <= stopped_at < 1000
    assert _processed_batches(checkpoint) == 2 * stopped_at  # an optimizer-step boundary
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "stopped" and record["stopped_at_step"] == stopped_at

    total = stopped_at + 3
    train(run_dir, *COMMON, f"trainer.max_steps={total}")
    train(tmp_path / "straight", *COMMON, f"trainer.max_steps={total}")
    straight, resumed = last(tmp_path / "straight"), last(run_dir)
    assert straight["global_step"] == resumed["global_step"] == total
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer")


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uninterrupted references, one per family, to the step the killed runs resume to."""
    made = {}
    for family, overrides in KILLED.items():
        run_dir = tmp_path_factory.mktemp("straight") / family
        train(run_dir, *overrides, f"trainer.max_steps={KILL_TOTAL}")
        made[family] = run_dir
    return made


KILL_TOTAL = 14
KILLED = {
    # Accumulation: a kill can land between the micro-batches of one optimizer step.
    "tiny_pythia": (*COMMON, "callbacks.checkpoint_every_n_steps=1"),
    # T5 has dropout 0.1: the resumed run must draw the masks the uninterrupted one drew.
    "tiny_t5": (*FAST, "experiment=tiny_t5_summarization", "trainer.val_check_interval=null",
                "optim.schedule_steps=1000", "callbacks.checkpoint_every_n_steps=1"),
}  # fmt: skip


@pytest.mark.parametrize("family", list(KILLED))
@pytest.mark.parametrize("kill_seed", [0, 1, 2])
def test_a_run_killed_with_sigkill_resumes_bit_exact_from_its_last_checkpoint(
    tmp_path: Path, straight_runs: dict[str, Path], family: str, kill_seed: int
) -> None:
    import random

    kill_after = random.Random(f"{family}/{kill_seed}").randint(2, KILL_TOTAL - 3)
    run_dir = tmp_path / "killed"
    command = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *KILLED[family],
               f"trainer.max_steps={KILL_TOTAL}"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for_checkpoint(process, run_dir, f"checkpoints/step-{kill_after:07d}.ckpt")
        process.kill()  # SIGKILL: no handler runs, possibly in the middle of a save
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert last(run_dir)["global_step"] < KILL_TOTAL  # (a kill between step-N and last.ckpt
    # leaves last.ckpt one save behind: the resume takes step-N, the newest that loads)

    train(run_dir, *KILLED[family], f"trainer.max_steps={KILL_TOTAL}")
    straight, resumed = last(straight_runs[family]), last(run_dir)
    assert straight["global_step"] == resumed["global_step"] == KILL_TOTAL
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizer")
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]
