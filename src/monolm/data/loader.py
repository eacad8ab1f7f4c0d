"""A training loader whose order is a pure function of (seed, epoch, rank) and which resumes
mid-epoch exactly.

Lightning (>= 2.2) saves and restores a train dataloader's state when the loader implements
`state_dict` / `load_state_dict`. This loader records how many batches of the current epoch it has
handed out; after a restore it skips exactly those, without loading them. Sharding across ranks
is done here (Trainer(use_distributed_sampler=False)) so the same rule holds under DDP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[int]):
    """`randperm(n)` seeded with seed + epoch, cut to equal shards, shard `rank` of `world_size`."""

    def __init__(
        self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.world_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        order = order[: len(self) * self.world_size][self.rank :: self.world_size]
        return iter(order.tolist())


class SkippableBatchSampler(Sampler[list[int]]):
    """Full batches (drop_last) of the sampler's order; `skip` batches are passed over once."""

    def __init__(self, sampler: EpochShuffleSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.skip = 0

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        indices = list(self.sampler)
        for start in range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size):
            yield indices[start : start + self.batch_size]


class ResumableDataLoader(DataLoader):
    """DataLoader over a `SkippableBatchSampler` that checkpoints its position in the epoch."""

    def __init__(self, dataset: Any, batch_sampler: SkippableBatchSampler, **kwargs: Any) -> None:
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._batches_consumed = 0

    @property
    def epoch_sampler(self) -> EpochShuffleSampler:
        return self.batch_sampler.sampler

    def __iter__(self) -> Iterator[Any]:
        # A generator: the order is drawn at the first batch, after Lightning's set_epoch().
        self._batches_consumed = self.batch_sampler.skip
        for batch in super().__iter__():
            self._batches_consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch_sampler.epoch, "batches_consumed": self._batches_consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        consumed = int(state["batches_consumed"])
        if consumed < len(self):
            self.epoch_sampler.set_epoch(int(state["epoch"]))
            self.batch_sampler.skip = consumed
        else:  # the epoch had ended: the next batch is the first of the next epoch
            self.epoch_sampler.set_epoch(int(state["epoch"]) + 1)
            self.batch_sampler.skip = 0
        self._batches_consumed = self.batch_sampler.skip
