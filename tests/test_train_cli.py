"""`python train.py` as a user runs it: the run directory holds what later stages need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import FAST, run_script


@pytest.mark.slow
def test_train_cli_writes_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py", f"hydra.run.dir={run_dir}", *FAST, "trainer.max_steps=3", "seed=7",
        "optim.lr=3e-4", "dataset.max_length=64", "logger=many",
        "callbacks.checkpoint_every_n_steps=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert (config["seed"], config["optim"]["lr"], config["dataset"]["max_length"]) == (7, 3e-4, 64)
    assert "trainer.max_steps=3" in (run_dir / ".hydra" / "overrides.yaml").read_text()

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    assert (run_dir / "checkpoints" / "step-0000002.ckpt").is_file()
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["seed"] == 7 and metrics["config"]["optim"]["lr"] == 3e-4
    assert metrics["metrics"]["global_step"] == 3
    assert metrics["metrics"]["tokens_seen"] == 3 * 4 * 64
    assert {"train/loss", "val/loss", "val/ppl"} <= metrics["metrics"].keys()
    assert metrics["packages"]["torch"] and metrics["code"]["monolm"]

    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["seed"] == 7
    for key in ("host", "device", "start_time", "end_time", "wall_time_s", "packages", "code"):
        assert run[key] is not None, key
    assert run["code"]["git_commit"] is None or len(run["code"]["git_commit"]) == 40
    assert (run_dir / "csv" / "metrics.csv").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_rerunning_in_the_same_run_dir_resumes_and_keeps_history(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = (f"hydra.run.dir={run_dir}", *FAST, "optim.schedule_steps=4")
    assert run_script("train.py", *common, "trainer.max_steps=2").returncode == 0
    result = run_script("train.py", *common, "trainer.max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["resumed_from"].endswith("checkpoints/last.ckpt")
    assert [segment["status"] for segment in run["previous_segments"]] == ["completed"]
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["global_step"] == 4


@pytest.mark.slow
def test_wandb_logger_works_offline_and_a_resumed_run_logs_to_the_same_wandb_run(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    common = (f"hydra.run.dir={run_dir}", *FAST, "logger=wandb", "logger.wandb.offline=true",
              "optim.schedule_steps=4")  # fmt: skip
    for steps in (2, 4):
        result = run_script("train.py", *common, f"trainer.max_steps={steps}")
        assert result.returncode == 0, result.stderr[-3000:]
    run_id = json.loads((run_dir / "identity.json").read_text())["run_id"]
    segments = list((run_dir / "wandb").glob("offline-run-*"))
    assert segments and all(folder.name.endswith(f"-{run_id}") for folder in segments)
