"""The records training writes into its run dir: `run.json` and the transform's own record."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monolm.provenance import device_description, now_utc, provenance, write_json


class RunRecord:
    """`run.json`: what ran, where and when. A resumed run keeps earlier segments' records."""

    def __init__(self, path: Path, config: dict[str, Any], seed: int) -> None:
        self.path = path
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


class TransformRecord:
    """The transform's record (e.g. `monotonicity.json`): its report at the start of training
    (kept across resumed segments) and after it, with the verification where it has one."""

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
