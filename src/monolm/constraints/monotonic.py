"""`constraint=monotonic`: non-negative weights on the FFN projections.

See docs/science.md, sections 1-2.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from monolm.constraints.activations import ACTIVATION_OPTIONS, REPLACEMENTS, set_config_activation
from monolm.constraints.base import ModelTransform, TransformSettings
from monolm.constraints.guarantee import END_TO_END, guarantee_record, summary_line
from monolm.constraints.parametrizations import PARAMETRIZATIONS, build_parametrization
from monolm.constraints.verify import VerifySettings, verify_ffn_monotonicity
from monolm.errors import UserError, did_you_mean
from monolm.models.ffn import find_attention_outputs, find_ffn_sublayers

log = logging.getLogger(__name__)

SCOPES = ("mlp_in", "mlp_both", "mlp_both_attn_out")
INITS = ("abs", "clamp")


@dataclass
class MonotonicSettings(TransformSettings):
    """The keys of conf/constraint/monotonic.yaml (see the comments there)."""

    name: str = "monotonic"
    parametrization: str = "softplus"
    beta: float = 1.0
    init: str = "abs"
    init_eps: float = 1e-6
    scope: str = "mlp_both"
    activation: str = "keep"
    weight_decay_on_constrained: bool = False
    lr: float | None = None
    verify: VerifySettings = field(default_factory=VerifySettings)

    def check(self) -> None:
        for key, valid in (
            ("parametrization", PARAMETRIZATIONS),
            ("init", INITS),
            ("scope", SCOPES),
            ("activation", ACTIVATION_OPTIONS),
        ):
            value = getattr(self, key)
            if value not in valid:
                raise UserError(
                    f"constraint.{key}='{value}' is unknown: {did_you_mean(str(value), valid)}"
                )
        for key in ("beta", "lr"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise UserError(f"constraint.{key}={value} must be > 0")
        if not self.init_eps >= 0:
            raise UserError(f"constraint.init_eps={self.init_eps} must be >= 0")
        if self.init_eps == 0 and self.parametrization != "project":
            raise UserError(
                f"constraint.init_eps=0 with parametrization={self.parametrization} puts zero "
                "weights where the parametrisation has no gradient: use a small eps (1e-6)"
            )
        self.verify.check()


class MonotonicConstraint(ModelTransform):
    name = "monotonic"
    record_name = "monotonicity"

    def __init__(self, settings: MonotonicSettings) -> None:
        super().__init__(settings)
        self.settings: MonotonicSettings = settings
        self.layout: Any = None
        self.released: dict[str, str] = {}  # layers another transform took out (name -> why)

    @property
    def parametrised(self) -> bool:
        return self.settings.parametrization != "project"

    def targets(self, model: nn.Module, layout: Any) -> dict[str, nn.Linear]:
        """The linear layers `scope` names, by full module name."""
        scope = self.settings.scope
        found: dict[str, nn.Linear] = {}
        for sub in find_ffn_sublayers(model, layout):
            children = dict(sub.input_projections)
            if scope != "mlp_in":
                children.update(sub.output_projections)
            found.update({f"{sub.name}.{child}": layer for child, layer in children.items()})
        if scope == "mlp_both_attn_out":
            attention = find_attention_outputs(model, layout)
            if not attention:
                raise UserError(
                    f"scope=mlp_both_attn_out but no module matches "
                    f"model.ffn.attention_outputs={list(layout.attention_outputs)}"
                )
            found.update(attention)
        return found

    def apply(self, model: nn.Module, model_cfg: Any) -> None:
        settings, layout = self.settings, model_cfg.ffn
        self.layout = layout
        if settings.activation != "keep":
            self._replace_activations(model, layout)
        self.layers = self.targets(model, layout)
        for layer in self.layers.values():
            weight = layer.weight
            if weight.dtype != torch.float32:
                raise UserError(f"constrained weights must be fp32, the model has {weight.dtype}")
            with torch.no_grad():
                magnitude = weight.abs() if settings.init == "abs" else weight.clamp_min(0.0)
                weight.copy_(magnitude + settings.init_eps)
            if self.parametrised:
                parametrization = build_parametrization(settings.parametrization, settings.beta)
                parametrize.register_parametrization(layer, "weight", parametrization)
        record = self.report(model)
        log.info("%s (%d layers constrained)", summary_line(record), len(self.layers))
        log.info(END_TO_END)

    def _replace_activations(self, model: nn.Module, layout: Any) -> None:
        make, hf_name = REPLACEMENTS[self.settings.activation]
        sublayers = find_ffn_sublayers(model, layout)
        for sub in sublayers:
            if not hasattr(sub.block, layout.activation):
                raise UserError(
                    f"FFN block '{sub.name}' has no activation module "
                    f"model.ffn.activation='{layout.activation}'"
                )
            setattr(sub.block, layout.activation, make())
        config = getattr(model, "config", None)
        if hf_name is not None and config is not None:
            set_config_activation(config, hf_name, gated=bool(layout.gated))

    def release(self, layers: dict[str, str]) -> None:
        self.released.update(layers)

    def check_exportable(self) -> None:
        activation = self.settings.activation
        if activation != "keep" and REPLACEMENTS[activation][1] is None:
            raise UserError(
                f"constraint.activation={activation} has no Hugging Face activation name, so a "
                "plain HF model cannot reproduce it: train with constraint.activation=relu to "
                "export"
            )

    def raw_parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates for the constrained layers (V, or W itself for project)."""
        if self.parametrised:
            return [layer.parametrizations.weight.original for layer in self.layers.values()]
        return [layer.weight for layer in self.layers.values()]

    def optimizer_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        group: dict[str, Any] = {
            "name": "constrained",
            "params": self.raw_parameters(),
            # Decay on V pulls W = softplus(V) toward ln 2, inflating small weights: off by default.
            "weight_decay": weight_decay if self.settings.weight_decay_on_constrained else 0.0,
        }
        if self.settings.lr is not None:
            group["lr"] = self.settings.lr
        return [group]

    def after_optimizer_step(self, model: nn.Module) -> None:
        if not self.parametrised:
            with torch.no_grad():
                for layer in self.layers.values():
                    layer.weight.clamp_(min=0.0)

    @contextlib.contextmanager
    def cached_weights(self) -> Iterator[None]:
        """`parametrize.cached()`: note that it is process-wide, so it caches every parametrised
        module, not only this constraint's."""
        if not self.parametrised:
            yield
            return
        with parametrize.cached():
            yield

    def report(
        self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]] | None = None
    ) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["weight_decay_target"] = (
            ("raw parameter V" if self.parametrised else "weight W")
            if self.settings.weight_decay_on_constrained
            else "none"
        )
        record = {
            "constraint": {"name": self.name, **settings},
            **guarantee_record(model, self.layout, set(self.layers) - set(self.released)),
        }
        if self.released:
            record["released_layers"] = dict(sorted(self.released.items()))
        if batches is not None:
            with self.cached_weights():
                record["verification"] = verify_ffn_monotonicity(
                    model, self.layout, batches, self.settings.verify, record["sublayers"]
                )
            found = record["verification"]["summary"]
            log.info(
                "%s; verifier: violations in %d of %d sublayers (worst Jacobian entry %.3g)",
                summary_line(record),
                found["with_violations"],
                found["sublayers"],
                found["worst_entry"],
            )
            if found["proven_with_violations"]:
                log.error("a proven sublayer shows violations: this is a bug, please report it")
        return record
