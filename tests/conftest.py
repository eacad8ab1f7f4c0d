"""Shared fixtures. Tests run offline: nothing here may reach the Hugging Face hub."""

from __future__ import annotations

import os
import shutil
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
