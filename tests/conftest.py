"""Shared fixtures. Tests run offline: nothing here may reach the Hugging Face hub."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")


# Set before any test module imports `datasets`, which reads its cache location at import time.
SESSION_CACHE = Path(tempfile.mkdtemp(prefix="monolm-test-cache-"))
os.environ["MONOLM_CACHE"] = str(SESSION_CACHE / "monolm")
os.environ["HF_DATASETS_CACHE"] = str(SESSION_CACHE / "datasets")


@pytest.fixture(scope="session", autouse=True)
def isolated_caches() -> Iterator[Path]:
    """The session's own cache (bundled tokenizer, tokenised datasets), not the user's."""
    yield SESSION_CACHE
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


SLURM_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.sh"


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a running single-node SLURM cluster (scripts/slurm_cluster.sh), one
    per session; stops only the daemons it started."""
    state = tmp_path_factory.mktemp("slurm")
    up = subprocess.run(
        ["bash", str(SLURM_SCRIPT), "up", str(state)], capture_output=True, text=True, timeout=600
    )
    if up.returncode == 3:
        pytest.skip(up.stderr.strip().splitlines()[-1])
    assert up.returncode == 0, up.stderr[-3000:]
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf"), "PYTHONUNBUFFERED": "1"}
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPT), "down", str(state)], timeout=60, check=False)
