"""Which FFN activations are non-decreasing, and monotone replacements for those that are not.

Monotonicity is decided by type against a fixed list of activations known to be non-decreasing
everywhere; anything else (GELU, SiLU, Mish, an unknown module) counts as not monotone. Sampling an
activation cannot prove it monotone, so there is no numeric fallback.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import activations as hf

# GELU's minimum is at x = -0.7518 (value -0.1700). Clamping just to its right keeps the function
# constant below the threshold and strictly increasing above it, with gelu'(-0.75) = 8e-4 > 0, so
# rounding cannot turn the derivative negative at the kink.
MONOTONE_GELU_THRESHOLD = -0.75


class MonotoneGELU(nn.Module):
    """GELU restricted to its increasing branch: gelu(max(x, -0.75)).

    Equal to GELU for x >= -0.75 (most of the mass of typical pre-activations), constant below.
    Has no Hugging Face config name, so a model using it cannot be exported to a plain HF
    directory; use `relu` where the export matters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x.clamp(min=MONOTONE_GELU_THRESHOLD))


_MONOTONE_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Softplus,
    nn.Identity,
    hf.LinearActivation,
    hf.ReLUSquaredActivation,
    hf.LaplaceActivation,
    hf.SqrtSoftplusActivation,
    MonotoneGELU,
)

# `activation` option -> (module factory, Hugging Face config name or None if there is none).
REPLACEMENTS: dict[str, tuple[type[nn.Module], str | None]] = {
    "relu": (nn.ReLU, "relu"),
    "monotone_gelu": (MonotoneGELU, None),
}
ACTIVATION_OPTIONS = ("keep", *REPLACEMENTS)


def is_monotone(activation: nn.Module) -> bool:
    """True only for activations known to be non-decreasing everywhere."""
    if isinstance(activation, nn.LeakyReLU):
        return activation.negative_slope >= 0
    return isinstance(activation, _MONOTONE_TYPES)


def set_config_activation(config: object, name: str, gated: bool) -> None:
    """Write activation `name` into a Hugging Face config, so a saved config rebuilds it."""
    model_type = getattr(config, "model_type", None)
    if model_type in ("gpt_neox", "llama"):
        config.hidden_act = name
    elif model_type in ("t5", "mt5", "umt5"):
        config.feed_forward_proj = f"gated-{name}" if gated else name
        config.dense_act_fn = name
    else:
        raise ValueError(f"do not know where {model_type} configs store the FFN activation")
