"""Each epoch's batches for one training worker.

Data is either *held* — the worker's rows as tensors in memory, ordered by ``row_id`` and fully
reshuffled each epoch with a seeded permutation — or *streamed* through Ray Data every epoch
with a seeded local shuffle buffer. Holding skips Ray Data's per-epoch start-up, which dominates
an epoch of a small dataset, and makes the batch order a function of the seed alone, so the
same config trains the same weights on one CPU worker (and its cache key keeps meaning the same
artifact). `components.training.data` decides which.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass
from typing import Any

import torch

PULL_BATCH_ROWS = 4096


def shuffle_seed(seed: int, epoch: int, rank: int) -> int:
    """One seed per (run seed, epoch, worker)."""
    return seed * 100_003 + epoch * 101 + rank


def sort_by_row_id(columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "row_id" not in columns:
        return columns
    order = torch.argsort(columns["row_id"])
    return {name: value[order] for name, value in columns.items()}


def pull(shard: Any) -> dict[str, torch.Tensor]:
    """A whole Ray Data shard as one tensor per column, in ``row_id`` order."""
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in shard.iter_torch_batches(batch_size=PULL_BATCH_ROWS):
        for name, value in batch.items():
            if isinstance(value, torch.Tensor):
                parts.setdefault(name, []).append(value)
    return sort_by_row_id({name: torch.cat(values) for name, values in parts.items()})


@dataclass
class HeldBatches:
    """``batches(epoch)`` over columns held in memory (one worker's rows)."""

    columns: dict[str, torch.Tensor]
    _: KW_ONLY
    batch_size: int
    shuffle: bool
    seed: int = 0
    rank: int = 0

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        rows = self.rows
        if self.shuffle:
            generator = torch.Generator().manual_seed(shuffle_seed(self.seed, epoch, self.rank))
            order = torch.randperm(rows, generator=generator)
            for start in range(0, rows, self.batch_size):
                index = order[start : start + self.batch_size]
                yield {name: value[index] for name, value in self.columns.items()}
        else:  # contiguous slices: views, no copy
            for start in range(0, rows, self.batch_size):
                yield {n: v[start : start + self.batch_size] for n, v in self.columns.items()}


@dataclass
class StreamBatches:
    """``batches(epoch)`` streamed from a Ray Data dataset or shard, every epoch anew."""

    shard: Any
    _: KW_ONLY
    batch_size: int
    shuffle: bool
    seed: int = 0
    rank: int = 0
    shuffle_buffer: int = 0

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        shuffled = self.shuffle and self.shuffle_buffer > 0
        yield from self.shard.iter_torch_batches(
            batch_size=self.batch_size,
            local_shuffle_buffer_size=self.shuffle_buffer if shuffled else None,
            local_shuffle_seed=shuffle_seed(self.seed, epoch, self.rank) if shuffled else None,
        )
