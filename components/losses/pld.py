"""Plackett-Luce distillation (Bassam, Zhu and Bian, "PLD: A Choice-Theoretic List-Wise
Knowledge Distillation", arXiv:2506.12542, 2025)."""

from __future__ import annotations

import torch
from torch import Tensor

from components.losses.base import KDBatch, LossTerm, teacher_log_probs
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import PLDLoss


class PlackettLuceKD(LossTerm[PLDLoss]):
    """L = sum_k a_k * (logsumexp_{j>=k} z_s[pi_j] - z_s[pi_k]), mean over the batch.

    pi (the "teacher-optimal" permutation) puts the true label first, then the other classes in
    the teacher's descending order (ties broken by class index); a_k = softmax(z_t / tau)[pi_k]
    are the teacher's confidences. Each summand is -log of one Plackett-Luce choice step of the
    student, so the loss is convex in z_s and translation-invariant. Its k = 1 term is a
    weighted CE, so PLD replaces CE + KD (use it alone; no alpha, no T^2). The suffix
    logsumexps come from a reversed logcumsumexp.

    tau: the paper's ImageNet ablation (Table 6) is best at tau = 1 (no softening), our default;
    its CIFAR-100 runs used tau = 4.
    Several teachers: ranking and weights use the mean of their softmaxes at tau.
    Part: "pl" (unweighted).
    """

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.teacher_logits is not None and batch.labels is not None
        z_s, y = batch.student_logits.float(), batch.labels.long()
        logw = teacher_log_probs(batch.teacher_logits, self.spec.temperature, batch.teacher_weights)
        score = logw.detach().clone()
        score.scatter_(1, y[:, None], float("inf"))  # the label ranks first
        order = torch.sort(score, dim=1, descending=True, stable=True).indices
        s = z_s.gather(1, order)
        suffix = torch.logcumsumexp(s.flip(1), dim=1).flip(1)
        value = (logw.gather(1, order).exp() * (suffix - s)).sum(1).mean()
        return value, {"pl": value.detach()}


@register_loss(PLDLoss)
def _build(spec: PLDLoss, ctx: LossContext) -> LossTerm[PLDLoss]:
    return PlackettLuceKD(spec)
