"""Forward KL per token, on dense or top-k teacher targets (the usual LM distillation loss)."""

from __future__ import annotations

from torch import Tensor

from components.losses.divergences import kl_rows
from components.losses.registry import LossContext, register_loss
from components.losses.tokens import LogBins, TokenDivergence
from schemas.kd.losses import ForwardKLLoss


class ForwardKL(TokenDivergence[ForwardKLLoss]):
    """L = T^2 * mean_rows KL(p || q), p = the teacher's and q = the student's softmax at T,
    KL(p || q) = sum_v p_v log(p_v / q_v) summed over the vocabulary, averaged over the rows
    (tokens), or sum_i w_i KL_i / sum_i w_i with ``row_weights``. No labels: add a ``ce`` term
    beside it for the next-token cross-entropy.

    Targets: ``dense`` reads the full teacher logits (several teachers: their mixture).
    ``topk`` with the rule
    - ``zero``: sum over the k kept ids of p^_i (log p^_i - log q_i) with p^ = softmax(v / T)
      over the top-k and q the student's full softmax at T, gathered (not renormalised): the
      teacher puts nothing elsewhere, so the rest adds 0. This is DistillKit's sparse KL with
      MissingProbabilityHandling.ZERO (checked to 1e-5 at T = 1 and 2).
    - ``symmetric_uniform``: sum_i p_i log(p_i / q_i) + r_t log(r_t / r_s) over the kept ids and
      the rest, r_t the teacher's and r_s the student's mass outside the top-k (DistillKit's
      SYMMETRIC_UNIFORM at T = 1; at T != 1 see `components.losses.tokens`).
    Part: "kl" (the row mean, without T^2).
    """

    def tail(self) -> bool:
        return False

    def divergence(self, bins: LogBins) -> Tensor:
        return kl_rows(bins.teacher, bins.student)


@register_loss(ForwardKLLoss)
def _build(spec: ForwardKLLoss, ctx: LossContext) -> ForwardKL:
    return ForwardKL(spec)
