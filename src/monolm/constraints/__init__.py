"""Constraints act on a built model between loading and training (see `base.Constraint`)."""

from monolm.constraints.registry import build_constraint, constraint_names

__all__ = ["build_constraint", "constraint_names"]
