"""The contract a constraint fulfils; the training code knows nothing else about constraints."""

from __future__ import annotations

from typing import Any

from torch import nn


class Constraint:
    """A transformation of a built model plus what training must do to keep it in force.

    The pipeline calls, in order: `apply` once on the freshly built model (before a checkpoint is
    restored into it, so parametrised parameter names match); `optimizer_groups` when the
    optimizer is built, to claim parameters for groups with their own hyper-parameters;
    `after_optimizer_step` after every optimizer step (e.g. projection onto the feasible set);
    `report` for the run directory's guarantee record (None: nothing to record).
    """

    name: str = "base"

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        """Modify `model` in place."""

    def optimizer_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Groups (`params`, `name`, optional `lr`, `weight_decay`) this constraint owns."""
        return []

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Restore the constraint after the optimizer moved the weights."""

    def report(self, model: nn.Module) -> dict[str, Any] | None:
        """A JSON-ready description of what the constraint guarantees on the actual tensors."""
        return None


class NoConstraint(Constraint):
    """The unconstrained baseline arm."""

    name = "none"
