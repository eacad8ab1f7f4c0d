"""Locate the FFN sublayers a model config describes (the place constraints act on)."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from monolm.errors import UserError


@dataclass(frozen=True)
class FFNSublayer:
    """One feed-forward sublayer: its container and the projections W1 (inputs) and W2."""

    name: str
    block: nn.Module
    input_projections: dict[str, nn.Linear]
    output_projections: dict[str, nn.Linear]


def find_ffn_sublayers(model: nn.Module, layout: Any) -> list[FFNSublayer]:
    """Every module matching `layout.blocks`, in model order, with its named projections."""
    found = []
    for name, module in model.named_modules():
        if not any(fnmatchcase(name, pattern) for pattern in layout.blocks):
            continue
        children = dict(module.named_children())
        wanted = [*layout.input_projections, *layout.output_projections]
        missing = [child for child in wanted if child not in children]
        if missing:
            raise UserError(
                f"FFN block '{name}' has no {missing}; its children are {sorted(children)}"
            )
        found.append(
            FFNSublayer(
                name=name,
                block=module,
                input_projections={c: children[c] for c in layout.input_projections},
                output_projections={c: children[c] for c in layout.output_projections},
            )
        )
    if not found:
        raise UserError(f"no FFN blocks match {list(layout.blocks)} in {type(model).__name__}")
    return found


def find_attention_outputs(model: nn.Module, layout: Any) -> dict[str, nn.Module]:
    """Attention output projections matching `layout.attention_outputs`, by full name."""
    return {
        name: module
        for name, module in model.named_modules()
        if any(fnmatchcase(name, pattern) for pattern in layout.attention_outputs)
    }
