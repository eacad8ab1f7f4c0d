"""AdamW parameter groups and the warmup-then-decay learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn


def _is_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, nn.LayerNorm | nn.GroupNorm) or name.endswith(("Norm", "LayerNorm"))


def build_param_groups(
    model: nn.Module, weight_decay: float, claimed_groups: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`decay` (matrices and embeddings), `no_decay` (biases and norm weights), then the groups a
    constraint claimed, which keep their own settings. Empty groups are dropped."""
    claimed = {id(p) for group in claimed_groups for p in group["params"]}
    no_decay_ids = {
        id(p) for module in model.modules() if _is_norm(module) for p in module.parameters()
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in claimed:
            continue
        if id(param) in no_decay_ids or name.endswith("bias") or param.ndim < 2:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
        *claimed_groups,
    ]
    return [group for group in groups if group["params"]]


@dataclass
class WarmupDecay:
    """lr multiplier: linear warmup over `warmup_steps`, then linear or cosine decay from 1 to
    `min_ratio` at `total_steps`, or constant. A dataclass so LambdaLR checkpoints its settings."""

    total_steps: int
    warmup_steps: int
    schedule: str = "linear"
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.schedule == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def retarget_training_state(
    checkpoint: dict[str, Any], optimizer: Any, scheduler: Any
) -> list[str]:
    """Make a checkpoint's optimizer and schedule state follow the current settings.

    Resuming restores the optimizer's hyper-parameters (lr, betas, eps, weight decay per group)
    and the schedule (its base lrs and `WarmupDecay` settings) from the checkpoint, so a change
    the user allowed (`resume.allow_changes=[optim.lr]`) would be recorded but never take effect.
    `optimizer` and `scheduler` are freshly built from the current settings: their
    hyper-parameters replace the checkpoint's; the moments (AdamW's state), the step count and
    the position in the schedule are kept. Returns the settings that changed.
    """
    changed: list[str] = []
    fresh_groups = optimizer.state_dict()["param_groups"]
    for saved_state in checkpoint.get("optimizer_states", [])[:1]:
        for saved, fresh in zip(saved_state["param_groups"], fresh_groups, strict=True):
            for key, value in fresh.items():
                if key not in ("params", "lr") and saved.get(key) != value:
                    changed.append(f"{saved.get('name', 'group')}.{key}")
                    saved[key] = value
    fresh_schedule = scheduler.state_dict()
    for saved in checkpoint.get("lr_schedulers", [])[:1]:
        for key in ("base_lrs", "lr_lambdas"):
            if saved.get(key) != fresh_schedule[key]:
                changed.append(f"schedule.{key}")
                saved[key] = fresh_schedule[key]
        step = saved["last_epoch"]
        scheduled = [
            base * WarmupDecay(**settings)(step)
            for base, settings in zip(saved["base_lrs"], saved["lr_lambdas"], strict=True)
        ]
        if changed:
            saved["_last_lr"] = scheduled
            for state in checkpoint.get("optimizer_states", [])[:1]:
                for group, lr in zip(state["param_groups"], scheduled, strict=True):
                    group["lr"] = lr
    return changed
