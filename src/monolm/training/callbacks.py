"""Callbacks that make training reproducible and resumable, and the list `train.py` uses."""

from __future__ import annotations

import hashlib
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ThroughputMonitor,
)

from monolm.run_dir import PERIODIC_CHECKPOINT_NAME
from monolm.training.console import StepProgressBar


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


# submitit sends SIGUSR2 before a time limit and on preemption; SLURM and others send SIGTERM.
STOP_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


class StopSignal:
    """Signal handlers that only set a flag (saving inside a handler can hang: Lightning #21406).

    `install` (before `trainer.fit`) replaces the handlers of STOP_SIGNALS and keeps the ones it
    found (submitit's, say); installing again (at train start) takes SIGTERM back from
    Lightning's own handler, which would raise SIGTERMException mid-step instead of letting the
    step finish and save. `restore` puts back what `install` first found. After training saved
    and stopped, `hand_over` runs what the signal would have run without us: submitit's handler
    requeues the job (rank 0) and exits; with no handler the process exits with the conventional
    status 128 + signal number.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self.saved_at_step: int | None = None
        self._previous: dict[int, Any] = {}

    def _flag(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            previous = signal.signal(sig, self._flag)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def hand_over(self) -> None:
        signum = self.received
        if signum is None:
            return
        previous = self._previous.get(signum)
        self.restore()
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signum, None)  # submitit: requeue (rank 0) and sys.exit
        raise SystemExit(128 + signum)


class StepCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also saves at the final optimizer step and when a stop signal
    arrived, both at an optimizer-step boundary.

    When max_steps is reached, Lightning closes the epoch and its epoch-end save records the
    epoch as finished: a longer run resumed from it would start a new epoch with a new data
    order. Saving at the last step's batch end records the true position in the epoch (and the
    epoch-end save at the same step is then skipped), so stopping at step k and resuming to N
    equals N straight steps. A stop signal (`StopSignal`, any rank) is handled the same way at
    the first step boundary after it: every rank saves last.ckpt, then training stops.
    """

    def __init__(self, *args: Any, stop_signal: StopSignal | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_signal = stop_signal or StopSignal()
        self._step_at_last_batch_end: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._step_at_last_batch_end = trainer.global_step
        self.stop_signal.install()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        stepped = trainer.global_step != self._step_at_last_batch_end  # not mid-accumulation
        self._step_at_last_batch_end = trainer.global_step
        final_step = 0 < trainer.max_steps <= trainer.global_step
        stop = stepped and self._stop_requested(trainer)
        if (final_step or stop) and not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        if stop:
            self.stop_signal.saved_at_step = trainer.global_step
            trainer.should_stop = True

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        requested = self.stop_signal.received is not None
        if trainer.world_size > 1:  # the signal may reach the ranks at different steps
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        return requested


def _tokens_in(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["attention_mask"].sum())


def _rows_in(batch: dict[str, torch.Tensor]) -> int:
    return batch["input_ids"].size(0)


def build_callbacks(
    cfg: Any, checkpoint_dir: Path, stop_signal: StopSignal | None = None
) -> list[Callback]:
    callbacks_cfg = cfg.callbacks
    callbacks: list[Callback] = [
        StepSeeder(cfg.seed),
        StepCheckpoint(
            stop_signal=stop_signal,
            dirpath=checkpoint_dir,
            filename=PERIODIC_CHECKPOINT_NAME,
            auto_insert_metric_name=False,
            every_n_train_steps=callbacks_cfg.checkpoint_every_n_steps,
            save_last=True,
            # Always last.ckpt: with a counter, a resume whose checkpoint settings differ (so the
            # callback state is not restored) writes last-v1.ckpt and leaves a stale last.ckpt.
            enable_version_counter=False,
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
        callbacks.append(StepProgressBar(refresh_rate=callbacks_cfg.progress_refresh_rate))
    return callbacks
