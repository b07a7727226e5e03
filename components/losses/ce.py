"""Cross-entropy with the hard labels."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from components.losses.base import KDBatch, LossTerm, cross_entropy, row_mean
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import CELoss


class CrossEntropy(LossTerm[CELoss]):
    """L = CE(y, softmax(z_s)), mean over the rows, optionally with label smoothing eps:
    L = (1 - eps) * (-log p_y) + eps * mean_c(-log p_c) (PyTorch's convention).

    For a language model a row is a token and y its next token (the next-token cross-entropy,
    averaged per token); with ``row_weights`` the mean is sum_i w_i CE_i / sum_i w_i.
    Part: "ce" (the same value, unweighted).
    """

    weighs_rows = True

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.labels is not None
        if batch.row_weights is None:
            value = cross_entropy(batch.student_logits, batch.labels, self.spec.label_smoothing)
        else:
            rows = F.cross_entropy(
                batch.student_logits.float(),
                batch.labels.long(),
                label_smoothing=self.spec.label_smoothing,
                reduction="none",
            )
            value = row_mean(rows, batch.row_weights)
        return value, {"ce": value.detach()}


@register_loss(CELoss)
def _build(spec: CELoss, ctx: LossContext) -> LossTerm[CELoss]:
    return CrossEntropy(spec)
