"""The contract a constraint fulfils; the training code knows nothing else about constraints."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn


class Constraint:
    """A transformation of a built model plus what training must do to keep it in force.

    The pipeline calls, in order: `apply` once on the freshly built model (before a checkpoint is
    restored into it, so parametrised parameter names match); `optimizer_groups` when the
    optimizer is built, to claim parameters for groups with their own hyper-parameters;
    `after_optimizer_step` after every optimizer step (e.g. projection onto the feasible set);
    `cached_weights` around forward passes, to compute derived weights once per context;
    `report` for the run directory's guarantee record (None: nothing to record).
    """

    name: str = "base"

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        """Modify `model` in place."""

    def optimizer_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Groups (`params`, `name`, `weight_decay`, optional `lr`) this constraint owns;
        `weight_decay` is the run's setting for ordinary matrices."""
        return []

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Restore the constraint after the optimizer moved the weights."""

    def cached_weights(self) -> AbstractContextManager[None]:
        """A context in which each derived weight (W = f(V)) is computed once and reused.

        Wrap one forward pass (plus at most one backward through it: a training step), or
        forward passes with no backward through the weights (validation, generation, attacks).
        Never two backward passes through weights computed inside one context.
        """
        return contextlib.nullcontext()

    def report(
        self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, Any] | None:
        """A JSON-ready description of what the constraint guarantees on the actual tensors;
        with `batches` (validation data) it also includes an empirical verification."""
        return None


class NoConstraint(Constraint):
    """The unconstrained baseline arm."""

    name = "none"
