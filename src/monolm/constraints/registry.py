"""The options of conf/constraint/: each name's transform class and settings schema.

Each settings dataclass is stored in Hydra's ConfigStore as `schema/constraint/<name>`; the
option's YAML composes it first (`defaults: [/schema/constraint/<name>@_here_, _self_]`), so a
mistyped key or a value of the wrong type fails when the config is composed. `build_transform`
reads the same schema for configs that come from a run dir's `run.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from monolm.config.typed import typed_settings
from monolm.constraints.base import ModelTransform, NoConstraint, TransformSettings
from monolm.constraints.monotonic import MonotonicConstraint, MonotonicSettings
from monolm.errors import UserError, did_you_mean

SCHEMA_GROUP = "schema/constraint"


@dataclass(frozen=True)
class TransformKind:
    transform: type[ModelTransform]
    settings: type[TransformSettings]


_KINDS: dict[str, TransformKind] = {}


def register_transform(
    name: str, transform: type[ModelTransform], settings: type[TransformSettings]
) -> None:
    """Make `constraint=<name>` build `transform(settings)`; its YAML option composes
    `/schema/constraint/<name>`."""
    _KINDS[name] = TransformKind(transform, settings)
    ConfigStore.instance().store(group=SCHEMA_GROUP, name=name, node=settings)


def register_constraint_configs() -> None:
    """Store every registered option's schema in Hydra's ConfigStore (entry points call this;
    `register_transform` stores its own, so options registered later are covered too)."""
    for name, kind in _KINDS.items():
        ConfigStore.instance().store(group=SCHEMA_GROUP, name=name, node=kind.settings)


register_transform("none", NoConstraint, TransformSettings)
register_transform("monotonic", MonotonicConstraint, MonotonicSettings)


def constraint_names() -> list[str]:
    return sorted(_KINDS)


def transform_settings(cfg: Any) -> TransformSettings:
    """The typed settings of the option `cfg.name`, from a composed or a recorded config."""
    name = cfg.get("name") if cfg is not None else None
    if name not in _KINDS:
        raise UserError(f"unknown constraint '{name}': {did_you_mean(str(name), _KINDS)}")
    settings = typed_settings(_KINDS[name].settings, cfg, "constraint.")
    settings.check()
    return settings


def build_constraint(cfg: Any) -> ModelTransform:
    """The transform named by `cfg.name`, configured with its typed settings."""
    settings = transform_settings(cfg)
    return _KINDS[settings.name].transform(settings)
