"""A segment: one process's stretch of a run, from opening its run dir to closing it.

Opening checks everything before a byte of the run dir is written: that the directory is new,
empty, or a run this config may continue (`identity.py`: a `hydra.run.dir` aimed by mistake at a
run of another model is refused, nothing touched); that no other process writes it (`run.lock`);
and which checkpoint it continues from. `commit()` then writes the run's identity record (a new
run) and this segment's Hydra config, once the model is built and just before training starts.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from monolm.errors import UserError
from monolm.provenance import code_version, now_utc, write_json
from monolm.run_dir import CHECKPOINT_DIR, HYDRA_DIR, RUN_LOCK, RUN_RECORD, RunDir
from monolm.run_lock import RunLock
from monolm.training.checkpoint_io import ResumePoint, resume_checkpoint
from monolm.training.identity import Changes, compare, identity_sha256
from monolm.training.loggers import LogContinuation

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """What this process continues, and what it changes."""

    layout: RunDir
    config: dict[str, Any]  # resolved
    run_id: str
    number: int  # 1 for a new run
    identity: dict[str, Any] | None  # the identity record; None for a new run
    resume: ResumePoint | None = None
    changes: Changes = field(default_factory=Changes)
    previous_status: str | None = None
    previous_end_step: int | None = None  # where the last segment ended, as it recorded
    lock: RunLock | None = None

    @property
    def is_new(self) -> bool:
        """No earlier segment wrote the run's files (tokenizer, model config, records)."""
        return self.identity is None

    def record(self) -> dict[str, Any]:
        """This segment's entry in run.json."""
        return {
            "run_id": self.run_id,
            "identity_sha256": identity_sha256(self.config),
            "segment": self.number,
            "resumed_from": str(self.resume.path) if self.resume else None,
            "resumed_at_step": self.resume.step if self.resume else None,
            "changes": self.changes.record(),
            "lock_taken_over": self.lock.taken_over if self.lock else None,
        }

    def log_continuation(self) -> LogContinuation:
        """Earlier log rows past the checkpoint this segment resumes from are dropped, unless the
        last segment ended exactly there (completed or stopped at its last checkpoint)."""
        resumed_at = self.resume.step if self.resume else None
        drop = None if resumed_at is None or resumed_at == self.previous_end_step else resumed_at
        return LogContinuation(self.run_id, self.number, drop)

    def commit(self, cfg: DictConfig) -> None:
        """Write the identity record (a new run) and this segment's Hydra config (rank 0)."""
        if self.identity is None or self.identity.get("migrated_from_run_json"):
            created = self.identity["config"] if self.identity else self.config
            self.identity = {
                "run_id": self.run_id,
                "identity_sha256": identity_sha256(created),
                "created": now_utc(),
                "code": code_version(),
                "config": created,
                **({"migrated_from_run_json": True} if self.identity else {}),
            }
            write_json(self.layout.identity_record, self.identity)
        _save_hydra_config(cfg, self.hydra_dir)

    @property
    def hydra_dir(self) -> Path:
        """`.hydra/` for the segment that created the run; `.hydra/segment-<n>/` for later ones."""
        base = self.layout.path / HYDRA_DIR
        return base if self.number == 1 else base / f"segment-{self.number}"

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _save_hydra_config(cfg: DictConfig, folder: Path) -> None:
    """What Hydra itself would write (train.py turns Hydra's own writing off: it would overwrite
    the run's `.hydra/` before any check could refuse the command)."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.overrides.task, folder / "overrides.yaml")


def _leftovers(path: Path) -> list[str]:
    """Entries of a directory without a run record that a new run must not mix with: anything
    but log files, an earlier lock, Hydra's folder and empty folders (what a start that failed
    before training leaves)."""
    found = []
    for entry in sorted(path.iterdir()):
        if entry.name.endswith(".log") or entry.name in (RUN_LOCK, HYDRA_DIR):
            continue
        if entry.is_dir() and not any(entry.rglob("*")):
            continue
        found.append(entry.name)
    return found


def _check_new_dir(layout: RunDir) -> None:
    path = layout.path
    if path.exists() and not path.is_dir():
        raise UserError(f"hydra.run.dir='{path}' is a file: a run dir must be a directory")
    if not path.exists():
        return
    leftovers = _leftovers(path)
    if CHECKPOINT_DIR in leftovers:
        raise UserError(
            f"hydra.run.dir='{path}' has {CHECKPOINT_DIR}/ but no {RUN_RECORD}: not a run this "
            "command can continue; move it away or use another hydra.run.dir"
        )
    if leftovers:
        shown = ", ".join(leftovers[:4]) + (" ..." if len(leftovers) > 4 else "")
        raise UserError(
            f"hydra.run.dir='{path}' is not empty ({shown}) and is not a training run dir (no "
            f"{RUN_RECORD}): use a new or empty directory"
        )


def _created_config(layout: RunDir) -> dict[str, Any]:
    """The identity record, or (a run made before identity records) one made from the first
    segment in run.json."""
    if layout.identity_record.is_file():
        try:
            identity = json.loads(layout.identity_record.read_text())
            if not isinstance(identity.get("config"), dict):
                raise ValueError("it has no config")
        except (OSError, ValueError, AttributeError) as exc:
            raise UserError(f"'{layout.identity_record}' is corrupt ({exc!r})") from exc
        return identity
    record = layout.record()
    first = (record.get("previous_segments") or [record])[0]
    return {"run_id": None, "config": first["config"], "migrated_from_run_json": True}


def _number_of(record: dict[str, Any]) -> int:
    """This segment's number: one more than run.json's segments (1 if it has none)."""
    return len(record.get("previous_segments") or []) + 2 if record else 1


def _lock_age(cfg: DictConfig) -> float:
    return float(cfg.resume.lock_stale_after_s)


def open_segment(cfg: DictConfig, config: dict[str, Any]) -> Segment:
    """Check the run dir against this command, take its lock (rank 0), find the checkpoint to
    continue from. Nothing in the run dir is written, except the lock; on a refusal the lock is
    given back and a UserError says why."""
    layout = RunDir(Path(cfg.paths.output_dir))
    rank_zero = rank_zero_only.rank == 0
    exists = layout.is_run() or layout.identity_record.is_file()
    if not exists and rank_zero:
        _check_new_dir(layout)
    layout.path.mkdir(parents=True, exist_ok=True)  # Hydra made it; a caller outside Hydra may not
    lock = RunLock(layout.lock_file, _lock_age(cfg)).acquire() if rank_zero else None
    try:
        segment = _continue(layout, cfg, config, lock) if exists else None
        if segment is None:
            if list(cfg.resume.allow_changes):
                raise UserError(
                    f"resume.allow_changes={list(cfg.resume.allow_changes)} but "
                    f"'{layout.path}' holds no run to resume: a new run has nothing to allow"
                )
            segment = Segment(layout, config, uuid.uuid4().hex[:16], 1, None, lock=lock)
        segment.resume = resume_checkpoint(layout.path)
        return segment
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _continue(
    layout: RunDir, cfg: DictConfig, config: dict[str, Any], lock: RunLock | None
) -> Segment:
    identity = _created_config(layout)
    record = layout.record() if layout.is_run() else {}
    changes = compare(
        str(layout.path),
        identity["config"],
        record.get("config") or identity["config"],
        config,
        list(cfg.resume.allow_changes),
    )
    run_id = identity.get("run_id") or uuid.uuid4().hex[:16]
    segment = Segment(
        layout,
        config,
        run_id,
        _number_of(record),
        identity,
        changes=changes,
        previous_status=record.get("status"),
        previous_end_step=record.get("end_step"),
        lock=lock,
    )
    unused = [
        key
        for key in cfg.resume.allow_changes
        if not any(c.key == key or c.key.startswith(f"{key}.") for c in changes.allowed)
    ]
    if unused:
        log.warning("resume.allow_changes: %s did not change", ", ".join(unused))
    return segment
