"""The records training writes into its run dir: `run.json` and the transform's own record."""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monolm.provenance import (
    device_description,
    now_utc,
    provenance,
    write_json,
    write_json_reserved,
)


class RunRecord:
    """`run.json`: what ran, where and when, and how the run got here: earlier segments' records
    are kept, each saying which checkpoint it continued from and which settings it changed.

    Every write leaves room (trailing whitespace) for the next one, so that a failure on a full
    disk is still recorded: in place, when a new file cannot be written.
    """

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
            "failure": None,
            "host": socket.gethostname(),
            "device": device_description(),
            "ran_with": None,
            "command": [sys.executable, *sys.argv],
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "start_time": now_utc(),
            "end_step": None,
            "end_time": None,
            "wall_time_s": None,
            "resumed_from": None,
            "previous_segments": previous,
        }
        self._started = datetime.now(UTC)

    @property
    def segments(self) -> list[dict[str, Any]]:
        """Every segment so far, this one last."""
        return [*self.payload["previous_segments"], self.payload]

    def write(self, **updates: Any) -> None:
        self.payload.update(updates)
        write_json_reserved(self.path, self.payload)

    def finish(self, status: str, failure: str | None = None, end_step: int | None = None) -> None:
        """The segment's end at optimizer step `end_step`: completed, stopped (by a signal,
        resumable) or failed (`failure` says what failed, in one line)."""
        wall = (datetime.now(UTC) - self._started).total_seconds()
        self.write(
            status=status,
            failure=failure[:FAILURE_CHARS] if failure else None,
            end_step=end_step,
            end_time=now_utc(),
            wall_time_s=round(wall, 3),
        )


FAILURE_CHARS = 1000  # a failure's line, within the room run.json keeps for it


def config_history(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For metrics.json: each segment's steps and the settings it changed (a resumed run did
    not run one config throughout)."""
    return [
        {
            "segment": segment.get("segment", number),
            "resumed_at_step": segment.get("resumed_at_step"),
            "changes": segment.get("changes") or {},
        }
        for number, segment in enumerate(segments, start=1)
    ]


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


def read_transform_records(layout: Any, transform: Any) -> dict[str, Any]:
    """Each part's record as training first wrote it (`initial`), by record name; a part whose
    file is missing or unreadable maps to {} (nothing to check against)."""
    records: dict[str, Any] = {}
    for part in transform.parts():
        if part.record_name is None:
            continue
        path = layout.transform_record(part.record_name)
        try:
            records[part.record_name] = json.loads(path.read_text()).get("initial") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            records[part.record_name] = {}
    return records
