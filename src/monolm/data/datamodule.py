"""One LightningDataModule for every task: packed causal-LM blocks, seq2seq pairs, or prompted
(classification, question-answering) examples whose only labels are the answer tokens."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from datasets import Dataset
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from monolm.data.loader import EpochShuffleSampler, ResumableDataLoader, SkippableBatchSampler
from monolm.data.prompts import PROMPTED_TASKS
from monolm.data.sources import load_splits
from monolm.data.tokenize import (
    IGNORE_INDEX,
    pack_for_causal_lm,
    tokenize_for_seq2seq,
    tokenize_prompted,
)
from monolm.errors import UserError

__all__ = [
    "IGNORE_INDEX",
    "CausalLMCollator",
    "PromptedCausalCollator",
    "Seq2SeqCollator",
    "TextDataModule",
]


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


class PromptedCausalCollator(Seq2SeqCollator):
    """Prompt + answer rows of a causal model, right-padded to the batch's longest: input_ids
    with the pad id, labels with IGNORE_INDEX (they are IGNORE_INDEX over the prompt already),
    attention_mask 1 over the real tokens. The padding is a seq2seq pair's; only the labels'
    alignment differs (here they are aligned with input_ids, and the model shifts them)."""


def model_family(dataset_cfg: Any) -> str | None:
    """The model family of the config a dataset config belongs to (`cfg.dataset` inside a
    composed train config), for callers that do not pass `family`; None when detached."""
    root = dataset_cfg._get_root() if isinstance(dataset_cfg, DictConfig) else None
    family = OmegaConf.select(root, "model.family", default=None) if root is not None else None
    return None if family is None or root is dataset_cfg else str(family)


class TextDataModule(L.LightningDataModule):
    """Loads, tokenises (cached) and batches a dataset for the task it names.

    `family` (causal | seq2seq) decides how a prompted task is laid out; it defaults to the
    `model.family` of the config `dataset_cfg` is part of.
    """

    def __init__(
        self,
        dataset_cfg: Any,
        data_cfg: Any,
        tokenizer: PreTrainedTokenizerBase,
        seed: int,
        family: str | None = None,
    ) -> None:
        super().__init__()
        self.dataset_cfg, self.data_cfg = dataset_cfg, data_cfg
        self.tokenizer, self.seed = tokenizer, seed
        self.family = family or model_family(dataset_cfg)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def prompted(self) -> bool:
        return self.dataset_cfg.task in PROMPTED_TASKS

    def _prompted_family(self) -> str:
        if self.family not in ("causal", "seq2seq"):
            raise UserError(
                f"dataset '{self.dataset_cfg.name}' is a {self.dataset_cfg.task} task, laid out "
                f"by model family: family={self.family!r} is not causal or seq2seq"
            )
        return self.family

    @property
    def collator(self) -> CausalLMCollator | Seq2SeqCollator:
        if self.dataset_cfg.task == "language_modeling":
            return CausalLMCollator()
        if self.prompted and self._prompted_family() == "causal":
            return PromptedCausalCollator(self.tokenizer.pad_token_id)
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
        elif self.prompted:
            family = self._prompted_family()
            splits = [
                tokenize_prompted(s, self.tokenizer, cfg, family, num_proc)
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
