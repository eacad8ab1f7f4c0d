"""A failed training segment, told in one line; its traceback goes to the run's log file."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

from monolm.training.checkpoint_io import CheckpointWriteError

log = logging.getLogger(__name__)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, newest first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def describe_failure(exc: BaseException, step: int) -> str:
    """What failed, in one line: a checkpoint that could not be saved (anywhere in the chain:
    Lightning's teardown may raise again after it), else the first exception raised."""
    chain = _chain(exc)
    saving = next((e for e in chain if isinstance(e, CheckpointWriteError)), None)
    if saving is not None:
        return f"{saving} (at step {step}; earlier checkpoints are intact)"
    first = chain[-1]
    text = str(first).strip().splitlines()[0] if str(first).strip() else ""
    return f"{type(first).__name__}{': ' + text if text else ''} (at step {step})"


def log_traceback(exc: BaseException) -> Path | None:
    """Write the traceback to the log files (Hydra's `<run_dir>/train.log`), not the console;
    their path, or None (then the traceback goes to stderr, to be kept somewhere)."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if not files:
        traceback.print_exception(exc, file=sys.stderr)
        return None
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "training failed", (), (type(exc), exc, None)
    )
    record.exc_info = (type(exc), exc, exc.__traceback__)
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:  # on a full disk this write fails too: say nothing more about it than the one line
        for handler in files:
            handler.handle(record)
    finally:
        logging.raiseExceptions = raise_exceptions
    return Path(files[0].baseFilename)
