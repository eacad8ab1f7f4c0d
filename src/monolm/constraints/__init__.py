"""Transforms of a built model between loading and training (see `base.ModelTransform`)."""

from monolm.constraints.registry import (
    adapter_names,
    build_constraint,
    build_transform,
    constraint_names,
    register_adapter,
    register_constraint_configs,
    register_transform,
)

__all__ = [
    "adapter_names",
    "build_constraint",
    "build_transform",
    "constraint_names",
    "register_adapter",
    "register_constraint_configs",
    "register_transform",
]
