"""The adaptive model `evaluate` scores: a student that adapts to each domain before predicting.

`AdaptiveMetaDMoE` holds the student, the aggregator and the frozen experts. ``adapt(x)`` runs
the experts on an unlabeled batch, aggregates their features (no mask: the target domain has no
expert) and takes the inner step on the student's feature extractor; ``predict(weights, x)``
scores rows with the adapted weights. The original student never changes, so each domain adapts
from the same meta-learned starting point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from components.metadmoe.meta import FastWeights, adapt, predict
from components.metadmoe.transformer import Aggregator
from components.models.zoo import KDModel


class AdaptiveMetaDMoE:
    """``adapt(x_unlabeled) -> weights``; ``predict(weights, x) -> logits``."""

    def __init__(
        self,
        student: KDModel,
        aggregator: Aggregator,
        experts: Sequence[KDModel],
        *,
        inner_lr: float,
        steps: int = 1,
    ):
        self.student = student.eval()
        self.aggregator = aggregator.eval()
        self.experts = nn.ModuleList(experts).eval().requires_grad_(False)
        self.inner_lr, self.steps = inner_lr, steps

    @torch.no_grad()
    def expert_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, E, D): every expert's penultimate features of ``x``."""
        return torch.stack([e.embed(x) for e in self.experts], dim=1)  # type: ignore[operator]

    def adapt(self, x_unlabeled: torch.Tensor) -> FastWeights:
        return adapt(
            self.student,
            self.aggregator,
            self.expert_features(x_unlabeled),
            x_unlabeled,
            self.inner_lr,
            self.steps,
        )

    def predict(self, weights: FastWeights, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        return torch.cat(
            [
                predict(self.student, weights, x[i : i + batch_size])
                for i in range(0, len(x), batch_size)
            ]
        )


def predict_per_domain(
    model: AdaptiveMetaDMoE,
    x: np.ndarray,
    row_id: np.ndarray,
    domain: np.ndarray | None,
    support_size: int,
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Logits of every row, each domain adapted on its own first ``support_size`` rows (in
    row_id order) and predicted with those weights; which row ids each domain adapted on.

    Domains never share an adaptation: a domain's predictions depend only on its own rows.
    """
    groups = np.zeros(len(x), dtype=np.int64) if domain is None else domain
    logits = np.zeros((len(x), model.student.classifier.out_features), dtype=np.float32)
    adapted_on: dict[str, list[int]] = {}
    for value in np.unique(groups):
        rows = np.flatnonzero(groups == value)
        rows = rows[np.argsort(row_id[rows], kind="stable")]
        support = rows[:support_size]
        weights = model.adapt(torch.from_numpy(x[support]))
        logits[rows] = model.predict(weights, torch.from_numpy(x[rows])).numpy()
        adapted_on[str(int(value))] = [int(r) for r in row_id[support]]
    return logits, adapted_on
