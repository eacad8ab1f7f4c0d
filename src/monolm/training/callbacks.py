"""Callbacks that make training reproducible and resumable, and the list `train.py` uses."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ThroughputMonitor,
    TQDMProgressBar,
)


def step_seed(seed: int, epoch: int, batch_idx: int, rank: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{epoch}/{batch_idx}/{rank}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1  # torch seeds must fit in int64


class StepSeeder(Callback):
    """Reseeds torch's RNG before every micro-batch from (seed, epoch, batch index, rank).

    Dropout masks then depend only on where training is, not on what ran before, so a resumed
    run draws exactly the masks an uninterrupted run would, with no RNG state to checkpoint.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        torch.manual_seed(
            step_seed(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)
        )


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also saves at the final optimizer step, at the batch boundary.

    When max_steps is reached, Lightning closes the epoch and its epoch-end save records the
    epoch as finished: a longer run resumed from it would start a new epoch with a new data
    order. Saving at the last step's batch end records the true position in the epoch (and the
    epoch-end save at the same step is then skipped), so stopping at step k and resuming to N
    equals N straight steps.
    """

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final_step = 0 < trainer.max_steps <= trainer.global_step
        if final_step and not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


def _tokens_in(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["attention_mask"].sum())


def _rows_in(batch: dict[str, torch.Tensor]) -> int:
    return batch["input_ids"].size(0)


def build_callbacks(cfg: Any, checkpoint_dir: Path) -> list[Callback]:
    callbacks_cfg = cfg.callbacks
    callbacks: list[Callback] = [
        StepSeeder(cfg.seed),
        StepCheckpoint(
            dirpath=checkpoint_dir,
            filename="step-{step:07d}",
            auto_insert_metric_name=False,
            every_n_train_steps=callbacks_cfg.checkpoint_every_n_steps,
            save_last=True,
            save_top_k=callbacks_cfg.keep_checkpoints,
            monitor="step",
            mode="max",
        ),
    ]
    if callbacks_cfg.lr_monitor and cfg.logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if callbacks_cfg.throughput and cfg.logger:
        callbacks.append(ThroughputMonitor(batch_size_fn=_rows_in, length_fn=_tokens_in))
    if cfg.trainer.enable_progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=callbacks_cfg.progress_refresh_rate))
    return callbacks
