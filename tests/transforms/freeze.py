"""`constraint=freeze`: a transform that lives only in the tests, registered from outside src/.

It freezes the parameters of every module whose full name matches one of `modules` (glob
patterns over `model.named_modules()`), and records `frozen.json` in the run dir: the frozen
parameter names with the sum of |w| of each, at the start and at the end of training, so a reader
can check that they did not move.

Checkpoints hold the trainable tensors only (`checkpoint_state` drops the frozen ones, so loading
is not strict): resuming, evaluate and attack rebuild the model as training built it (the run's
seed) and the frozen tensors come back from that init.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from monolm.constraints import register_transform
from monolm.constraints.base import ModelTransform, TransformSettings
from monolm.errors import UserError


@dataclass
class FreezeSettings(TransformSettings):
    """The keys of tests/data/conf/constraint/freeze.yaml."""

    name: str = "freeze"
    modules: list[str] = field(default_factory=lambda: ["*.embed_in", "*.layers.0.*"])

    def check(self) -> None:
        if not self.modules:
            raise UserError("constraint.modules=[] freezes nothing: name at least one pattern")


class FreezeTransform(ModelTransform):
    name = "freeze"
    record_name = "frozen"
    strict_loading = False

    def __init__(self, settings: FreezeSettings) -> None:
        super().__init__(settings)
        self.settings: FreezeSettings = settings
        self.frozen: dict[str, nn.Parameter] = {}  # full parameter name -> the parameter

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        patterns = list(self.settings.modules)
        self.layers = {
            name: module
            for name, module in model.named_modules()
            if any(fnmatchcase(name, pattern) for pattern in patterns)
        }
        for name, module in self.layers.items():
            for parameter_name, parameter in module.named_parameters(prefix=name):
                self.frozen[parameter_name] = parameter
        if not self.frozen:
            raise UserError(
                f"constraint.modules={patterns} match no module with parameters in "
                f"{type(model).__name__}"
            )
        for parameter in self.frozen.values():
            parameter.requires_grad_(False)

    def checkpoint_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        left_out = {f"model.{name}" for name in self.frozen}
        return {key: value for key, value in state_dict.items() if key not in left_out}

    def report(
        self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, Any]:
        parameters = dict(model.named_parameters())
        return {
            "modules": list(self.settings.modules),
            "frozen": {
                name: float(parameters[name].detach().abs().double().sum())
                for name in sorted(self.frozen)
            },
            "trainable": sum(p.numel() for p in parameters.values() if p.requires_grad),
        }


register_transform("freeze", FreezeTransform, FreezeSettings)
