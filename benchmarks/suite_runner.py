"""Run one function in a forked child, bounded in time, its output to a log, its result back.

Forking after the heavy imports (torch, transformers, lightning) spares every part the 5-15 s of
importing them again, and a child that dies (CUDA out of memory, a segfault, a hang killed at its
bound) takes nothing else with it. The parent must not initialise CUDA before forking (a forked
child cannot use a CUDA context its parent made): the suite checks it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PartSkipped(Exception):
    """A part that cannot run here, and says why (e.g. FSDP on a CPU)."""


@dataclass
class Outcome:
    status: str  # ok | failed | timed_out | skipped
    wall_s: float
    result: Any = None
    reason: str | None = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _child(fn: Callable[[], Any], result_path: str, log_path: str | None, group: bool) -> None:
    if group:
        os.setpgrp()  # the parent kills the whole group at the bound (train.py workers too)
    if log_path:
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        # Python's own streams too (a harness may have replaced them with objects of its own)
        sys.stdout = open(1, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="replace")  # noqa: SIM115
    try:
        payload = {"status": "ok", "result": fn()}
    except PartSkipped as exc:
        payload = {"status": "skipped", "reason": str(exc)}
    except BaseException as exc:  # a part's failure is recorded, never propagated
        traceback.print_exc()
        payload = {"status": "failed", "reason": _first_line(exc)}
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, default=str)
    sys.stdout.flush()
    sys.stderr.flush()


def _kill(process: multiprocessing.Process, group: bool) -> None:
    try:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.join()


def run_forked(
    fn: Callable[[], Any], bound_s: float, log_path: Path | None = None, group: bool = True
) -> Outcome:
    """`fn()` in a forked child killed after `bound_s` seconds; its JSON-able return value.
    `group`: the child leads its own process group (killed whole); nested runs share their
    parent's, so killing the outer group kills them too."""
    handle, result_path = tempfile.mkstemp(suffix=".json", prefix="suite-part-")
    os.close(handle)
    os.unlink(result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    context = multiprocessing.get_context("fork")
    process = context.Process(
        target=_child, args=(fn, result_path, str(log_path) if log_path else None, group)
    )
    start = time.monotonic()
    process.start()
    process.join(bound_s)
    if process.is_alive():
        _kill(process, group)
        wall = time.monotonic() - start
        return Outcome("timed_out", wall, reason=f"ran past its {bound_s:.0f} s bound: killed")
    wall = time.monotonic() - start
    try:
        with open(result_path, encoding="utf-8") as handle:
            payload = json.load(handle)
        os.unlink(result_path)
    except (OSError, ValueError):
        code = process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return Outcome("failed", wall, reason=f"ended before reporting ({how})")
    return Outcome(payload["status"], wall, payload.get("result"), payload.get("reason"))
