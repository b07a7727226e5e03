"""What the evaluate tests share: a dataset made by the real `dataset` step, and tiny models
fitted on it with plain PyTorch (full batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from orchestrator import Pipeline, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset


def made_dataset(root: Path, config: dict[str, Any]) -> tuple[ArtifactStore, Dataset]:
    """The store at ``root`` and the dataset the `dataset` step makes there from ``config``."""
    p = Pipeline("data")
    p.add("data", "dataset", config=config)
    record = run(p.spec, storage=str(root), executor="local")
    return ArtifactStore(str(root)), Dataset.model_validate(record.step("data").outputs["dataset"])


def fit(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> None:
    """``steps`` full-batch Adam steps of cross-entropy on (x, y)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
