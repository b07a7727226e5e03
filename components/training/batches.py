"""Each epoch's batches for one training worker, from its Ray Data shard of a split.

A shard is either streamed through Ray Data every epoch (with a seeded local shuffle buffer), or
*held*: pulled once, ordered by ``row_id`` and kept as tensors in the worker, then fully
reshuffled each epoch with a seeded permutation. Holding skips Ray Data's per-epoch start-up,
which dominates an epoch of a small dataset, and makes the batch order a function of the seed
alone, so the same config trains the same weights on one CPU worker (and its cache key keeps
meaning the same artifact). The trainer decides which (`TrainingSettings.worker_cache_mb`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import torch

PULL_BATCH_ROWS = 4096


def shuffle_seed(seed: int, epoch: int, rank: int) -> int:
    """One seed per (run seed, epoch, worker)."""
    return seed * 100_003 + epoch * 101 + rank


def pull(shard: Any) -> dict[str, torch.Tensor]:
    """A whole shard as one tensor per column, in ``row_id`` order when there is one."""
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in shard.iter_torch_batches(batch_size=PULL_BATCH_ROWS):
        for name, value in batch.items():
            if isinstance(value, torch.Tensor):
                parts.setdefault(name, []).append(value)
    columns = {name: torch.cat(values) for name, values in parts.items()}
    if "row_id" in columns:
        order = torch.argsort(columns["row_id"])
        columns = {name: value[order] for name, value in columns.items()}
    return columns


@dataclass
class EpochBatches:
    """``batches(epoch)`` yields dicts of tensors for one worker's shard of one split."""

    shard: Any  # a Ray Data dataset or DataIterator
    _: KW_ONLY
    batch_size: int
    hold: bool
    shuffle: bool
    seed: int = 0
    rank: int = 0
    shuffle_buffer: int = 0
    _held: dict[str, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        if not self.hold:
            yield from self._stream(epoch)
            return
        if self._held is None:
            self._held = pull(self.shard)
        rows = len(next(iter(self._held.values()))) if self._held else 0
        if self.shuffle:
            generator = torch.Generator().manual_seed(shuffle_seed(self.seed, epoch, self.rank))
            order = torch.randperm(rows, generator=generator)
        else:
            order = torch.arange(rows)
        for start in range(0, rows, self.batch_size):
            index = order[start : start + self.batch_size]
            yield {name: value[index] for name, value in self._held.items()}

    def _stream(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        shuffled = self.shuffle and self.shuffle_buffer > 0
        yield from self.shard.iter_torch_batches(
            batch_size=self.batch_size,
            local_shuffle_buffer_size=self.shuffle_buffer if shuffled else None,
            local_shuffle_seed=shuffle_seed(self.seed, epoch, self.rank) if shuffled else None,
        )
