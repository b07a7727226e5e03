"""MEAL V2 (Shen and Savvides, 2020): distillation from an ensemble's averaged prediction."""

from __future__ import annotations

from torch import Tensor

from components.losses.base import (
    KDBatch,
    LossTerm,
    soft_cross_entropy,
    student_log_probs,
    teacher_log_probs,
)
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import MEALLoss


class MEALV2(LossTerm[MEALLoss]):
    """L = -sum_c p_bar[c] * log softmax(z_s)[c], mean over the batch.

    p_bar is the mean over teachers of softmax(z_t^m) at T = 1 (one teacher: its softmax). No
    hard labels, no temperature, no T^2. The paper's optional logit discriminator is not
    included. This equals KL(p_bar || softmax(z_s)) plus the (constant) entropy of p_bar.
    Part: "soft_ce" (unweighted).
    """

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.teacher_logits is not None
        target = teacher_log_probs(batch.teacher_logits, 1.0, batch.teacher_weights).exp()
        value = soft_cross_entropy(target, student_log_probs(batch.student_logits))
        return value, {"soft_ce": value.detach()}


@register_loss(MEALLoss)
def _build(spec: MEALLoss, ctx: LossContext) -> LossTerm[MEALLoss]:
    return MEALV2(spec)
