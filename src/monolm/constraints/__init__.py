"""Transforms of a built model between loading and training (see `base.ModelTransform`)."""

from monolm.constraints.registry import (
    build_constraint,
    constraint_names,
    register_constraint_configs,
    register_transform,
)

__all__ = [
    "build_constraint",
    "constraint_names",
    "register_constraint_configs",
    "register_transform",
]
