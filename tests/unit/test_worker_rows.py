"""`worker_rows`: each DDP worker's share of held rows."""

from __future__ import annotations

import numpy as np
import pytest

from components.training.trainer import worker_rows


@pytest.mark.parametrize("rows,world", [(601, 2), (10, 3), (7, 4), (8, 2), (2, 3)])
def test_training_shares_are_equal_and_disjoint(rows: int, world: int) -> None:
    columns = {"x": np.arange(rows * 2).reshape(rows, 2), "row_id": np.arange(rows)}
    shares = [worker_rows(columns, r, world, equal=True)["row_id"] for r in range(world)]
    assert {len(s) for s in shares} == {rows // world}
    seen = np.concatenate(shares)
    assert len(np.unique(seen)) == len(seen) == rows // world * world  # at most world-1 left out
    assert np.array_equal(worker_rows(columns, 1, world, equal=True)["x"][:, 0] // 2, shares[1])


def test_evaluation_shares_keep_every_row() -> None:
    columns = {"row_id": np.arange(601)}
    shares = [worker_rows(columns, r, 2, equal=False)["row_id"] for r in range(2)]
    assert sorted(np.concatenate(shares).tolist()) == list(range(601))
