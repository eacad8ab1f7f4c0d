"""A chain of model transforms seen as one: `constraint=` first, then `adapter=`.

Training, evaluation, attacks and export hold one `ModelTransform`; a run with an adapter holds
this chain, which forwards every call to its parts in order (the contract in `base.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from monolm.constraints.base import ModelTransform, TransformSettings


class ComposedTransform(ModelTransform):
    """`parts[0]`, then `parts[1]`, ...; named after the first (the constraint: the arm)."""

    def __init__(self, parts: list[ModelTransform]) -> None:
        super().__init__(TransformSettings(name=parts[0].name))
        self._parts = parts
        self.name = parts[0].name  # type: ignore[misc]  # an instance's, not the class's
        self.record_name = parts[0].record_name  # type: ignore[misc]
        self.strict_loading = all(p.strict_loading for p in parts)  # type: ignore[misc]

    @property
    def layers(self) -> dict[str, nn.Module]:  # type: ignore[override]
        """The layers the first part (the constraint) holds: what `constrained_layers` means."""
        return self._parts[0].layers

    @layers.setter
    def layers(self, value: dict[str, nn.Module]) -> None:
        pass  # the base class's __init__ sets it; the parts own their layers

    def parts(self) -> list[ModelTransform]:
        return list(self._parts)

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        for part in self._parts:
            part.apply(model, model_cfg)

    def optimizer_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        groups = [g for p in self._parts for g in p.optimizer_groups(model, weight_decay)]
        for group in groups:  # a frozen tensor (the base under an adapter) is not optimised
            group["params"] = [t for t in group["params"] if t.requires_grad]
        return [g for g in groups if g["params"]]

    def after_optimizer_step(self, model: nn.Module) -> None:
        for part in self._parts:
            part.after_optimizer_step(model)

    @contextlib.contextmanager
    def cached_weights(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for part in self._parts:
                stack.enter_context(part.cached_weights())
            yield

    def checkpoint_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for part in self._parts:
            state_dict = part.checkpoint_state(state_dict)
        return state_dict

    def report(
        self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, Any] | None:
        """The first part's record (the guarantee); the others are written by their own names
        (`parts()`)."""
        return self._parts[0].report(model, batches)

    def release(self, layers: dict[str, str]) -> None:
        self._parts[0].release(layers)

    def check_rebuilt(self, records: dict[str, Any]) -> None:
        for part in self._parts:
            part.check_rebuilt(records)

    def check_exportable(self) -> None:
        for part in self._parts:
            part.check_exportable()

    def export_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The last part's: an adapter's export merges what every part did."""
        return self._parts[-1].export_state_dict(model)
