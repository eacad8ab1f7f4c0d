"""Provenance written into every result file: seed, config, code version, packages, machine."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
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
REPO_ROOT = Path(__file__).resolve().parents[3]


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


class RunRecord:
    """`run.json`: what ran, where and when. A resumed run keeps earlier segments' records."""

    def __init__(self, run_dir: Path, config: dict[str, Any], seed: int) -> None:
        self.path = run_dir / "run.json"
        previous: list[dict[str, Any]] = []
        if self.path.exists():
            try:
                old = json.loads(self.path.read_text())
                previous = [*old.pop("previous_segments", []), old]
            except (json.JSONDecodeError, AttributeError):
                previous = []
        self.payload: dict[str, Any] = {
            **provenance(config, seed),
            "status": "running",
            "host": socket.gethostname(),
            "device": device_description(),
            "command": [sys.executable, *sys.argv],
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "start_time": now_utc(),
            "end_time": None,
            "wall_time_s": None,
            "resumed_from": None,
            "previous_segments": previous,
        }
        self._started = datetime.now(UTC)

    def write(self, **updates: Any) -> None:
        self.payload.update(updates)
        write_json(self.path, self.payload)

    def finish(self, status: str) -> None:
        wall = (datetime.now(UTC) - self._started).total_seconds()
        self.write(status=status, end_time=now_utc(), wall_time_s=round(wall, 3))


class GuaranteeRecord:
    """`monotonicity.json`: the constraint's record at the start of training (kept across resumed
    segments) and after it, with the verification."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header

    def write_initial(self, report: dict[str, Any] | None) -> None:
        if report is not None:
            write_json(self.path, {**self.header, "initial": report, "final": None})

    def write_final(self, report: dict[str, Any] | None) -> None:
        if report is None:
            return
        initial = None
        if self.path.exists():
            try:
                initial = json.loads(self.path.read_text()).get("initial")
            except (json.JSONDecodeError, AttributeError):
                initial = None
        write_json(self.path, {**self.header, "initial": initial, "final": report})
