"""`adapter=lora`: LoRA adapters (peft) over a possibly constrained model.

peft does the LoRA work on every targeted layer the constraint does not hold. A targeted layer
the constraint does hold breaks its guarantee under peft (W + BA goes negative), so by default it
is released from the constraint's record (level `none`); with `adapter.inside_constraint=true`
the adapter moves inside the parametrisation instead, W = f(V0 + scale * B A) with V0 frozen and
f the constraint's map (softplus by default), and the guarantee holds.

The base model is frozen; the checkpoint holds only the trainable tensors (and `modules_to_save`),
the record (`adapter.json`) the base model's id, revision and a sha256 of its frozen weights,
checked whenever the model is rebuilt (resume, evaluate, attack, export).

`merge_adapters` is peft's `merge_and_unload` made correct on parametrised layers. peft's merge
adds the update into `base_layer.weight.data`; on a layer under `torch.nn.utils.parametrize`
that attribute is a freshly computed tensor (softplus(V)), so the update lands in a temporary
and the merged model silently equals the base model (peft 0.21, safe or unsafe merge alike).
Removing each base layer's parametrisation first, keeping its current value
(`leave_parametrized=True`), makes the weight a plain parameter the merge can add into.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from monolm.constraints.base import ModelTransform, TransformSettings, materialised_state_dict
from monolm.constraints.guarantee import effective_weight
from monolm.errors import UserError

log = logging.getLogger(__name__)

ALL_LINEAR = "all-linear"
_PREFIX = "model."  # the LightningModule's attribute holding the model (checkpoint keys)


@dataclass
class LoraSettings(TransformSettings):
    """The keys of conf/adapter/lora.yaml (see the comments there)."""

    name: str = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Any = field(default_factory=lambda: ALL_LINEAR)  # list of names, all-linear
    modules_to_save: list[str] = field(default_factory=list)
    inside_constraint: bool = False

    def check(self) -> None:
        if not self.r >= 1:
            raise UserError(f"adapter.r={self.r} must be >= 1")
        if not self.alpha > 0:
            raise UserError(f"adapter.alpha={self.alpha} must be > 0")
        if not 0 <= self.dropout < 1:
            raise UserError(f"adapter.dropout={self.dropout} must be in [0, 1)")
        targets = self.target_modules
        if isinstance(targets, str):
            if targets != ALL_LINEAR:
                raise UserError(
                    f"adapter.target_modules='{targets}': give a list of module names "
                    f"(e.g. [q_proj,v_proj]) or '{ALL_LINEAR}'"
                )
        elif not targets or not all(isinstance(t, str) and t for t in targets):
            raise UserError(
                f"adapter.target_modules={targets}: give a non-empty list of module names or "
                f"'{ALL_LINEAR}'"
            )

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


class LowRankShift(nn.Module):
    """The first map of a parametrisation chain V -> V + scale * B A (then the constraint's map):
    LoRA inside the constraint. B starts at zero, A as peft initialises it (Kaiming uniform), so
    training starts from the constrained base model exactly."""

    def __init__(self, shape: torch.Size, r: int, scaling: float) -> None:
        super().__init__()
        out_features, in_features = shape
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = scaling

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw + self.scaling * (self.lora_B @ self.lora_A)

    def extra_repr(self) -> str:
        return f"r={self.lora_A.shape[0]}, scaling={self.scaling}"


def _matches(name: str, targets: Any, module: nn.Module) -> bool:
    """peft's rule for a list of names: the module's name ends with one of them."""
    if not isinstance(module, nn.Linear):
        return False
    if targets == ALL_LINEAR:
        return True
    return any(name == t or name.endswith(f".{t}") for t in targets)


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every tensor of the state dict."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def merge_adapters(model: nn.Module) -> nn.Module:
    """The model with every LoRA update merged into its base weights and the adapters removed;
    parametrised base layers become plain layers holding their current (effective) weight."""
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if base is not None and parametrize.is_parametrized(base, "weight"):
            parametrize.remove_parametrizations(base, "weight", leave_parametrized=True)
    return model.merge_and_unload()


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What `merge_adapters(model).state_dict()` holds (weights materialised), without merging."""
    state = materialised_state_dict(model)
    with torch.no_grad():
        for name, module in model.named_modules():
            if not (hasattr(module, "base_layer") and hasattr(module, "get_delta_weight")):
                continue
            del state[f"{name}.base_layer.weight"]
            state[f"{name}.weight"] = effective_weight(module)  # the base plus every update
            for key in [k for k in state if k.startswith(f"{name}.")]:
                if ".lora_" in key:
                    del state[key]
                elif key.startswith(f"{name}.base_layer."):
                    state[f"{name}.{key.removeprefix(f'{name}.base_layer.')}"] = state.pop(key)
    return state


class LoraAdapter(ModelTransform):
    """LoRA on `target_modules` of the (possibly constrained) model; see the module docstring."""

    name = "lora"
    record_name: ClassVar[str | None] = "adapter"
    strict_loading = False

    def __init__(self, settings: LoraSettings) -> None:
        super().__init__(settings)
        self.settings: LoraSettings = settings
        self.constraint: ModelTransform | None = None  # the transform applied before this one
        self.tuner: Any = None  # peft's LoraModel over the model (None: no layer left to peft)
        self.inside: dict[str, nn.Module] = {}  # constrained layers with the adapter inside
        self.released: dict[str, str] = {}  # constrained layers peft wraps: guarantee dropped
        self.trainable: set[str] = set()  # checkpoint keys (model.<name>) of trainable tensors
        self.base: dict[str, Any] = {}

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        settings = self.settings
        constrained = dict(self.constraint.layers) if self.constraint is not None else {}
        output_layer = (
            model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        )
        targets = {
            name: module
            for name, module in model.named_modules()
            if name
            and _matches(name, settings.target_modules, module)
            and not (settings.target_modules == ALL_LINEAR and module is output_layer)
        }
        if not targets:
            raise UserError(
                f"adapter.target_modules={settings.target_modules} matches no linear layer of "
                f"model '{model_cfg.name}'"
            )
        self.base = {
            "model": model_cfg.name,
            "name_or_path": model_cfg.name_or_path,
            "revision": model_cfg.revision,
            "pretrained": bool(model_cfg.pretrained and model_cfg.architecture is None),
            "weights_sha256": weights_sha256(model),
        }
        model.requires_grad_(False)
        inside = {
            n: m for n, m in targets.items() if n in constrained and settings.inside_constraint
        }
        for_peft = [n for n in targets if n not in inside]
        if for_peft:
            self.tuner = self._inject_peft(model, for_peft)
        for name, layer in inside.items():
            self._put_inside(name, layer)
        self.inside = inside
        self.released = {
            n: "LoRA adapter outside the constraint (W + BA can go negative)"
            for n in for_peft
            if n in constrained
        }
        if self.released and self.constraint is not None:
            self.constraint.release(self.released)
        for name, module in model.named_modules():
            if name and any(name == s or name.endswith(f".{s}") for s in settings.modules_to_save):
                module.requires_grad_(True)
        self.layers = {n: model.get_submodule(n) for n in targets}
        self.trainable = {f"{_PREFIX}{n}" for n, p in model.named_parameters() if p.requires_grad}
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info(
            "LoRA r=%d on %d layers (%d inside the constraint, %d released from it): %d of %d "
            "parameters trainable (%.2f%%)",
            settings.r,
            len(targets),
            len(inside),
            len(self.released),
            trained,
            total,
            100 * trained / max(1, total),
        )

    def _inject_peft(self, model: nn.Module, names: list[str]) -> Any:
        from peft import LoraConfig
        from peft.tuners.lora import LoraModel

        config = LoraConfig(
            r=self.settings.r,
            lora_alpha=self.settings.alpha,
            lora_dropout=self.settings.dropout,
            target_modules=names,  # full names: exactly the layers chosen here
            bias="none",
        )
        return LoraModel(model, config, "default")

    def _put_inside(self, name: str, layer: nn.Module) -> None:
        """Rebuild the layer's chain as V0 -> V0 + scale B A -> f (f: its constraint map)."""
        if not parametrize.is_parametrized(layer, "weight"):
            raise UserError(
                f"adapter.inside_constraint=true needs a parametrised constraint, but '{name}' is "
                "projected (constraint.parametrization=project): use softplus, exp or square"
            )
        maps = list(layer.parametrizations.weight)
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        shift = LowRankShift(layer.weight.shape, self.settings.r, self.settings.scaling)
        parametrize.register_parametrization(layer, "weight", shift, unsafe=True)
        for mapping in maps:
            parametrize.register_parametrization(layer, "weight", mapping, unsafe=True)
        layer.parametrizations.weight.original.requires_grad_(False)

    def checkpoint_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in state_dict.items() if k in self.trainable}

    def export_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The merged model's plain state dict, computed without touching `model`: every
        parametrised weight at its value (inside the constraint: f(V0 + BA)), every peft layer's
        weight plus its update (peft's `get_delta_weight`), the adapters' own tensors dropped.
        (Not a merge of a deep copy: a parametrised module's class is shared with its copies, and
        removing the copy's parametrisation would remove the original's.)"""
        return merged_state_dict(model)

    def report(self, model: nn.Module, batches: Any = None) -> dict[str, Any]:
        return {
            "adapter": {**asdict(self.settings), "scaling": self.settings.scaling},
            "base_model": self.base,
            "layers": sorted(self.layers),
            "inside_constraint": sorted(self.inside),
            "released_from_constraint": self.released,
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_parameters": sum(p.numel() for p in model.parameters()),
        }

    def check_rebuilt(self, records: dict[str, Any]) -> None:
        recorded = (records.get(self.record_name) or {}).get("base_model", {})
        sha = recorded.get("weights_sha256")
        if sha is not None and sha != self.base["weights_sha256"]:
            raise UserError(
                f"the base model rebuilt for this adapter run differs from the one it was trained "
                f"on (weights sha256 {self.base['weights_sha256'][:12]}.. vs recorded "
                f"{sha[:12]}.. for '{recorded.get('name_or_path') or recorded.get('model')}' "
                f"revision {recorded.get('revision')}): pin model.revision to the recorded one"
            )
