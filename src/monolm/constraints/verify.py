"""Empirical check of FFN monotonicity: Jacobians at real hidden states plus an adversarial search.

For `y = W2 act(W1 x + b1) + b2` the Jacobian is `W2 diag(act'(W1 x + b1)) W1`; for a gated FFN
`y = W2 (act(W1_0 x) * (W1_1 x))` it is `W2 (diag(act'(z0) * z1) W1_0 + diag(act(z0)) W1_1)`.
The sublayer is non-decreasing exactly where every entry is >= 0. Two probes:

1. sampled: the closed form at hidden states the model really feeds each FFN (captured with
   forward hooks on validation batches);
2. search: projected Adam on the input, minimising one Jacobian entry (the most negative one at
   the start point), inside the per-coordinate box those hidden states span. Sampling alone can
   report "clean" while violations exist nearby; the search looks for them.

A `proven` sublayer has no negative entry by construction (sums of products of non-negative
numbers are non-negative in floating point too), so any violation there is a bug.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from monolm.errors import UserError
from monolm.models.ffn import FFNSublayer, find_ffn_sublayers

# Intermediate tensors of the closed form are (points, d_out, d_hidden): chunk to bound memory.
_CHUNK_ELEMENTS = 2**26


@dataclass
class VerifySettings:
    batches: int = 2  # validation batches whose FFN inputs are captured
    samples: int = 64  # hidden states per sublayer at which the Jacobian is evaluated
    search_starts: int = 16  # starting points of the search (half real states, half uniform)
    search_steps: int = 50
    search_lr: float = 0.05  # Adam step, as a fraction of the box's mean width
    seed: int = 0

    def check(self) -> None:
        """Raise UserError naming the first value out of range."""
        for f in fields(self):
            value = getattr(self, f.name)
            minimum = 0 if f.name in ("search_starts", "search_steps", "seed") else 1
            if f.name == "search_lr":
                if not value > 0:
                    raise UserError(f"constraint.verify.search_lr={value} must be > 0")
            elif not (isinstance(value, int) and value >= minimum):
                raise UserError(
                    f"constraint.verify.{f.name}={value} must be an integer >= {minimum}"
                )


def verify_settings(recorded: Any = None, **overrides: Any) -> VerifySettings:
    """Checked settings: the defaults, then what a run recorded (`constraint.verify`), then
    `overrides` (None values are ignored)."""
    from omegaconf import OmegaConf

    given = {key: value for key, value in overrides.items() if value is not None}
    merged = OmegaConf.merge(OmegaConf.structured(VerifySettings), recorded or {}, given)
    settings = OmegaConf.to_object(merged)
    settings.check()
    return settings


class FFNFunction:
    """One FFN sublayer as explicit tensors (the weights the forward pass uses, detached)."""

    def __init__(self, sub: FFNSublayer, activation: nn.Module, gated: bool) -> None:
        inputs, outputs = list(sub.input_projections.values()), list(sub.output_projections)
        if len(outputs) != 1 or len(inputs) != (2 if gated else 1):
            raise ValueError(f"{sub.name}: expected 1 output and {1 + gated} input projections")
        self.name = sub.name
        self.gated = gated
        self.activation = activation
        self.w_in = [layer.weight.detach().float() for layer in inputs]
        self.b_in = [
            None if layer.bias is None else layer.bias.detach().float() for layer in inputs
        ]
        self.w_out = sub.output_projections[outputs[0]].weight.detach().float()

    def _pre(self, x: torch.Tensor, k: int) -> torch.Tensor:
        z = x @ self.w_in[k].T
        return z if self.b_in[k] is None else z + self.b_in[k]

    def _act_and_slope(
        self, z: torch.Tensor, create_graph: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            a = self.activation(z)
            (slope,) = torch.autograd.grad(a.sum(), z, create_graph=create_graph)
        return a, slope

    def _inner(self, x: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, ...]:
        """Per hidden unit h: coefficients c_k[n, h] with J = sum_k W2 diag(c_k) W1_k."""
        a, slope = self._act_and_slope(self._pre(x, 0), create_graph)
        if not self.gated:
            return (slope,)
        return (slope * self._pre(x, 1), a)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d_out, d_in) Jacobians at the rows of x."""
        n_out, n_hidden = self.w_out.shape
        chunk = max(1, _CHUNK_ELEMENTS // (n_out * n_hidden))
        parts = []
        for rows in x.split(chunk):
            coefficients = self._inner(rows, create_graph=False)
            parts.append(
                sum(
                    (self.w_out * c[:, None, :]) @ w
                    for c, w in zip(coefficients, self.w_in, strict=True)
                )
            )
        return torch.cat(parts).detach()

    def entries(self, x: torch.Tensor, out: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
        """J[out[n], inp[n]] at x[n], differentiable in x."""
        coefficients = self._inner(x, create_graph=True)
        return sum(
            (self.w_out[out] * c * w[:, inp].T).sum(dim=1)
            for c, w in zip(coefficients, self.w_in, strict=True)
        )


class _Capture:
    """Forward pre-hook: keeps a random subsample of an FFN's inputs and their coordinate range."""

    def __init__(self, per_batch: int, generator: torch.Generator) -> None:
        self.per_batch = per_batch
        self.generator = generator
        self.rows: list[torch.Tensor] = []
        self.low: torch.Tensor | None = None
        self.high: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        flat = hidden.detach().float().reshape(-1, hidden.shape[-1])
        low, high = flat.min(dim=0).values, flat.max(dim=0).values
        self.low = low if self.low is None else torch.minimum(self.low, low)
        self.high = high if self.high is None else torch.maximum(self.high, high)
        pick = torch.randperm(flat.shape[0], generator=self.generator)[: self.per_batch]
        self.rows.append(flat[pick.to(flat.device)].clone())


def capture_ffn_inputs(
    model: nn.Module,
    sublayers: list[FFNSublayer],
    batches: Iterable[dict[str, torch.Tensor]],
    settings: VerifySettings,
) -> tuple[dict[str, _Capture], int]:
    """Run `settings.batches` batches through the model, recording each FFN's inputs."""
    generator = torch.Generator().manual_seed(settings.seed)
    captures = {sub.name: _Capture(settings.samples, generator) for sub in sublayers}
    handles = [
        sub.block.register_forward_pre_hook(captures[sub.name], with_kwargs=True)
        for sub in sublayers
    ]
    device = next(model.parameters()).device
    was_training, seen = model.training, 0
    model.eval()
    try:
        with torch.no_grad():
            for batch in itertools.islice(batches, settings.batches):
                model(**{k: v.to(device) for k, v in batch.items()})
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if seen == 0:
        raise UserError("verification got no validation batches: the validation split is empty")
    return captures, seen


def _stats(jacobians: torch.Tensor) -> dict[str, Any]:
    flat = jacobians.reshape(jacobians.shape[0], -1)
    negative = flat < 0
    return {
        "points": flat.shape[0],
        "negative_fraction": float(negative.float().mean()),
        "points_with_violation": int(negative.any(dim=1).sum()),
        "min_entry": float(flat.min()),
    }


def search_violations(
    ffn: FFNFunction,
    starts: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    steps: int,
    lr: float,
) -> dict[str, Any]:
    """Projected Adam from each start, minimising its most negative Jacobian entry in the box."""
    jac = ffn.jacobian(starts)
    flat_index = jac.reshape(jac.shape[0], -1).argmin(dim=1)
    out, inp = flat_index // jac.shape[2], flat_index % jac.shape[2]
    x = starts.clone().requires_grad_(True)
    width = float((high - low).mean().clamp_min(1e-6))
    optimizer = torch.optim.Adam([x], lr=lr * width)
    best_x, best = starts.clone(), ffn.entries(starts, out, inp).detach()
    for _ in range(steps):
        value = ffn.entries(x, out, inp)
        optimizer.zero_grad()
        value.sum().backward()
        optimizer.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, high), low))
            now = ffn.entries(x.detach(), out, inp).detach()
            better = now < best
            best = torch.where(better, now, best)
            best_x[better] = x.detach()[better]
    stats = _stats(ffn.jacobian(best_x))
    return {"starts": starts.shape[0], "steps": steps, **stats}


def verify_ffn_monotonicity(
    model: nn.Module,
    layout: Any,
    batches: Iterable[dict[str, torch.Tensor]],
    settings: VerifySettings,
    levels: list[dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Per-sublayer sampled and searched Jacobian statistics; `levels` (the guarantee record's
    sublayer entries) lets the result flag a `proven` sublayer that shows a violation."""
    from monolm.constraints.guarantee import ffn_gated

    sublayers = find_ffn_sublayers(model, layout)
    captures, seen = capture_ffn_inputs(model, sublayers, batches, settings)
    level_of = {entry["name"]: entry["level"] for entry in levels or []}
    generator = torch.Generator().manual_seed(settings.seed + 1)
    results = []
    for sub in sublayers:
        if progress:
            progress(sub.name)
        capture = captures[sub.name]
        ffn = FFNFunction(sub, getattr(sub.block, layout.activation), ffn_gated(sub, layout))
        rows = torch.cat(capture.rows)
        points = rows[torch.randperm(rows.shape[0], generator=generator)[: settings.samples]]
        sampled = ffn.jacobian(points)
        low, high = capture.low, capture.high
        n_real = min(settings.search_starts - settings.search_starts // 2, points.shape[0])
        worst_first = sampled.reshape(sampled.shape[0], -1).min(dim=1).values.argsort()
        uniform = torch.rand(
            settings.search_starts - n_real, rows.shape[1], generator=generator
        ).to(rows.device)
        starts = torch.cat([points[worst_first[:n_real]], low + uniform * (high - low)])
        search = (
            search_violations(ffn, starts, low, high, settings.search_steps, settings.search_lr)
            if starts.shape[0]
            else {"starts": 0, "steps": 0, "points_with_violation": 0}
        )
        sampled_stats = _stats(sampled)
        violation = bool(sampled_stats["points_with_violation"] or search["points_with_violation"])
        level = level_of.get(sub.name)
        results.append(
            {
                "name": sub.name,
                "level": level,
                "sampled": sampled_stats,
                "search": search,
                "violation_found": violation,
                "consistent_with_level": not (level == "proven" and violation),
            }
        )
    return {
        "method": "closed-form FFN Jacobian at captured validation hidden states, then projected "
        "Adam minimising the most negative entry inside the per-coordinate range of those states",
        "settings": asdict(settings),
        "batches": seen,
        "summary": {
            "sublayers": len(results),
            "with_violations": sum(r["violation_found"] for r in results),
            "proven_with_violations": sum(not r["consistent_with_level"] for r in results),
            "worst_entry": min(
                min(r["sampled"]["min_entry"], r["search"].get("min_entry", float("inf")))
                for r in results
            ),
        },
        "sublayers": results,
    }


@dataclass(frozen=True)
class ValidationData:
    """Where the verifier's hidden states come from: a dataset's validation batches, tokenised
    as training tokenised them."""

    tokenizer: Any
    dataset: Any  # a conf/dataset config
    data: Any  # a data config (batch sizes)
    seed: int
    family: str | None = None  # the model's (prompted tasks lay examples out by family)

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        from monolm.data.datamodule import TextDataModule

        datamodule = TextDataModule(
            self.dataset, self.data, self.tokenizer, self.seed, family=self.family
        )
        datamodule.build()
        return iter(datamodule.val_dataloader())


def verify_on_validation_data(
    model: nn.Module,
    model_cfg: Any,
    constrained: set[str],
    data: ValidationData,
    settings: VerifySettings,
    cached_weights: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, Any]:
    """The guarantee record of `model` (`constrained`: the full names of its constrained layers)
    plus its verification on `data` (what the verify command and evaluate's monotonicity task
    report)."""
    from monolm.constraints.guarantee import guarantee_record

    record = guarantee_record(model, model_cfg.ffn, constrained)
    # No inference_mode: the search differentiates through the FFN in its input.
    with cached_weights():
        record["verification"] = verify_ffn_monotonicity(
            model, model_cfg.ffn, data.batches(), settings, record["sublayers"]
        )
    return record
