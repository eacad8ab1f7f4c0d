"""Provenance written into every result file (seed, config, code version, packages, machine) and
the atomic writes every stage uses for its records."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import monolm

PACKAGES = (
    "torch",
    "lightning",
    "transformers",
    "tokenizers",
    "datasets",
    "hydra-core",
    "hydra-submitit-launcher",
    "omegaconf",
    "torchmetrics",
    "numpy",
    "monolm",
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The package version and, when running from a git checkout, its commit and dirtiness."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "monolm": monolm.__version__,
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
    }


def device_description() -> dict[str, Any]:
    if torch.cuda.is_available():
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(0),
            "count": torch.cuda.device_count(),
        }
    return {
        "type": "cpu",
        "name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def provenance(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """What every result file carries, so a number can be traced to what produced it."""
    return {
        "seed": seed,
        "code": code_version(),
        "packages": package_versions(),
        "config": config,
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic write: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(partial, path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomic write of one JSON object per line (per-example rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")
    os.replace(partial, path)
