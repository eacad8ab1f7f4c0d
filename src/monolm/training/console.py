"""What a training run prints: one copy of each log line, a bar toward `trainer.max_steps` with an
ETA, and the final metrics."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

_ADVERTS = ("💡 Tip:",)


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_ADVERTS)


def route_lightning_logs() -> None:
    """Lightning's loggers print through Hydra's handlers only (Lightning adds a console handler
    of its own when it is imported before logging is configured: every line came twice), without
    its product tips, and without a deprecation warning Lightning raises inside itself."""
    for name in list(logging.root.manager.loggerDict):
        if name == "lightning" or name.startswith(("lightning.", "lightning_fabric")):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
            logger.addFilter(_DropAdverts())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Said on every resume, which continues the run's checkpoints on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole run, counting optimizer steps toward `trainer.max_steps` across
    epochs and resumed segments (the stock bar counts the batches of one epoch: no ETA)."""

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps > 0 else None)
        bar.n = bar.initial = trainer.global_step
        bar.set_description("training (optimizer steps)")

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """The bar spans epochs: nothing to reset."""

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and step != bar.n and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.train_progress_bar.disable:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))


def final_line(metrics: dict[str, Any], run_dir: Path) -> str:
    """`step 300, tokens 1.2M: val/loss 1.964, val/ppl 7.13, train/loss ... -> <run dir>`."""
    shown = ", ".join(
        f"{key} {value:.4g}" for key, value in metrics.items() if key.startswith(("val/", "train/"))
    )
    tokens = metrics.get("tokens_seen", 0)
    return f"step {metrics.get('global_step')}, tokens {tokens:,}: {shown} -> {run_dir}"
