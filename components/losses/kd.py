"""Hinton et al. (2015) knowledge distillation."""

from __future__ import annotations

from torch import Tensor

from components.losses.base import (
    KDBatch,
    LossTerm,
    cross_entropy,
    kl_from_log_probs,
    student_log_probs,
    teacher_log_probs,
)
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import KDLoss


class HintonKD(LossTerm):
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

    name = "kd"

    def __init__(self, weight: float = 1.0, temperature: float = 4.0, alpha: float = 0.9) -> None:
        super().__init__(weight)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        needs = {"student_logits", "teacher_logits"} | ({"labels"} if self.alpha < 1 else set())
        self.requires = frozenset(needs)

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.teacher_logits is not None
        T = self.temperature
        kl = kl_from_log_probs(
            teacher_log_probs(batch.teacher_logits, T, batch.teacher_weights),
            student_log_probs(batch.student_logits, T),
        )
        value = self.alpha * T * T * kl
        parts = {"kl": kl.detach()}
        if batch.labels is not None:
            ce = cross_entropy(batch.student_logits, batch.labels)
            value = value + (1 - self.alpha) * ce
            parts["ce"] = ce.detach()
        return value, parts

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}, alpha={self.alpha}"


@register_loss(KDLoss)
def _build(spec: KDLoss, ctx: LossContext) -> LossTerm:
    return HintonKD(weight=spec.weight, temperature=spec.temperature, alpha=spec.alpha)
