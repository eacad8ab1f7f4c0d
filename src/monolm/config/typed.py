"""Typed settings from a config node: the one conversion every registry uses."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from monolm.errors import UserError, did_you_mean

T = TypeVar("T")


def reject_unknown_keys(node: Any, schema: type, prefix: str) -> None:
    """`+key=value` overrides and recorded configs can carry keys the schema lacks: refuse them
    (a value that would be silently ignored), naming the closest valid key."""
    hints = typing.get_type_hints(schema)
    for key in node:
        if key not in hints:
            raise UserError(
                f"unknown config key '{prefix}{key}': {did_you_mean(str(key), list(hints))}"
            )
        if dataclasses.is_dataclass(hints[key]) and node[key] is not None:
            reject_unknown_keys(node[key], hints[key], f"{prefix}{key}.")


def typed_settings(schema: type[T], node: Any, prefix: str) -> T:
    """`node` (composed, or read from a record) as an instance of the dataclass `schema`; an
    unknown key or a value of the wrong type is a UserError naming `<prefix><key>`."""
    plain = node if isinstance(node, DictConfig) else OmegaConf.create(dict(node))
    reject_unknown_keys(plain, schema, prefix)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), plain))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
        raise UserError(f"{prefix}{key}: {str(exc).splitlines()[0]}") from exc


def at_least(prefix: str, settings: object, keys: tuple[str, ...], low: int) -> None:
    """UserError unless each `settings.<key>` is >= `low` (names it as `<prefix>.<key>`)."""
    for key in keys:
        value = getattr(settings, key)
        if value is not None and not value >= low:
            name = f"{prefix}.{key}" if prefix else key
            raise UserError(f"{name}={value} must be >= {low}")
