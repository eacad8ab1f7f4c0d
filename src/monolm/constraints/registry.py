"""Constraint names (the options of conf/constraint/) and how each is built from its config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from monolm.constraints.base import Constraint, NoConstraint
from monolm.constraints.monotonic import MonotonicConstraint, MonotonicSettings
from monolm.errors import UserError, did_you_mean


def _build_none(cfg: dict[str, Any]) -> Constraint:
    if cfg:
        raise UserError(f"constraint 'none' takes no settings, got {sorted(cfg)}")
    return NoConstraint()


def _build_monotonic(cfg: dict[str, Any]) -> Constraint:
    return MonotonicConstraint(MonotonicSettings.from_dict(cfg))


_BUILDERS: dict[str, Callable[[dict[str, Any]], Constraint]] = {
    "none": _build_none,
    "monotonic": _build_monotonic,
}


def constraint_names() -> list[str]:
    return sorted(_BUILDERS)


def build_constraint(cfg: Any) -> Constraint:
    """The constraint named by `cfg.name`, configured with the remaining keys."""
    settings = (
        OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    )
    name = settings.pop("name", None)
    if name not in _BUILDERS:
        raise UserError(f"unknown constraint '{name}': {did_you_mean(str(name), _BUILDERS)}")
    return _BUILDERS[name](settings)
