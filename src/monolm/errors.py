"""Errors a user can cause, reported as one line naming the bad value and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input (config value, path, file); printed as a one-line message."""


def did_you_mean(value: str, valid: Iterable[str]) -> str:
    """A short hint listing the valid choices, closest match first when there is one."""
    valid = sorted(valid)
    close = difflib.get_close_matches(value, valid, n=1)
    listed = ", ".join(valid)
    if close:
        return f"did you mean '{close[0]}'? valid: {listed}"
    return f"valid: {listed}"


class RunFailed(Exception):
    """A run failed after it started (not the user's input): printed as one line saying what
    failed and where, with exit code 1; the traceback is in the run's log."""
