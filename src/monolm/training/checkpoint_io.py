"""Checkpoint files: atomic writes, and the checks made before resuming from one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _atomic_save
from lightning.pytorch.plugins.io import TorchCheckpointIO

from monolm.errors import UserError

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same directory, then renames it over the target, so a
    kill during a save leaves the previous checkpoint intact instead of a truncated one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        _atomic_save(checkpoint, partial)
        os.replace(partial, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint loaded weights-only (no pickled objects run), or a UserError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated zip, pickle error, disallowed global: all unreadable
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"checkpoint '{path}' is unreadable ({first}): move it away") from exc


def resume_checkpoint(run_dir: Path) -> Path | None:
    """`<run_dir>/checkpoints/last.ckpt` if present, after checking it loads; else None."""
    path = run_dir / "checkpoints" / LAST
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise UserError(f"checkpoint '{path}' is not a training checkpoint of this framework")
    return path
