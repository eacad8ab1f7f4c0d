"""Where the evaluate and attack stages run, and at which precision (`device=`, `precision=`)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from monolm.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "32", "bf16")


def check_device_settings(cfg: DictConfig) -> None:
    for key, valid in (("device", DEVICES), ("precision", PRECISIONS)):
        if str(cfg[key]) not in valid:
            raise UserError(f"{key}={cfg[key]} is not one of {', '.join(valid)}")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible")


def device_and_autocast(cfg: DictConfig) -> tuple[torch.device, torch.dtype | None]:
    """The device, and bf16 autocast on GPU unless precision=32 (fp32 everywhere on CPU)."""
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and cuda)
    return device, torch.bfloat16 if bf16 else None
