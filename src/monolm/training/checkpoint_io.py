"""Checkpoint files: atomic writes, and the checks made before resuming from one."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from monolm.errors import UserError
from monolm.run_dir import LAST_CHECKPOINT, RunDir

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same directory, fsyncs it, then renames it over the
    target, so a kill (or a node crash) during a save leaves the previous checkpoint intact
    instead of a truncated one. `torch.save` streams into the file: Lightning's `_atomic_save`
    first serialises the whole checkpoint into memory (about 17 GB of host RAM for
    pythia_1.4b's weights and AdamW state)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        except BaseException as exc:
            partial.unlink(missing_ok=True)  # a full disk must not stay full of a half file
            if isinstance(exc, OSError | RuntimeError):  # torch reports write errors as either
                raise CheckpointWriteError(path, exc) from exc
            raise


class CheckpointWriteError(OSError):
    """Saving a checkpoint failed (its partial file is removed; the previous one is intact)."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        try:  # torch's own message for a full disk is "unexpected pos ..."
            free = f"; {shutil.disk_usage(path.parent).free / 1e6:.1f} MB free there"
        except OSError:
            free = ""
        super().__init__(f"saving '{path}' failed: {reason}{free}")
        self.path = path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint loaded weights-only (no pickled objects run), or a UserError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated zip, pickle error, disallowed global: all unreadable
        message = f"checkpoint '{path}' is unreadable ({_reason(exc)}): move it away"
        raise UserError(message) from exc


def _reason(exc: Exception) -> str:
    """The first sentence of an exception's message (torch's zip errors run to a paragraph)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(". ")[0].rstrip(".")


def _training_checkpoint(path: Path) -> int:
    """The global step of a loadable training checkpoint; else a UserError naming `path`."""
    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint or "loops" not in checkpoint:
        raise UserError(f"checkpoint '{path}' is not a training checkpoint of this framework")
    return int(checkpoint.get("global_step", -1))


def _step_of(path: Path) -> int:
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if digits else -1


def _set_aside(path: Path) -> Path:
    """Rename an unreadable checkpoint so the next save cannot overwrite it (kept for forensics)."""
    for n in range(1000):
        target = path.with_name(f"{path.name}.unreadable{'' if n == 0 else f'.{n}'}")
        if not target.exists():
            with contextlib.suppress(FileNotFoundError):  # another rank moved it first
                os.replace(path, target)
            return target
    raise UserError(f"too many unreadable copies of '{path}' beside it: clean them up")


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues from, and the optimizer step it holds."""

    path: Path
    step: int


def resume_checkpoint(run_dir: Path) -> ResumePoint | None:
    """The newest checkpoint of `run_dir` that loads: `checkpoints/last.ckpt`, or a periodic
    `step-*.ckpt` written after it (a kill between the two writes of one save), else the periodic
    files, newest first. None if there is none (a fresh run). An unreadable `last.ckpt`
    (truncated, corrupt) is named in a warning and renamed aside, never overwritten; if no
    checkpoint loads, a UserError names them: never a silent fresh start."""
    layout = RunDir(run_dir)
    periodic = sorted(layout.periodic_checkpoints(), key=_step_of, reverse=True)
    steps: dict[Path, int | UserError] = {}  # each file is read once (they can be many GB)

    def step_of(path: Path) -> int | UserError:
        if path not in steps:
            try:
                steps[path] = _training_checkpoint(path)
            except UserError as exc:
                steps[path] = exc
        return steps[path]

    last = layout.last_checkpoint
    candidates = [last, *periodic]
    last_step = step_of(last) if last.is_file() and periodic else None
    if isinstance(last_step, int):  # a kill between step-N and last.ckpt: step-N is newer
        candidates = [*(p for p in periodic if _step_of(p) > last_step), *candidates]
    unreadable: list[tuple[Path, str]] = []
    for path in (p for p in candidates if p.is_file()):
        if isinstance(step_of(path), UserError):
            unreadable.append((path, str(step_of(path))))
            continue
        for bad, _ in unreadable:
            kept = _set_aside(bad) if bad.name == LAST_CHECKPOINT else bad
            log.warning(
                "checkpoint %s is unreadable (kept as %s); resuming from %s, the newest "
                "checkpoint that loads",
                bad,
                kept.name,
                path,
            )
        return ResumePoint(path, step_of(path))
    if unreadable:
        names = ", ".join(str(p) for p, _ in unreadable)
        raise UserError(
            f"no checkpoint of '{run_dir}' loads ({unreadable[0][1]}; tried {names}): move them "
            "away to start over"
        )
    return None
