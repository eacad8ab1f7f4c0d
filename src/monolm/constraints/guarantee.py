"""The guarantee record (`monotonicity.json`): what holds, measured on the actual tensors.

Per FFN sublayer `y = W2 act(W1 x + b1) + b2` the level is
- `proven`: every projection (W1, and W2) is constrained and its weights, as the forward pass uses
  them, are all >= 0; the activation is known non-decreasing; the FFN is not gated. Then y is
  coordinatewise non-decreasing in x: exact, not sampled.
- `nonneg_only`: all weights >= 0, but the activation is not monotone (GELU) or the FFN is gated
  (`act(W1_0 x) * (W1_1 x)`: the linear branch is signed), so nothing follows.
- `none`: some projection is unconstrained or has a negative weight.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from monolm.constraints.activations import is_monotone
from monolm.models.ffn import FFNSublayer, find_attention_outputs, find_ffn_sublayers

LEVELS = ("proven", "nonneg_only", "none")

END_TO_END = (
    "No end-to-end guarantee: layer norms, attention, residual mixing and the signed unembedding "
    "are not monotone, and tokens have no order. The claim is per sublayer: an FFN at level "
    "'proven' is coordinatewise non-decreasing in its (normalised) input; nothing else is."
)


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight the forward pass multiplies by: `layer.weight` (softplus(V) when parametrised),
    plus the update of every active, unmerged LoRA adapter peft wrapped around it."""
    weight = layer.weight.detach()
    if hasattr(layer, "get_delta_weight") and not getattr(layer, "merged", True):
        for adapter in layer.active_adapters:
            if adapter in getattr(layer, "lora_A", {}):
                weight = weight + layer.get_delta_weight(adapter).detach()
    return weight


def _weight_summary(layer: nn.Module, constrained: bool) -> dict[str, Any]:
    with torch.no_grad():
        weight = effective_weight(layer)
        return {
            "constrained": constrained,
            "min_weight": float(weight.min()),
            "negative_count": int((weight < 0).sum()),
            "numel": weight.numel(),
            "dtype": str(weight.dtype).removeprefix("torch."),
        }


def sublayer_level(
    projections: dict[str, dict[str, Any]], activation_monotone: bool, gated: bool
) -> tuple[str, str]:
    """(level, reason) for one FFN sublayer from its measured projections."""
    unconstrained = [name for name, p in projections.items() if not p["constrained"]]
    negative = [name for name, p in projections.items() if p["negative_count"]]
    if unconstrained:
        return "none", f"unconstrained projections: {', '.join(unconstrained)}"
    if negative:
        return "none", f"negative weights in: {', '.join(negative)}"
    if gated:
        return "nonneg_only", "gated FFN: act(W1_0 x) * (W1_1 x) is not monotone"
    if not activation_monotone:
        return "nonneg_only", "activation is not monotone"
    return "proven", "non-gated, monotone activation, all weights >= 0"


def ffn_gated(sublayer: FFNSublayer, layout: Any) -> bool:
    return bool(layout.gated) or len(sublayer.input_projections) > 1


def guarantee_record(model: nn.Module, layout: Any, constrained: set[str]) -> dict[str, Any]:
    """The record for `model`, whose FFNs `layout` describes; `constrained` holds the full names
    of the linear layers the constraint acts on (empty for an unconstrained model)."""
    sublayers = []
    for sub in find_ffn_sublayers(model, layout):
        projections = {
            child: _weight_summary(layer, f"{sub.name}.{child}" in constrained)
            for child, layer in {**sub.input_projections, **sub.output_projections}.items()
        }
        activation = getattr(sub.block, layout.activation)
        monotone, gated = is_monotone(activation), ffn_gated(sub, layout)
        level, reason = sublayer_level(projections, monotone, gated)
        sublayers.append(
            {
                "name": sub.name,
                "level": level,
                "reason": reason,
                "activation": type(activation).__name__,
                "activation_monotone": monotone,
                "gated": gated,
                "projections": projections,
            }
        )
    attention = [
        {"name": name, **_weight_summary(layer, name in constrained)}
        for name, layer in find_attention_outputs(model, layout).items()
        if name in constrained
    ]
    counts = {level: sum(s["level"] == level for s in sublayers) for level in LEVELS}
    weakest = next(level for level in reversed(LEVELS) if counts[level]) if sublayers else "none"
    return {
        "summary": {
            "sublayers": len(sublayers),
            **counts,
            "all_ffn_sublayers": weakest,
            "end_to_end": "none",
            "statement": END_TO_END,
        },
        "sublayers": sublayers,
        "attention_outputs": attention,
    }


def summary_line(record: dict[str, Any]) -> str:
    s = record["summary"]
    return (
        f"FFN monotonicity: {s['proven']} proven, {s['nonneg_only']} nonneg_only, {s['none']} none "
        f"of {s['sublayers']} sublayers; no end-to-end guarantee"
    )
