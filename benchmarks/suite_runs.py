"""The suite's parts that run train.py's body (`monolm.training.run.train`) whole: a 2-step FSDP
smoke with the parametrisation on, and a 2-step resume check, each run as a user's would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from constraint_overhead import compose_cfg
from suite_configs import RESUME_RUNS, train_configs
from suite_runner import PartSkipped, run_forked
from suite_settings import SuiteSettings

from monolm.run_dir import RunDir
from monolm.training.run import train


def _weights_min(record: Any) -> float:
    """The smallest `min_weight` of a constrained projection anywhere in a guarantee record."""
    if isinstance(record, dict):
        own = [record["min_weight"]] if record.get("constrained") and "min_weight" in record else []
        return min([*own, *(_weights_min(v) for v in record.values())], default=float("inf"))
    if isinstance(record, list):
        return min((_weights_min(v) for v in record), default=float("inf"))
    return float("inf")


def _run_summary(run_dir: Path) -> dict[str, Any]:
    layout = RunDir(run_dir)
    metrics = json.loads(layout.metrics_record.read_text())
    return {
        "status": layout.status(),
        "global_step": metrics.get("global_step"),
        "train_loss": metrics.get("train/loss"),
        "val_loss": metrics.get("val/loss"),
        "checkpoint_mb": layout.last_checkpoint.stat().st_size / 1e6,
    }


def fsdp(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """train.py's body (`monolm.training.run.train`), trainer=fsdp on one device with
    constraint=monotonic (softplus parametrisation), 2 steps, a full-state checkpoint."""
    cfg = compose_cfg(train_configs(s, work)["fsdp"])
    run_dir = Path(cfg.paths.output_dir)
    try:
        train(cfg)
    except ValueError as exc:
        if s.device != "cuda" and "requires a GPU accelerator" in str(exc):
            raise PartSkipped(
                "Lightning runs FSDP on CUDA only: on a CPU the run stops at the Trainer, "
                f"after config, data, model and constraint were built ({exc})"
            ) from exc
        raise
    record = json.loads(RunDir(run_dir).transform_record("monotonicity").read_text())
    final = record["final"]
    return {
        "model": s.fsdp_model,
        **_run_summary(run_dir),
        "constrained_min_weight": _weights_min(final),
        "summary": final["summary"],
    }


def _train_in_child(overrides: list[str], bound_s: float) -> None:
    """One train.py run in its own (forked) process, as a user's command would run it."""
    outcome = run_forked(partial(train, compose_cfg(overrides)), bound_s, group=False)
    if outcome.status != "ok":
        raise RuntimeError(f"training {overrides[-1]}: {outcome.status}: {outcome.reason}")


def _tensors(obj: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _tensors(obj[key], f"{where}.{key}")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{where}[{i}]")


def _difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How two checkpoints' weights and optimizer states differ, tensor by tensor."""
    left = dict(_tensors({"state_dict": a["state_dict"], "optimizer": a["optimizer_states"]}))
    right = dict(_tensors({"state_dict": b["state_dict"], "optimizer": b["optimizer_states"]}))
    if left.keys() != right.keys():
        raise RuntimeError(f"the checkpoints hold different tensors: {left.keys() ^ right.keys()}")
    equal, worst, where = 0, 0.0, None
    for key, x in left.items():
        y = right[key]
        if torch.equal(x, y):
            equal += 1
            continue
        diff = float((x.double() - y.double()).abs().max())
        if diff > worst:
            worst, where = diff, key
    return {"tensors": len(left), "equal": equal, "max_abs_diff": worst, "worst_tensor": where}


def resume(s: SuiteSettings, work: Path) -> dict[str, Any]:
    """train.py's body, each run in a new process: 2 straight steps, the same again (how much
    two identical runs differ on this device), and 1 step then a resume to 2. bf16-mixed on a
    GPU is not bit-exact (cuBLAS/SDPA backward kernels may sum in any order): a resume is
    sound when it differs from the straight run by no more than two straight runs differ."""
    configs = train_configs(s, work)
    for run, _, _ in RESUME_RUNS:  # in order: the resumed run's second segment comes last
        _train_in_child(configs[f"resume/{run}"], s.bounds["resume"] / 3)

    def last(folder: str) -> dict[str, Any]:
        path = RunDir(work / folder).last_checkpoint
        return torch.load(path, weights_only=True, map_location="cpu")

    straight, again, resumed = last("straight"), last("again"), last("resumed")
    run_to_run, resumed_diff = _difference(straight, again), _difference(straight, resumed)
    same_position = all(
        straight[k] == resumed[k] for k in ("global_step", "epoch", "lr_schedulers")
    )
    return {
        "model": s.resume_model,
        "precision": s.precision,
        "steps": 2,
        "same_step_epoch_schedule": same_position,
        "bit_exact": resumed_diff["equal"] == resumed_diff["tensors"],
        "run_to_run_bit_exact": run_to_run["equal"] == run_to_run["tensors"],
        "within_run_to_run": same_position
        and resumed_diff["max_abs_diff"] <= run_to_run["max_abs_diff"],
        "resumed_vs_straight": resumed_diff,
        "straight_vs_straight": run_to_run,
    }
