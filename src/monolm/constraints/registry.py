"""Constraint names (the options of conf/constraint/) and how each is built from its config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from monolm.constraints.base import Constraint, NoConstraint
from monolm.errors import UserError, did_you_mean


def _build_none(cfg: dict[str, Any]) -> Constraint:
    if cfg:
        raise UserError(f"constraint 'none' takes no settings, got {sorted(cfg)}")
    return NoConstraint()


_BUILDERS: dict[str, Callable[[dict[str, Any]], Constraint]] = {"none": _build_none}


def constraint_names() -> list[str]:
    return sorted(_BUILDERS)


def build_constraint(cfg: Any) -> Constraint:
    """The constraint named by `cfg.name`, configured with the remaining keys."""
    settings = dict(cfg)
    name = settings.pop("name", None)
    if name not in _BUILDERS:
        raise UserError(f"unknown constraint '{name}': {did_you_mean(str(name), _BUILDERS)}")
    return _BUILDERS[name](settings)
