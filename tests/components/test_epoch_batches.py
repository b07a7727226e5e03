"""A worker's epochs from a real Ray Data shard: held in memory (seeded reshuffles) or streamed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.training.batches import EpochBatches

pytestmark = pytest.mark.ray

ROWS = 300


@pytest.fixture()
def shard(ray_cluster: str) -> object:
    import ray.data

    # Rows arrive out of row_id order, as they may from any Ray Data pipeline.
    ids = np.random.default_rng(1).permutation(ROWS)
    items = [
        {"row_id": int(i), "x": np.full(3, float(i), np.float32), "y": int(i) % 10} for i in ids
    ]
    return ray.data.from_items(items, override_num_blocks=4).materialize()


def epoch_ids(data: EpochBatches, epoch: int) -> list[int]:
    batches = list(data.batches(epoch))
    for batch in batches:
        assert torch.equal(batch["x"][:, 0].long(), batch["row_id"])  # columns stay aligned
    return [int(i) for b in batches for i in b["row_id"]]


def test_held_epochs_cover_every_row_in_a_seeded_order(shard: object) -> None:
    data = EpochBatches(shard, batch_size=64, hold=True, shuffle=True, seed=3)
    first, second = epoch_ids(data, 0), epoch_ids(data, 1)
    assert sorted(first) == sorted(second) == list(range(ROWS))
    assert first != second  # reshuffled every epoch
    again = EpochBatches(shard, batch_size=64, hold=True, shuffle=True, seed=3)
    assert epoch_ids(again, 0) == first and epoch_ids(again, 1) == second  # a function of the seed
    other_seed = EpochBatches(shard, batch_size=64, hold=True, shuffle=True, seed=4)
    assert epoch_ids(other_seed, 0) != first
    assert [len(b["y"]) for b in data.batches(0)] == [64, 64, 64, 64, 44]


def test_unshuffled_held_epochs_are_in_row_id_order(shard: object) -> None:
    data = EpochBatches(shard, batch_size=128, hold=True, shuffle=False)
    assert epoch_ids(data, 0) == epoch_ids(data, 5) == list(range(ROWS))


def test_streamed_epochs_cover_every_row(shard: object) -> None:
    data = EpochBatches(shard, batch_size=64, hold=False, shuffle=True, seed=3, shuffle_buffer=100)
    assert sorted(epoch_ids(data, 0)) == list(range(ROWS))
