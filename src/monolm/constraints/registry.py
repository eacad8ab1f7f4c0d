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
from monolm.constraints.compose import ComposedTransform
from monolm.constraints.lora import LoraAdapter, LoraSettings
from monolm.constraints.monotonic import MonotonicConstraint, MonotonicSettings
from monolm.errors import UserError, did_you_mean

SCHEMA_GROUP = "schema/constraint"
ADAPTER_SCHEMA_GROUP = "schema/adapter"


@dataclass(frozen=True)
class TransformKind:
    transform: type[ModelTransform]
    settings: type[TransformSettings]


_KINDS: dict[str, TransformKind] = {}
_ADAPTERS: dict[str, TransformKind] = {}


def register_transform(
    name: str, transform: type[ModelTransform], settings: type[TransformSettings]
) -> None:
    """Make `constraint=<name>` build `transform(settings)`; its YAML option composes
    `/schema/constraint/<name>`."""
    _KINDS[name] = TransformKind(transform, settings)
    ConfigStore.instance().store(group=SCHEMA_GROUP, name=name, node=settings)


def register_adapter(
    name: str, transform: type[ModelTransform], settings: type[TransformSettings]
) -> None:
    """Make `adapter=<name>` add `transform(settings)` after the constraint; its YAML option
    composes `/schema/adapter/<name>`."""
    _ADAPTERS[name] = TransformKind(transform, settings)
    ConfigStore.instance().store(group=ADAPTER_SCHEMA_GROUP, name=name, node=settings)


def register_constraint_configs() -> None:
    """Store every registered option's schema in Hydra's ConfigStore (entry points call this;
    `register_transform` stores its own, so options registered later are covered too)."""
    for name, kind in _KINDS.items():
        ConfigStore.instance().store(group=SCHEMA_GROUP, name=name, node=kind.settings)
    for name, kind in _ADAPTERS.items():
        ConfigStore.instance().store(group=ADAPTER_SCHEMA_GROUP, name=name, node=kind.settings)


register_transform("none", NoConstraint, TransformSettings)
register_transform("monotonic", MonotonicConstraint, MonotonicSettings)
register_adapter("none", NoConstraint, TransformSettings)
register_adapter("lora", LoraAdapter, LoraSettings)


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


def adapter_names() -> list[str]:
    return sorted(_ADAPTERS)


def adapter_settings(cfg: Any) -> TransformSettings:
    """The typed settings of `adapter=<cfg.name>`; a config without one (a run recorded before
    adapters existed) has none."""
    name = cfg.get("name") if cfg is not None else "none"
    if name not in _ADAPTERS:
        raise UserError(f"unknown adapter '{name}': {did_you_mean(str(name), _ADAPTERS)}")
    settings = typed_settings(_ADAPTERS[name].settings, cfg or {"name": "none"}, "adapter.")
    settings.check()
    return settings


def build_transform(constraint_cfg: Any, adapter_cfg: Any = None) -> ModelTransform:
    """What a run does to its model: the constraint, then the adapter when there is one (a
    `ComposedTransform`); the constraint alone otherwise."""
    constraint = build_constraint(constraint_cfg)
    settings = adapter_settings(adapter_cfg)
    if settings.name == "none":
        return constraint
    adapter = _ADAPTERS[settings.name].transform(settings)
    adapter.constraint = constraint
    return ComposedTransform([constraint, adapter])
