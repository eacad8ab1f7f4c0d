"""One writer per run directory: a lock file naming who holds it.

`run.lock` holds the writer's host, pid, the pid's start time (so a reused pid is not mistaken for
the writer), its start time and SLURM job id. It appears whole or not at all: the holder writes it
under a private name and hard-links it into place (`link` fails if the lock exists, atomically,
also on NFS). While held, a heartbeat thread touches it, so its age says how long ago the holder
was last alive, also as seen from another host.

A lock is stale, and is taken over with a warning, when its pid is dead on this host (or now
belongs to another process), when it was written by the same SLURM job (a requeued job runs again
under its job id; the earlier process is gone), or when its heartbeat is older than `stale_after_s`
(a holder on another host, which cannot be asked).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from monolm.errors import UserError

log = logging.getLogger(__name__)


def _pid_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), after the command name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


@dataclass(frozen=True)
class LockHolder:
    """What `run.lock` says about the process holding it."""

    host: str
    pid: int
    pid_start: str | None
    start_time: str
    slurm_job_id: str | None

    @classmethod
    def me(cls) -> LockHolder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            pid_start=_pid_start(os.getpid()),
            start_time=datetime.now(UTC).isoformat(timespec="seconds"),
            slurm_job_id=os.environ.get("SLURM_JOB_ID"),
        )

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.start_time}"

    def staleness(self, age_s: float, stale_after_s: float) -> str | None:
        """Why this holder is gone (a reason to take its lock over), or None if it may live."""
        me = LockHolder.me()
        if self.slurm_job_id is not None and self.slurm_job_id == me.slurm_job_id:
            return f"written by this SLURM job ({self.slurm_job_id}) before it was requeued"
        if self.host == me.host:
            if not _pid_alive(self.pid):
                return f"pid {self.pid} is not running on {self.host}"
            start = _pid_start(self.pid)
            if self.pid_start is not None and start is not None and start != self.pid_start:
                return f"pid {self.pid} on {self.host} is now another process"
            return None
        if age_s > stale_after_s:
            limit = f"resume.lock_stale_after_s={stale_after_s:g}"
            return f"its heartbeat is {age_s:.0f} s old (> {limit})"
        return None


def read_holder(path: Path) -> LockHolder | None:
    """The holder a lock file names; None if there is no lock (or it is unreadable)."""
    try:
        fields = json.loads(path.read_text())
        return LockHolder(**{key: fields[key] for key in LockHolder.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """The run dir's lock: `acquire()` or a UserError naming the holder; `release()` at the end
    (also from `with`). The heartbeat runs while it is held."""

    def __init__(self, path: Path, stale_after_s: float = 3600.0) -> None:
        self.path = path
        self.stale_after_s = stale_after_s
        self.holder = LockHolder.me()
        self.taken_over: dict | None = None  # the stale holder replaced, with the reason
        self._held = False
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> RunLock:
        for _ in range(10):  # each pass either takes the lock or removes a stale one
            if self._create():
                self._held = True
                self._start_heartbeat()
                return self
            holder = read_holder(self.path)
            if holder is None:
                if not self.path.exists():
                    continue  # released meanwhile
                holder_age = self._age()
                if holder_age is not None and holder_age > 10:  # not a lock being written
                    self._take_over(self.path.read_bytes(), "the lock file is unreadable")
                    continue
                time.sleep(0.1)
                continue
            age = self._age()
            reason = holder.staleness(age if age is not None else 0.0, self.stale_after_s)
            if reason is None:
                raise UserError(
                    f"run dir '{self.path.parent}' is being written by {holder.describe()} "
                    f"({self.path.name}): one writer at a time; wait for it, or use another "
                    "hydra.run.dir"
                )
            self._take_over(self.path.read_bytes(), reason, holder)
        raise UserError(f"could not take the lock '{self.path}': other writers keep taking it")

    def release(self) -> None:
        if not self._held:
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if read_holder(self.path) == self.holder:  # never remove a lock another writer took
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._held = False

    def _create(self) -> bool:
        """Write our lock under a private name, then link it into place: True if we hold it."""
        content = json.dumps(asdict(self.holder), indent=2) + "\n"
        private = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        private.write_text(content)
        try:
            os.link(private, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: exclusive create, then write
            return self._create_exclusive(content)
        finally:
            private.unlink()

    def _create_exclusive(self, content: str) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as lock:
            lock.write(content)
        return True

    def _age(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def _take_over(self, seen: bytes, reason: str, holder: LockHolder | None = None) -> None:
        """Remove the stale lock we read (`seen`), never one another writer has just taken."""
        aside = self.path.with_name(f".{self.path.name}.stale.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another process removed it first
        if aside.read_bytes() != seen:  # we moved a fresh lock: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            aside.unlink()
            return
        aside.unlink()
        stale = asdict(holder) if holder is not None else None
        self.taken_over = {"holder": stale, "reason": reason}
        log.warning(
            "took over the lock of %s from %s: %s",
            self.path.parent,
            holder.describe() if holder is not None else "an unreadable lock file",
            reason,
        )

    def _start_heartbeat(self) -> None:
        interval = max(1.0, min(60.0, self.stale_after_s / 4))

        def beat() -> None:
            while not self._stop.wait(interval):
                with contextlib.suppress(OSError):
                    os.utime(self.path)

        self._stop.clear()
        self._heartbeat = threading.Thread(target=beat, name="run-lock-heartbeat", daemon=True)
        self._heartbeat.start()
