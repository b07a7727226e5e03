"""Meta-DMoE's data: source rows with their experts' cached features, batched one domain at a
time (the official loader's ``n_groups_per_batch=1``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from components.artifacts.datasets import read_split, select_domains
from components.artifacts.logits import read_teacher_table
from components.training.data import align_teacher
from orchestrator import ArtifactStore
from schemas.kd.artifacts import Dataset, LogitShards


@dataclass
class ExpertRows:
    """Rows of some domains: inputs, labels, domain ids and every expert's features."""

    x: torch.Tensor  # (N, *feature_shape) float32
    y: torch.Tensor  # (N,) int64
    domain: torch.Tensor  # (N,) int64, index into Dataset.domains
    features: torch.Tensor  # (N, E, D) float32, expert e's penultimate features

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: torch.Tensor) -> ExpertRows:
        return ExpertRows(self.x[rows], self.y[rows], self.domain[rows], self.features[rows])


def load_expert_rows(
    store: ArtifactStore,
    dataset: Dataset,
    split: str,
    caches: list[LogitShards],
    exclude_domains: list[str],
) -> ExpertRows:
    """One split's rows outside ``exclude_domains``, in row_id order, with each cache's
    ``feature`` column aligned by row_id (verified reads, no expert runs)."""
    missing = [i for i, c in enumerate(caches) if c.feature is None]
    if missing:
        raise ValueError(
            f"expert caches {missing} hold no features: run their teacher_inference with "
            "`feature: penultimate`"
        )
    arrays = select_domains(read_split(store, dataset, split), dataset, None, exclude_domains)
    if arrays.domain is None:
        raise ValueError(
            f"Meta-DMoE needs a multi-domain dataset (`domains` in the dataset step); "
            f"{dataset.source} has none"
        )
    order = np.argsort(arrays.row_id, kind="stable")
    arrays = arrays.take(order)
    features = [
        align_teacher(read_teacher_table(store, cache, split), arrays.row_id, i, cache.path)[
            f"t{i}_feature"
        ].astype(np.float32)
        for i, cache in enumerate(caches)
    ]
    return ExpertRows(
        x=torch.from_numpy(np.ascontiguousarray(arrays.x, dtype=np.float32)),
        y=torch.from_numpy(arrays.y),
        domain=torch.from_numpy(arrays.domain),
        features=torch.from_numpy(np.stack(features, axis=1)),
    )


def domain_batches(
    domains: torch.Tensor, batch_size: int, min_rows: int, seed: int, epoch: int
) -> Iterator[torch.Tensor]:
    """Row indices of batches drawn from one domain each: every domain's rows are reshuffled
    and cut into ``batch_size`` pieces (a last piece smaller than ``min_rows`` is dropped), and
    the pieces of all domains are visited in a shuffled order. Seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    pieces: list[torch.Tensor] = []
    for domain in torch.unique(domains).tolist():
        rows = torch.nonzero(domains == domain).flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        pieces += [p for p in torch.split(rows, batch_size) if len(p) >= min_rows]
    for i in torch.randperm(len(pieces), generator=generator).tolist():
        yield pieces[i]
