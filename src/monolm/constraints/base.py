"""The model-transform contract: everything training, evaluation, attacks and export know about
what a `constraint=` option does to a model. A new kind of arm is one subclass, one settings
dataclass, one `register_transform` call and one YAML file in conf/constraint/.

The pipeline calls, in order: `apply` once on the freshly built model (before a checkpoint is
restored into it, so parametrised parameter names match); `optimizer_groups` when the optimizer is
built; `after_optimizer_step` after every optimizer step; `cached_weights` around forward passes;
`checkpoint_state` on every checkpoint written; `report` for the run dir's record
(`<record_name>.json`) at the start and, with validation batches (its verification), at the end of
training; `check_exportable` and `export_state_dict` when a run is exported to a plain Hugging
Face directory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class TransformSettings:
    """The keys of a conf/constraint/<option>.yaml; subclasses add their own (typed) keys."""

    name: str = "none"

    def check(self) -> None:
        """Raise UserError naming a value the schema's types cannot rule out (a range, a choice)."""


class ModelTransform:
    """A transformation of a built model plus what training must do to keep it in force."""

    name: ClassVar[str] = "none"
    # The transform's record in the run dir (`<record_name>.json`); None: it writes none.
    record_name: ClassVar[str | None] = None
    # False: a checkpoint holds only part of the state dict (`checkpoint_state`). Resuming and
    # every later stage then rebuild the model exactly as training built it (the run's seed, its
    # pretrained weights) and load the checkpoint over it, so the left-out tensors come back.
    strict_loading: ClassVar[bool] = True

    def __init__(self, settings: TransformSettings) -> None:
        self.settings = settings
        # Full module name -> the layer the transform changed (filled in by `apply`).
        self.layers: dict[str, nn.Module] = {}

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        """Modify `model` in place."""

    def optimizer_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        """Groups (`params`, `name`, `weight_decay`, optional `lr`) this transform owns;
        `weight_decay` is the run's setting for ordinary matrices."""
        return []

    def after_optimizer_step(self, model: nn.Module) -> None:
        """Restore the transform's invariant after the optimizer moved the weights."""

    def cached_weights(self) -> AbstractContextManager[None]:
        """A context in which each derived weight (W = f(V)) is computed once and reused.

        Wrap one forward pass (plus at most one backward through it: a training step), or
        forward passes with no backward through the weights (validation, generation, attacks).
        Never two backward passes through weights computed inside one context.
        """
        return contextlib.nullcontext()

    def checkpoint_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The part of the LightningModule's state dict a checkpoint must hold (all of it)."""
        return state_dict

    def report(
        self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, Any] | None:
        """The JSON-ready record of what the transform guarantees on the actual tensors; with
        `batches` (validation data) it includes the transform's empirical verification. None:
        nothing to record."""
        return None

    def release(self, layers: dict[str, str]) -> None:
        """Another transform applied after this one took `layers` (full name -> why) out of this
        transform's guarantee (a LoRA adapter outside the constraint): the record says so."""

    def check_rebuilt(self, records: dict[str, Any]) -> None:
        """Raise UserError if the model just rebuilt is not the one the run's records (record
        name -> the record training wrote) describe (an adapter's base model changed)."""

    def parts(self) -> list[ModelTransform]:
        """The transforms this one is made of, in the order applied (itself, if not composed)."""
        return [self]

    def check_exportable(self) -> None:
        """Raise UserError if a plain Hugging Face model cannot reproduce the transformed one."""

    def export_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The state dict of a plain (untransformed) model of the same class that computes what
        `model` computes."""
        return materialised_state_dict(model)


def materialised_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict with every parametrised tensor replaced by its value (`layer.weight`,
    under the plain name), as a plain model of the same class holds it."""
    plain: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if ".parametrizations." not in key:
                plain[key] = value
                continue
            owner, rest = key.split(".parametrizations.", 1)
            tensor_name = rest.split(".", 1)[0]
            plain[f"{owner}.{tensor_name}"] = getattr(model.get_submodule(owner), tensor_name)
    return {key: value.detach().clone() for key, value in plain.items()}


class NoConstraint(ModelTransform):
    """The unconstrained baseline arm."""

    name = "none"

    def __init__(self, settings: TransformSettings | None = None) -> None:
        super().__init__(settings or TransformSettings())
