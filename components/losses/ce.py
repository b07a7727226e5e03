"""Cross-entropy with the hard labels."""

from __future__ import annotations

from torch import Tensor

from components.losses.base import KDBatch, LossTerm, cross_entropy
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import CELoss


class CrossEntropy(LossTerm[CELoss]):
    """L = CE(y, softmax(z_s)), mean over the batch, optionally with label smoothing eps:
    L = (1 - eps) * (-log p_y) + eps * mean_c(-log p_c) (PyTorch's convention).

    Part: "ce" (the same value, unweighted).
    """

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.labels is not None
        value = cross_entropy(batch.student_logits, batch.labels, self.spec.label_smoothing)
        return value, {"ce": value.detach()}


@register_loss(CELoss)
def _build(spec: CELoss, ctx: LossContext) -> LossTerm[CELoss]:
    return CrossEntropy(spec)
