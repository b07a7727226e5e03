"""Decoupled knowledge distillation (Zhao et al., CVPR 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from components.losses.base import (
    KDBatch,
    LossTerm,
    cross_entropy,
    kl_from_log_probs,
    other_classes,
    student_log_probs,
    teacher_log_probs,
)
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import DKDLoss


def _binary_log_probs(logp: Tensor, labels: Tensor, others: Tensor) -> Tensor:
    """log [p_gt, 1 - p_gt] from log-probabilities, with 1 - p_gt as a logsumexp (no log(1-p))."""
    gt = logp.gather(1, labels[:, None])
    rest = torch.logsumexp(logp.gather(1, others), dim=1, keepdim=True)
    return torch.cat([gt, rest], dim=1)


def _non_target_log_probs(logp: Tensor, others: Tensor) -> Tensor:
    """log of the distribution over the non-target classes only, renormalised."""
    nt = logp.gather(1, others)
    return nt - torch.logsumexp(nt, dim=1, keepdim=True)


class DecoupledKD(LossTerm[DKDLoss]):
    """L = ce_weight * CE + min(epoch / warmup, 1) * (alpha * TCKD + beta * NCKD).

    With p = softmax(z / T):
    - TCKD = T^2 * KL(b_t || b_s), b = [p_gt, 1 - p_gt] (target vs all non-target classes);
    - NCKD = T^2 * KL(p^_t || p^_s), p^ = the softmax over the non-target classes only.
    The official code masks the target logit by subtracting 1000 before the softmax; here the
    target column is removed instead, which is the exact limit of that mask. Both KLs are
    summed over bins/classes and averaged over the batch; CE is at T = 1. warmup = 0 means no
    ramp. Defaults (CIFAR): alpha = 1, beta = 8, T = 4, warmup = 20 epochs, ce_weight = 1.
    alpha and beta here are DKD's own weights, not a fusion ratio.
    Several teachers: b_t and p^_t come from the mean of their softmaxes at T.

    Parts (unweighted, without the ramp, alpha or beta; TCKD/NCKD include T^2): "ce", "tckd",
    "nckd".
    """

    def ramp(self, epoch: float) -> float:
        """The warm-up factor min(epoch / warmup, 1) (1 when warmup is 0)."""
        warmup = self.spec.warmup
        return min(max(epoch, 0.0) / warmup, 1.0) if warmup > 0 else 1.0

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.teacher_logits is not None and batch.labels is not None
        T, spec = self.spec.temperature, self.spec
        y = batch.labels.long()
        logp_s = student_log_probs(batch.student_logits, T)
        logp_t = teacher_log_probs(batch.teacher_logits, T, batch.teacher_weights)
        others = other_classes(y, logp_s.shape[-1])
        tckd = (
            T
            * T
            * kl_from_log_probs(
                _binary_log_probs(logp_t, y, others), _binary_log_probs(logp_s, y, others)
            )
        )
        nckd = (
            T
            * T
            * kl_from_log_probs(
                _non_target_log_probs(logp_t, others), _non_target_log_probs(logp_s, others)
            )
        )
        ce = cross_entropy(batch.student_logits, y)
        value = spec.ce_weight * ce + self.ramp(batch.epoch) * (
            spec.alpha * tckd + spec.beta * nckd
        )
        return value, {"ce": ce.detach(), "tckd": tckd.detach(), "nckd": nckd.detach()}


@register_loss(DKDLoss)
def _build(spec: DKDLoss, ctx: LossContext) -> LossTerm[DKDLoss]:
    return DecoupledKD(spec)
