"""Entry-point wrapper: a user's mistake ends in one line on stderr and exit code 2; what a user
must know about a result that still goes ahead is one `warning:` line on stderr (`warn`).

Hydra prints composition errors over several lines with a hint about HYDRA_FULL_ERROR. We let
Hydra raise instead (HYDRA_FULL_ERROR=1, unless the user set it) and condense the errors a user
can cause (unknown option, unknown key, wrong type, bad override syntax, UserError) into one line.
Anything else is a bug and keeps its full traceback.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.errors import HydraException, MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from monolm.errors import RunFailed, UserError, did_you_mean

EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 1
F = TypeVar("F", bound=Callable[..., Any])


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines)


def _options_on_disk(group: str) -> list[str]:
    """Options of `group` in the entry point's conf/ tree (Hydra does not list them when an
    option selected in a list, e.g. task=[a,b], does not exist)."""
    conf = Path(sys.argv[0]).resolve().parent / "conf"
    return sorted(
        {p.stem for d in conf.glob(f"**/{group}") if d.is_dir() for p in d.glob("*.yaml")}
    )


def _missing_option(exc: MissingConfigException) -> str:
    missing = str(exc.missing_cfg_file or "")
    if not missing:
        quoted = re.search(r"Could not load '([^']+)'", str(exc))
        missing = quoted.group(1) if quoted else ""
    group, _, name = missing.rpartition("/")
    options = list(exc.options or []) or (_options_on_disk(group) if group else [])
    if options and name:
        return f"unknown {group or 'config'} option '{name}': {did_you_mean(name, options)}"
    return _one_line(str(exc).split("\n\n")[0])


def _omegaconf(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    message = str(exc).splitlines()[0]
    parent = getattr(exc, "parent_node", None)
    child_key = getattr(exc, "key", None)
    if "not in struct" in message or ("Key '" in message and "not in" in message):
        valid = list(parent.keys()) if parent is not None and hasattr(parent, "keys") else []
        hint = f": {did_you_mean(str(child_key), valid)}" if valid else ""
        return f"unknown config key '{key}'{hint}"
    return f"{message} (key: {key})" if key else message


def describe(exc: BaseException) -> str | None:
    """The one-line description of a user error, or None if `exc` is not one."""
    if isinstance(exc, UserError):
        return _one_line(str(exc))
    if isinstance(exc, MissingConfigException):
        return _missing_option(exc)
    if isinstance(exc, OmegaConfBaseException):
        return _omegaconf(exc)
    if isinstance(exc, HydraException):
        cause = exc.__cause__
        if isinstance(cause, OmegaConfBaseException | UserError):
            return describe(cause)
        return _one_line(str(exc))
    return None


def warn(message: str) -> None:
    """One line on stderr, `warning: <message>`. (Under Hydra, `log.warning` goes to stdout among
    the info lines, where a warning about the result itself is easily missed.)"""
    print(f"warning: {_one_line(message)}", file=sys.stderr, flush=True)


def _exit_with(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def user_errors_exit(task: F) -> F:
    """Wrap a Hydra task function: a UserError raised inside a job exits 2 with one line
    (caught here, before Hydra's job runner adds its own line about the failed job)."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except UserError as exc:
            _exit_with(_one_line(str(exc)))
        except RunFailed as exc:  # what failed and where; the traceback is in the run's log
            print(f"error: {_one_line(str(exc))}", file=sys.stderr)
            sys.exit(EXIT_RUN_FAILED)

    return wrapper  # type: ignore[return-value]


def run(main: Callable[[], object]) -> None:
    """Call a `@hydra.main` function; report user errors in one line and exit 2."""
    user_wants_traces = "HYDRA_FULL_ERROR" in os.environ
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except Exception as exc:
        message = None if user_wants_traces else describe(exc)
        if message is None:
            raise
        _exit_with(message)
