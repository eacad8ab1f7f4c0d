"""The LightningModule for both families: the loss is the model's own token-level NLL.

Causal LM: labels are the inputs, shifted inside the model. Seq2seq: labels are the target ids
with padding set to -100. Validation NLL is averaged over tokens (not batches), so perplexity is
exp(total NLL / total tokens) regardless of padding and batch sizes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics import MeanMetric
from transformers import PreTrainedModel

from monolm.config.schema import OptimConfig
from monolm.constraints.base import ModelTransform
from monolm.data.datamodule import IGNORE_INDEX
from monolm.training.optim import WarmupDecay, build_param_groups, retarget_training_state

log = logging.getLogger(__name__)


def count_target_tokens(labels: torch.Tensor, causal: bool) -> torch.Tensor:
    """Tokens the loss averages over: causal models predict positions 1..n-1 of each row."""
    scored = labels[:, 1:] if causal else labels
    return (scored != IGNORE_INDEX).sum()


class LanguageModelModule(L.LightningModule):
    def __init__(
        self,
        model: PreTrainedModel,
        constraint: ModelTransform,
        optim: OptimConfig,
        total_steps: int,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.constraint = constraint
        self.strict_loading = constraint.strict_loading
        self.optim = optim
        self.total_steps = total_steps
        self.causal = not model.config.is_encoder_decoder
        # Primitive values only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters({"config": config or {}, "total_steps": total_steps})
        self.val_nll = MeanMetric()
        # Kaplan's 6N FLOPs per trained token; ThroughputMonitor turns it into MFU on GPUs.
        self.flops_per_token = 6 * sum(p.numel() for p in model.parameters())
        self.flops_per_batch = 0
        self._tokens_restored = 0
        self._tokens_this_run: torch.Tensor | None = None  # on device: counting must not sync

    @property
    def tokens_seen(self) -> int:
        """Non-padding input tokens trained on, over all ranks and all resumed segments."""
        counted = 0 if self._tokens_this_run is None else int(self._tokens_this_run)
        return self._tokens_restored + counted

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # One forward per context; its single backward runs after the context closes, through
        # the graph the cached weights already hold. (T5 reads wo.weight three times a forward.)
        with self.constraint.cached_weights():
            loss = self.model(**batch).loss
        self.flops_per_batch = self.flops_per_token * batch["input_ids"].numel()
        tokens = batch["attention_mask"].sum() * self.trainer.world_size
        self._tokens_this_run = (
            tokens if self._tokens_this_run is None else self._tokens_this_run + tokens
        )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].size(0))
        self.log("train/ppl", torch.exp(loss.detach()), batch_size=batch["input_ids"].size(0))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        with self.constraint.cached_weights():
            loss = self.model(**batch).loss
        self.val_nll.update(loss, weight=count_target_tokens(batch["labels"], self.causal))

    def on_validation_epoch_end(self) -> None:
        nll = self.val_nll.compute()
        self.val_nll.reset()
        self.log("val/loss", nll, prog_bar=True, sync_dist=False)
        self.log("val/ppl", torch.exp(nll) if nll < 50 else torch.tensor(math.inf))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.constraint.after_optimizer_step(self.model)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.optim
        groups = build_param_groups(
            self.model,
            optim.weight_decay,
            self.constraint.optimizer_groups(self.model, optim.weight_decay),
        )
        optimizer = AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
        schedule = WarmupDecay(
            total_steps=self.total_steps,
            warmup_steps=round(optim.warmup_ratio * self.total_steps),
            schedule=optim.schedule,
            min_ratio=optim.min_lr_ratio,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = self.constraint.checkpoint_state(checkpoint["state_dict"])
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._tokens_restored = int(checkpoint.get("tokens_seen", 0))
        self._tokens_this_run = None
        saved = checkpoint.get("hyper_parameters", {})
        if saved.get("total_steps") == self.total_steps and saved.get("config", {}).get(
            "optim"
        ) == asdict(self.optim):
            return  # the same settings: restored exactly as saved (bit-exact resume)
        fresh = self.configure_optimizers()
        changed = retarget_training_state(
            checkpoint, fresh["optimizer"], fresh["lr_scheduler"]["scheduler"]
        )
        if changed:
            log.info("resumed optimizer and schedule follow the new settings: %s", changed)
