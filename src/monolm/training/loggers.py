"""The run's loggers, continued across segments rather than started over.

- CSV: Lightning's CSVLogger deletes `metrics.csv` when its folder is not empty; ours keeps the
  rows of earlier segments (and their columns) and appends.
- TensorBoard: events of every segment stay in the same folder.
- Weights & Biases: every segment logs to the same W&B run, its id being the run's `run_id`.

A segment that was killed or failed may have logged past the checkpoint the next one resumes
from; the resumed segment logs that stretch of training again, so those rows are dropped (CSV)
or purged (TensorBoard's `purge_step`), and every step has one row, from the weights the run
continued from. After a segment that completed or stopped at its checkpoint, nothing is dropped.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Any

import hydra
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig

from monolm.errors import UserError


@dataclass(frozen=True)
class LogContinuation:
    """How this segment's loggers continue the run's earlier logs."""

    run_id: str  # the W&B run id
    segment: int  # 1 for a new run
    drop_from_step: int | None  # earlier rows at or past this step are dropped


class _ContinuedWriter(ExperimentWriter):
    def __init__(self, log_dir: str, drop_from_step: int | None, segment: int) -> None:
        self.drop_from_step = drop_from_step
        self.segment = segment
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep the earlier rows and their columns (Lightning's writer deletes the file here)."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            self.metrics_keys = list(reader.fieldnames or [])
        if self.drop_from_step is None:
            return
        kept = [row for row in rows if not _step_of(row) >= self.drop_from_step]
        if len(kept) < len(rows):
            partial = f"{self.metrics_file_path}.partial"
            with self._fs.open(partial, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
            os.replace(partial, self.metrics_file_path)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """The first segment's hyper-parameters stay in hparams.yaml; a later segment's go to
        hparams.segment-<n>.yaml."""
        if self.segment > 1:
            self.NAME_HPARAMS_FILE = f"hparams.segment-{self.segment}.yaml"
        super().log_hparams(params)


def _step_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "-inf")
    except ValueError:
        return float("-inf")


class ContinuedCSVLogger(CSVLogger):
    """CSVLogger that appends to the run's `metrics.csv` across segments."""

    def __init__(
        self, *args: Any, drop_from_step: int | None = None, segment: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._drop_from_step = drop_from_step
        self._segment = segment

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self._drop_from_step, self._segment)
        return self._experiment


def _continuation_kwargs(
    target: type, logger_cfg: DictConfig, how: LogContinuation
) -> dict[str, Any]:
    if target is CSVLogger or issubclass(target, ContinuedCSVLogger):
        kwargs: dict[str, Any] = {"drop_from_step": how.drop_from_step, "segment": how.segment}
        if target is CSVLogger:  # conf/logger/csv.yaml names Lightning's: continue it instead
            kwargs["_target_"] = f"{ContinuedCSVLogger.__module__}.{ContinuedCSVLogger.__name__}"
        return kwargs
    if issubclass(target, TensorBoardLogger):
        return {"purge_step": how.drop_from_step} if how.drop_from_step is not None else {}
    if issubclass(target, WandbLogger):
        return {} if logger_cfg.get("id") else {"id": how.run_id, "resume": "allow"}
    return {}


def instantiate_loggers(cfg: DictConfig, how: LogContinuation) -> list[Any]:
    """The loggers `cfg.logger` names, each continuing the run's earlier logs."""
    loggers = []
    for name, logger_cfg in (cfg.logger or {}).items():
        try:
            target = hydra.utils.get_class(logger_cfg._target_)
            loggers.append(
                hydra.utils.instantiate(logger_cfg, **_continuation_kwargs(target, logger_cfg, how))
            )
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise UserError(f"logger.{name}: {str(cause).splitlines()[0]}") from exc
    return loggers
