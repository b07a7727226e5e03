"""Hinton et al. (2015) knowledge distillation."""

from __future__ import annotations

from torch import Tensor

from components.losses.base import KDBatch, LossTerm, tempered_kl, with_label_fusion
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import KDLoss


class HintonKD(LossTerm[KDLoss]):
    """L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)).

    Conventions:
    - alpha is the fusion ratio *on the KD term*; the CE term gets 1 - alpha (mdistiller's
      CIFAR defaults: T = 4, alpha = 0.9). torchdistill puts alpha on CE instead: not here.
    - The KL is summed over classes and averaged over the batch ("batchmean"); the CE is at
      T = 1. The T^2 factor keeps the KD gradient's magnitude roughly independent of T.
    - Several teachers ((M, B, K) logits): the target is the mean of their softmaxes at T.
    - Labels are needed only when alpha < 1; with alpha == 1 and no labels the CE is skipped.

    Parts (unweighted): "kl" (the batchmean KL, without T^2) and "ce" (whenever labels exist).
    """

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.teacher_logits is not None
        T = self.spec.temperature
        kl = tempered_kl(batch.teacher_logits, batch.student_logits, T, batch.teacher_weights)
        return with_label_fusion(kl, batch, self.spec.alpha, T)


@register_loss(KDLoss)
def _build(spec: KDLoss, ctx: LossContext) -> LossTerm[KDLoss]:
    return HintonKD(spec)
