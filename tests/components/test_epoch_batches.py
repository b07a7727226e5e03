"""A worker's epochs: held in memory (seeded full reshuffles) or streamed from Ray Data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.training.batches import HeldBatches, StreamBatches, pull

ROWS = 300


def columns() -> dict[str, torch.Tensor]:
    ids = torch.arange(ROWS)
    return {"row_id": ids, "x": ids.float().repeat(3, 1).T.contiguous(), "y": ids % 10}


def epoch_ids(data: HeldBatches | StreamBatches, epoch: int) -> list[int]:
    batches = list(data.batches(epoch))
    for batch in batches:
        assert torch.equal(batch["x"][:, 0].long(), batch["row_id"])  # rows stay whole
    return [int(i) for b in batches for i in b["row_id"]]


def test_held_epochs_are_full_seeded_reshuffles() -> None:
    data = HeldBatches(columns(), batch_size=64, shuffle=True, seed=3)
    first, second = epoch_ids(data, 0), epoch_ids(data, 1)
    assert sorted(first) == list(range(ROWS)) and first != second
    again = HeldBatches(columns(), batch_size=64, shuffle=True, seed=3)
    assert epoch_ids(again, 0) == first
    other_seed = HeldBatches(columns(), batch_size=64, shuffle=True, seed=4)
    assert epoch_ids(other_seed, 0) != first


def test_held_evaluation_order_is_fixed() -> None:
    data = HeldBatches(columns(), batch_size=128, shuffle=False)
    assert epoch_ids(data, 0) == list(range(ROWS)) == epoch_ids(data, 1)


@pytest.mark.ray
def test_streamed_shards_and_pull_from_ray_data(ray_cluster: str) -> None:
    import ray.data

    # Rows arrive out of row_id order, as they may from any Ray Data pipeline.
    ids = np.random.default_rng(1).permutation(ROWS)
    items = [
        {"row_id": int(i), "x": np.full(3, float(i), np.float32), "y": int(i) % 10} for i in ids
    ]
    shard = ray.data.from_items(items, override_num_blocks=4).materialize()
    held = pull(shard)
    assert held["row_id"].tolist() == list(range(ROWS))  # pulled shards are put in row_id order
    data = StreamBatches(shard, batch_size=64, shuffle=True, seed=3, shuffle_buffer=100)
    streamed = epoch_ids(data, 0)
    assert sorted(streamed) == list(range(ROWS))
