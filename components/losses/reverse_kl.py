"""Reverse KL per token (mode-seeking; MiniLLM, DistiLLM), on dense or top-k teacher targets."""

from __future__ import annotations

import torch
from torch import Tensor

from components.losses.divergences import kl_rows
from components.losses.registry import LossContext, register_loss
from components.losses.tokens import LogBins, TokenDivergence
from schemas.kd.losses import ReverseKLLoss


class ReverseKL(TokenDivergence[ReverseKLLoss]):
    """L = T^2 * mean_rows KL(q || p) = sum_v q_v log(q_v / p_v), q the student's and p the
    teacher's softmax at T, summed over the vocabulary and averaged over the rows (tokens), or
    weighted by ``row_weights``. Checked against DistiLLM's ``reverse_kl`` (dense, T = 1).

    Targets ``topk`` with the rule
    - ``zero``: the teacher has no mass outside its top-k, where KL(q || p) would be infinite,
      so both are renormalised over the k kept ids: KL(softmax(z_s[I] / T) || softmax(v / T)).
      The student's mass outside the top-k is then unconstrained.
    - ``symmetric_uniform``: over the kept ids and the rest, sum_i q_i log(q_i / p_i) +
      r_s log(r_s / r_t) (r_t floored at 1e-8).
    Part: "kl" (the row mean, without T^2).
    """

    def tail(self) -> bool:
        return False  # the rule zero renormalises the student over the top-k

    def divergence(self, bins: LogBins) -> Tensor:
        student = bins.student
        if self.spec.targets == "topk" and self.spec.missing == "zero":
            student = student - torch.logsumexp(student, dim=-1, keepdim=True)
        return kl_rows(student, bins.teacher)


@register_loss(ReverseKLLoss)
def _build(spec: ReverseKLLoss, ctx: LossContext) -> ReverseKL:
    return ReverseKL(spec)
