"""DistiLLM's skew KL per token (Ko et al., ICML 2024), on dense or top-k teacher targets."""

from __future__ import annotations

from torch import Tensor

from components.losses.divergences import skew_kl_rows
from components.losses.registry import LossContext, register_loss
from components.losses.tokens import LogBins, TokenDivergence
from schemas.kd.losses import SkewKLLoss


class SkewKL(TokenDivergence[SkewKLLoss]):
    """L = T^2 * mean_rows of, with p the teacher's and q the student's softmax at T,
    - direction ``forward``: KL(p || alpha p + (1 - alpha) q) (skew forward KL, SKL),
    - direction ``reverse``: KL(q || alpha q + (1 - alpha) p) (skew reverse KL, SRKL),
    summed over the vocabulary, averaged over the rows (tokens) or weighted by ``row_weights``.
    alpha = 0.1 as DistiLLM. Checked against DistiLLM's ``skewed_forward_kl`` and
    ``skewed_reverse_kl`` (dense, T = 1; its forward one is the cross-entropy
    -sum p log m, which is this KL plus the teacher's entropy).

    Targets ``topk`` with the rule
    - ``zero``: p = softmax(v / T) over the kept ids and 0 elsewhere. Forward: the rest adds 0.
      Reverse: the student's mass outside the top-k, r_s, adds r_s log(1 / alpha).
    - ``symmetric_uniform``: the same formulas over the kept ids and the rest (k + 1 bins).
    Part: "kl" (the row mean, without T^2).
    """

    def tail(self) -> bool:
        return self.spec.direction == "reverse"

    def divergence(self, bins: LogBins) -> Tensor:
        alpha = self.spec.alpha
        if self.spec.direction == "forward":
            return skew_kl_rows(bins.teacher, bins.student, alpha)
        return skew_kl_rows(bins.student, bins.teacher, alpha)


@register_loss(SkewKLLoss)
def _build(spec: SkewKLLoss, ctx: LossContext) -> SkewKL:
    return SkewKL(spec)
