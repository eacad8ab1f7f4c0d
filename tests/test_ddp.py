"""`trainer=ddp` runs data parallel on CPU (gloo): two ranks, one run dir, one checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import FAST, run_script


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_trains_the_tiny_model(tmp_path: Path) -> None:
    result = run_script("train.py", "trainer=ddp", "trainer.devices=2", "trainer.max_steps=4",
                        "trainer.val_check_interval=null", *FAST,
                        f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["config"]["trainer"]["strategy"] == "ddp"
    assert (tmp_path / "train_ddp_process_1.log").exists()  # the second rank ran
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["global_step"] == 4 and metrics["val/loss"] > 0
