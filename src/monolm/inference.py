"""Where the evaluate and attack stages run, at which precision, and the one context every
forward pass of theirs runs in.

`inference_context` is the only place that sets inference mode, eval mode, a transform's cached
weights and autocast for scoring, generation and attacks. Code below it (metrics, generation)
opens `inference_context(model)` with no autocast of its own, so it runs at whatever precision
the caller chose: under evaluate's bf16 autocast the FFNs really run in bf16.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from monolm.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "32", "bf16")


@dataclass(frozen=True)
class Placement:
    """A stage's `device=` and `precision=` settings, checked."""

    device: str = "auto"
    precision: str = "auto"

    def check(self) -> None:
        for key, valid in (("device", DEVICES), ("precision", PRECISIONS)):
            value = str(getattr(self, key))
            if value not in valid:
                raise UserError(f"{key}={value} is not one of {', '.join(valid)}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("device=cuda but no CUDA device is visible")

    @property
    def torch_device(self) -> torch.device:
        cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        return torch.device("cuda" if cuda else "cpu")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 autocast on GPU unless precision=32; fp32 on CPU unless precision=bf16."""
        cuda = self.torch_device.type == "cuda"
        bf16 = self.precision == "bf16" or (self.precision == "auto" and cuda)
        return torch.bfloat16 if bf16 else None


def placement_of(cfg: object) -> Placement:
    """The Placement of an evaluate or attack config (`device=`, `precision=`)."""
    placement = Placement(str(cfg.device), str(cfg.precision))
    placement.check()
    return placement


@contextlib.contextmanager
def inference_context(
    model: nn.Module,
    cached_weights: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    autocast_dtype: torch.dtype | None = None,
    grad: bool = False,
) -> Iterator[None]:
    """Eval mode (restored afterwards, module by module), inference mode (`grad=False`), the
    transform's cached weights, and autocast when `autocast_dtype` is given. With no
    `autocast_dtype` an enclosing autocast stays in force: precision belongs to the caller.

    `grad=True` (attack gradients w.r.t. input embeddings) keeps autograd on: then wrap one
    forward and its one backward per context (a cached weight must not serve two backwards).
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    grad_mode = torch.enable_grad() if grad else torch.inference_mode()
    try:
        with grad_mode, cached_weights(), autocast:
            yield
    finally:
        for module, training in modes.items():
            module.training = training
