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
from monolm.errors import UserError

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


def _replace_atomically(path: Path, write: Any) -> None:
    """`write(handle)` into a hidden partial file beside `path`, then rename it over `path`: a
    reader never sees half a file, and a failed write leaves no partial file behind."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w") as handle:
            write(handle)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic write: a reader never sees half a file."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    _replace_atomically(path, lambda handle: handle.write(text))


RESERVE_BYTES = 4096


def write_json_reserved(path: Path, payload: dict[str, Any], reserve: int = RESERVE_BYTES) -> None:
    """Atomic write, padded with `reserve` bytes of trailing whitespace (still valid JSON), so
    that when the disk is full a later record of up to that much more can still be written: in
    place, into the blocks the file already holds (a status record must survive a full disk)."""
    text = json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n"
    try:
        _replace_atomically(path, lambda handle: handle.write(text + " " * reserve + "\n"))
    except OSError:
        if not _overwrite_in_place(path, text.encode()):
            raise


def _overwrite_in_place(path: Path, data: bytes) -> bool:
    """Write `data` over the start of `path` and blank the rest, allocating nothing new; False
    if the file is missing or too short to hold it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if len(data) > size:
        return False
    with path.open("r+b") as handle:
        handle.write(data + b" " * (size - len(data)))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path` (a record); a file that cannot be read, is not JSON or holds
    something else than an object is a UserError naming it."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"'{path}' is not valid JSON ({type(exc).__name__}: {exc})") from exc
    if not isinstance(record, dict):
        raise UserError(f"'{path}' is not a JSON object (got {type(record).__name__})")
    return record


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, object) for every non-blank line of a JSONL file (per-example rows); a file
    that cannot be read, or a row that is not a JSON object, is a UserError naming both."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is unreadable ({type(exc).__name__}: {exc})") from exc
    rows = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"'{path}': row {number} is not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise UserError(f"'{path}': row {number} is not a JSON object")
        rows.append((number, row))
    return rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Atomic write of one JSON object per line (per-example rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(handle: Any) -> None:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")

    _replace_atomically(path, write)
