"""`train.py`'s body: config -> tokenizer -> data -> model -> constraint -> Trainer.fit -> records.

Everything a user can get wrong is checked in that order, cheapest first, so a bad value fails
before model weights are read. The run directory is Hydra's output dir; re-running with the same
`hydra.run.dir` resumes from its `checkpoints/last.ckpt`.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from monolm.constraints import build_transform
from monolm.constraints.base import ModelTransform
from monolm.data.datamodule import TextDataModule
from monolm.errors import RunFailed, UserError
from monolm.models.loading import load_model, load_model_config, load_tokenizer, max_positions
from monolm.provenance import provenance, write_json
from monolm.run_dir import RunDir
from monolm.training.callbacks import StepCheckpoint, build_callbacks
from monolm.training.checkpoint_io import AtomicCheckpointIO
from monolm.training.console import final_line, route_lightning_logs
from monolm.training.failure import describe_failure, log_traceback
from monolm.training.loggers import LogContinuation, instantiate_loggers
from monolm.training.module import LanguageModelModule
from monolm.training.record import (
    RunRecord,
    TransformRecord,
    config_history,
    read_transform_records,
)
from monolm.training.segment import Segment, open_segment
from monolm.training.validate import validate_max_length, validate_train_config

log = logging.getLogger(__name__)


def _strategy(cfg: DictConfig, model: torch.nn.Module) -> Any:
    if cfg.trainer.strategy != "fsdp":
        return cfg.trainer.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    # Wrap each transformer block (the classes the FFN blocks live in) as its own FSDP unit.
    block_types = {
        type(m)
        for m in model.modules()
        if type(m).__name__ in ("GPTNeoXLayer", "T5Block", "LlamaDecoderLayer")
    }
    return FSDPStrategy(auto_wrap_policy=block_types, state_dict_type="full")


def _total_steps(cfg: DictConfig, datamodule: TextDataModule, world_size: int) -> int:
    """The lr schedule's horizon, from config (never trainer.estimated_stepping_batches, which
    breaks dataloader-state restore: Lightning #20550)."""
    if cfg.optim.schedule_steps:
        return int(cfg.optim.schedule_steps)
    if cfg.trainer.max_steps > 0:
        return int(cfg.trainer.max_steps)
    batches = len(datamodule.train_set) // world_size // cfg.data.batch_size
    return max(1, batches // cfg.trainer.accumulate_grad_batches) * int(cfg.trainer.max_epochs)


def _cluster_environment() -> list[Any]:
    """Under SLURM, its environment with Lightning's own requeue off (submitit owns requeue and
    our stop signal owns the save); elsewhere Lightning's default environment."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def build_trainer(
    cfg: DictConfig, run_dir: Path, loggers: list[Any], model: torch.nn.Module
) -> L.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg.pop("strategy")
    return L.Trainer(
        **trainer_cfg,
        strategy=_strategy(cfg, model),
        logger=loggers or False,
        callbacks=build_callbacks(cfg, RunDir(run_dir).checkpoint_dir),
        plugins=[AtomicCheckpointIO(), *_cluster_environment()],
        default_root_dir=run_dir,
        use_distributed_sampler=False,  # TextDataModule shards by rank itself (exact resume)
    )


def _logged(trainer: L.Trainer, prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)}


@dataclass
class Prepared:
    """Everything `trainer.fit` needs, built and checked, nothing trained yet."""

    run_dir: Path
    config: dict[str, Any]
    tokenizer: Any
    datamodule: TextDataModule
    module: LanguageModelModule
    trainer: L.Trainer


NEW_RUN_LOGS = LogContinuation(run_id="", segment=1, drop_from_step=None)


def prepare(cfg: DictConfig, logs: LogContinuation = NEW_RUN_LOGS) -> Prepared:
    """Validate, then build tokenizer, data, model, constraint, module and Trainer, in the order
    that makes a user's mistake fail before model weights are read. Writes nothing."""
    validate_train_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    constraint = build_transform(cfg.constraint, cfg.adapter)
    loggers = instantiate_loggers(cfg, logs)
    config = OmegaConf.to_container(cfg, resolve=True)

    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    model_config = load_model_config(cfg.model, tokenizer)
    validate_max_length(cfg, max_positions(model_config))
    datamodule = TextDataModule(cfg.dataset, cfg.data, tokenizer, cfg.seed, family=cfg.model.family)
    datamodule.build()

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = load_model(cfg.model, model_config)
    constraint.apply(model, cfg.model)
    trainer = build_trainer(cfg, run_dir, loggers, model)
    module = LanguageModelModule(
        model,
        constraint,
        optim=OmegaConf.to_object(cfg.optim),
        total_steps=_total_steps(cfg, datamodule, trainer.world_size),
        config=config,
    )
    return Prepared(run_dir, config, tokenizer, datamodule, module, trainer)


def _final_record(
    cfg: DictConfig,
    constraint: ModelTransform,
    module: LanguageModelModule,
    datamodule: TextDataModule,
) -> dict[str, Any] | None:
    """The transform's record on the trained tensors, verified on validation batches (skipped
    under FSDP, whose rank 0 does not hold whole layers; run the verify command afterwards)."""
    if cfg.trainer.strategy == "fsdp":
        log.warning("FSDP: run `python -m monolm.constraints verify <run_dir>` to verify")
        return constraint.report(module.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.model.to(device)
    return constraint.report(module.model, batches=iter(datamodule.val_dataloader()))


def ran_with(trainer: L.Trainer) -> dict[str, Any]:
    """How the Trainer actually ran, which need not be what was asked: Lightning falls back
    (16-mixed on a CPU runs as bf16-mixed) and resolves `auto`."""
    return {
        "precision": str(trainer.precision),
        "accelerator": type(trainer.accelerator).__name__,
        "device": str(trainer.strategy.root_device),
        "strategy": type(trainer.strategy).__name__,
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "devices_per_node": trainer.num_devices,
    }


def _warn_if_fallen_back(cfg: DictConfig, ran: dict[str, Any]) -> None:
    if ran["precision"] != str(cfg.trainer.precision):
        log.warning(
            "trainer.precision=%s runs as %s on %s: run.json and metrics.json record what ran",
            cfg.trainer.precision,
            ran["precision"],
            ran["device"],
        )


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train one run in `cfg.paths.output_dir` (a new run, or the continuation of the run
    there); return its final metrics."""
    route_lightning_logs()
    validate_train_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    segment = open_segment(cfg, config)  # checks, locks; writes nothing else
    try:
        return _train_segment(cfg, segment)
    finally:
        segment.close()


def _train_segment(cfg: DictConfig, segment: Segment) -> dict[str, Any]:
    setup = prepare(cfg, segment.log_continuation())
    run_dir, config, resume = setup.run_dir, setup.config, segment.resume
    trainer, module, datamodule = setup.trainer, setup.module, setup.datamodule
    constraint = module.constraint
    layout = segment.layout
    ran = ran_with(trainer)
    _warn_if_fallen_back(cfg, ran)

    record = RunRecord(layout.run_record, config, cfg.seed)
    transform_records = {
        part: TransformRecord(
            layout.transform_record(part.record_name), provenance(config, cfg.seed)
        )
        for part in constraint.parts()
        if part.record_name is not None
    }
    if resume:  # the model just rebuilt must be the one the run trained (an adapter's base)
        constraint.check_rebuilt(read_transform_records(layout, constraint))
    if trainer.is_global_zero:
        new_run = segment.is_new
        segment.commit(cfg)
        record.write(**segment.record(), ran_with=ran)
        if new_run:
            setup.tokenizer.save_pretrained(layout.tokenizer_dir)
            module.model.config.save_pretrained(layout.model_config_dir)
        if resume is None:
            for part, part_record in transform_records.items():
                part_record.write_initial(part.report(module.model))
    if resume:
        changed = ", ".join(segment.changes.record()) or "nothing"
        log.info("resuming from %s (step %d); changed: %s", resume.path, resume.step, changed)
    stop_signal = next(c for c in trainer.callbacks if isinstance(c, StepCheckpoint)).stop_signal
    stop_signal.install()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume.path if resume else None)
        if stop_signal.saved_at_step is None:
            stop_signal.restore()  # training is over: signals act as they did before
        if trainer.interrupted:
            raise KeyboardInterrupt
        if stop_signal.saved_at_step is None:
            train_metrics = _logged(trainer, "train/")
            trainer.validate(module, datamodule=datamodule, verbose=False)
        if stop_signal.saved_at_step is not None:  # preempted, timed out or terminated
            _stopped(stop_signal, layout, record if trainer.is_global_zero else None)
        metrics = {
            "global_step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "tokens_seen": module.tokens_seen,
            **train_metrics,
            **_logged(trainer, "val/"),
        }
        if trainer.is_global_zero:
            write_json(
                layout.metrics_record,
                {
                    **provenance(config, cfg.seed),
                    "run_id": segment.run_id,
                    "ran_with": ran,
                    "config_history": config_history(record.segments),
                    "metrics": metrics,
                },
            )
            for part, part_record in transform_records.items():
                part_record.write_final(_final_record(cfg, part, module, datamodule))
            record.finish("completed", end_step=trainer.global_step)
            print(final_line(metrics, run_dir), flush=True)
        return metrics
    except BaseException as exc:
        stop_signal.restore()
        if isinstance(exc, SystemExit) and stop_signal.saved_at_step is not None:
            raise  # stopped by a signal, recorded as such: the requeue exits this way
        failure = describe_failure(exc, trainer.global_step)
        if trainer.is_global_zero:
            record.finish("failed", failure, end_step=trainer.global_step)
        if isinstance(exc, Exception) and not isinstance(exc, UserError):
            where = log_traceback(exc)
            raise RunFailed(
                f"training failed: {failure}; {layout.run_record} says failed"
                + (f"; traceback in {where}" if where else "")
            ) from exc
        raise


def _stopped(stop_signal: Any, layout: RunDir, record: RunRecord | None) -> None:
    """Stopped by a signal at a step boundary, last.ckpt saved: record it and hand over."""
    name = signal.Signals(stop_signal.received).name
    log.warning(
        "%s: saved %s at step %d and stopped; the same command resumes from it",
        name,
        layout.last_checkpoint,
        stop_signal.saved_at_step,
    )
    if record is not None:
        record.write(stopped_by=name, stopped_at_step=stop_signal.saved_at_step)
        record.finish("stopped", end_step=stop_signal.saved_at_step)
    stop_signal.hand_over()  # submitit requeues; otherwise exit 128 + signal
