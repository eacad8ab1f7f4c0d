"""LoRA adapters (peft) over a possibly constrained model: the pieces the `adapter=lora` transform
is built from (issue 15, in progress).

`merge_adapters` is peft's `merge_and_unload` made correct on parametrised layers. peft's merge
adds the update into `base_layer.weight.data`; on a layer under `torch.nn.utils.parametrize`
that attribute is a freshly computed tensor (softplus(V)), so the update lands in a temporary
and the merged model silently equals the base model (peft 0.21, safe or unsafe merge alike).
Removing each base layer's parametrisation first, keeping its current value
(`leave_parametrized=True`), makes the weight a plain parameter the merge can add into.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize


def merge_adapters(model: nn.Module) -> nn.Module:
    """The model with every LoRA update merged into its base weights and the adapters removed;
    parametrised base layers become plain layers holding their current (effective) weight."""
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if base is not None and parametrize.is_parametrized(base, "weight"):
            parametrize.remove_parametrizations(base, "weight", leave_parametrized=True)
    return model.merge_and_unload()
