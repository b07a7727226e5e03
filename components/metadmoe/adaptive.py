"""The adaptive model `evaluate` scores: a student that adapts to each domain before predicting.

`AdaptiveMetaDMoE` holds the student, the aggregator and the frozen experts. ``adapt(x)`` runs
the experts on an unlabeled batch, aggregates their features (no mask: the target domain has no
expert) and takes the inner step on the student's feature extractor; ``predict(weights, x)``
scores rows with the adapted weights. The original student never changes, so each domain adapts
from the same meta-learned starting point. With ``entropy=True`` (the control of
``adaptation: entropy``) the step minimises the student's prediction entropy instead, and no
expert runs.

`predict_per_domain` cross-fits: a domain's rows (by row_id) are cut into disjoint batches,
each batch adapts a copy of the weights, and every row is predicted with the weights of another
batch, so no row is scored by an adaptation that saw it and the score averages over every
batch of the domain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from components.metadmoe.meta import FastWeights, adapt, adapt_entropy, predict
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
        entropy: bool = False,
    ):
        self.student = student.eval()
        self.aggregator = aggregator.eval()
        self.experts = nn.ModuleList(experts).eval().requires_grad_(False)
        self.inner_lr, self.steps, self.entropy = inner_lr, steps, entropy

    @torch.no_grad()
    def expert_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, E, D): every expert's penultimate features of ``x``."""
        return torch.stack([e.embed(x) for e in self.experts], dim=1)  # type: ignore[operator]

    def adapt(self, x_unlabeled: torch.Tensor) -> FastWeights:
        if self.entropy:
            return adapt_entropy(self.student, x_unlabeled, self.inner_lr, self.steps)
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


def adaptation_batches(rows: np.ndarray, support_size: int) -> list[np.ndarray]:
    """``rows`` (already in row_id order) cut into K = max(2, len // support_size) consecutive
    disjoint chunks (sizes differ by at most one); a single row is one chunk."""
    if len(rows) < 2:
        return [rows]
    return list(np.array_split(rows, max(2, len(rows) // support_size)))


def predict_per_domain(
    model: AdaptiveMetaDMoE,
    x: np.ndarray,
    row_id: np.ndarray,
    domain: np.ndarray | None,
    support_size: int,
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Logits of every row, cross-fitted per domain, and the rows each domain adapted on.

    A domain's rows, in row_id order, are cut into disjoint chunks (`adaptation_batches`); each
    chunk's first ``support_size`` rows (unlabeled) adapt the student once, and the rows of
    chunk k are predicted with the weights of chunk k + 1 (the last with the first's). So every
    row is scored, never with weights adapted on itself, and the score averages over all the
    chunks' adaptations (a domain of 830 rows and batches of 24: 34 of them). Domains never
    share an adaptation: a domain's predictions depend only on its own rows. A domain of one
    row adapts on itself (nothing else is there).
    """
    groups = np.zeros(len(x), dtype=np.int64) if domain is None else domain
    logits = np.zeros((len(x), model.student.classifier.out_features), dtype=np.float32)
    adapted_on: dict[str, list[int]] = {}
    for value in np.unique(groups):
        rows = np.flatnonzero(groups == value)
        rows = rows[np.argsort(row_id[rows], kind="stable")]
        chunks = adaptation_batches(rows, support_size)
        supports = [chunk[:support_size] for chunk in chunks]
        for k, chunk in enumerate(chunks):
            support = supports[(k + 1) % len(chunks)]
            weights = model.adapt(torch.from_numpy(x[support]))
            logits[chunk] = model.predict(weights, torch.from_numpy(x[chunk])).numpy()
        adapted_on[str(int(value))] = [int(r) for s in supports for r in row_id[s]]
    return logits, adapted_on
