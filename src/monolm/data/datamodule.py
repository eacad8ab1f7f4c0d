"""One LightningDataModule for both tasks: packed causal-LM blocks or seq2seq pairs."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from monolm.data.loader import EpochShuffleSampler, ResumableDataLoader, SkippableBatchSampler
from monolm.data.sources import load_splits
from monolm.data.tokenize import pack_for_causal_lm, tokenize_for_seq2seq
from monolm.errors import UserError

IGNORE_INDEX = -100  # label value the loss skips (padding)


class CausalLMCollator:
    """Stacks equal-length blocks; labels are the inputs (the model shifts them)."""

    def __call__(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        input_ids = torch.stack([row["input_ids"] for row in rows])
        return {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "labels": input_ids.clone(),
        }


class Seq2SeqCollator:
    """Pads sources with the pad id and targets with IGNORE_INDEX, to the batch's longest."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        sources = [row["input_ids"] for row in rows]
        targets = [row["labels"] for row in rows]
        input_ids = torch.nn.utils.rnn.pad_sequence(
            sources, batch_first=True, padding_value=self.pad_token_id
        )
        labels = torch.nn.utils.rnn.pad_sequence(
            targets, batch_first=True, padding_value=IGNORE_INDEX
        )
        lengths = torch.tensor([len(source) for source in sources])
        positions = torch.arange(input_ids.size(1))
        attention_mask = (positions[None, :] < lengths[:, None]).to(input_ids.dtype)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class TextDataModule(L.LightningDataModule):
    def __init__(
        self, dataset_cfg: Any, data_cfg: Any, tokenizer: PreTrainedTokenizerBase, seed: int
    ) -> None:
        super().__init__()
        self.dataset_cfg, self.data_cfg = dataset_cfg, data_cfg
        self.tokenizer, self.seed = tokenizer, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def collator(self) -> CausalLMCollator | Seq2SeqCollator:
        if self.dataset_cfg.task == "language_modeling":
            return CausalLMCollator()
        return Seq2SeqCollator(self.tokenizer.pad_token_id)

    def build(self) -> None:
        """Load and tokenise both splits (cached); run before the Trainer so errors come early."""
        cfg = self.dataset_cfg
        train, validation = load_splits(cfg, self.seed)
        num_proc = self.data_cfg.tokenize_num_proc
        if cfg.task == "language_modeling":
            splits = [
                pack_for_causal_lm(s, self.tokenizer, cfg.text_field, cfg.max_length, num_proc)
                for s in (train, validation)
            ]
        else:
            splits = [
                tokenize_for_seq2seq(
                    s,
                    self.tokenizer,
                    cfg.source_field,
                    cfg.target_field,
                    cfg.source_prefix,
                    cfg.max_length,
                    cfg.max_target_length,
                    num_proc,
                )
                for s in (train, validation)
            ]
        for name, split in zip(("train", "validation"), splits, strict=True):
            if len(split) == 0:
                raise UserError(
                    f"dataset '{cfg.name}' {name} split yields no training example of "
                    f"dataset.max_length={cfg.max_length} tokens: lower max_length or add text"
                )
        batch = self.data_cfg.batch_size
        if len(splits[0]) < batch:
            raise UserError(
                f"dataset '{cfg.name}' has {len(splits[0])} training examples, fewer than "
                f"data.batch_size={batch}: lower the batch size or add data"
            )
        self.train_set, self.val_set = (s.with_format("torch") for s in splits)

    def setup(self, stage: str) -> None:
        if self.train_set is None:
            self.build()

    def train_dataloader(self) -> ResumableDataLoader:
        trainer = self.trainer
        sampler = EpochShuffleSampler(
            len(self.train_set),
            seed=self.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        return ResumableDataLoader(
            self.train_set,
            batch_sampler=SkippableBatchSampler(sampler, self.data_cfg.batch_size),
            collate_fn=self.collator,
            num_workers=self.data_cfg.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.data_cfg.eval_batch_size,
            shuffle=False,
            collate_fn=self.collator,
            num_workers=self.data_cfg.num_workers,
        )
