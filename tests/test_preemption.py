"""Preemption and timeouts: a stop signal only sets a flag; at the next optimizer-step boundary
last.ckpt is saved, training stops, and the run resumes from it exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from monolm.training.callbacks import StepSeeder
from tests.helpers import FAST, REPO, compose_train
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
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoints" / "step-0000003.ckpt").exists():
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "training never reached step 3"
            time.sleep(0.05)
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
