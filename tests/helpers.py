"""Helpers shared by the tests: compose the real configs, run the real scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def register_train_configs() -> None:
    """What train.py registers before Hydra composes: the schema, resolvers, constraint options."""
    from monolm.config.schema import register_configs
    from monolm.constraints import register_constraint_configs

    register_configs()
    register_constraint_configs()


def compose_train(*overrides: str):
    """The composed train config, exactly as `python train.py <overrides>` would see it."""
    from hydra import compose, initialize_config_dir

    register_train_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def build_model(*overrides: str):
    """(cfg, tokenizer, model) built the way train.py builds them, before any constraint."""
    import lightning as L

    from monolm.models.loading import load_model, load_model_config, load_tokenizer

    cfg = compose_train(*overrides, "paths.output_dir=/tmp/unused")
    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    L.seed_everything(0, verbose=False)
    return cfg, tokenizer, load_model(cfg.model, load_model_config(cfg.model, tokenizer))


def run_script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python <args>` from the repo root, as a user would run it."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


# Settings that keep an end-to-end run to seconds on 2 CPU cores.
FAST = (
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "dataset.max_validation_examples=8",
)


def wait_for_checkpoint(
    process: subprocess.Popen, folder: Path, pattern: str, timeout: float = 300
) -> None:
    """Return once a file matching `pattern` exists under `folder` (a training process got that
    far); fail with the process's output if it ended first, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not list(folder.glob(pattern)):
        output = process.stderr if process.stderr is not None else process.stdout
        assert process.poll() is None, output.read()[-3000:] if output else process.returncode
        assert time.monotonic() < deadline, f"no {pattern} under {folder} after {timeout} s"
        time.sleep(0.02)
