"""Generalised Jensen-Shannon divergence per token, on dense or top-k teacher targets."""

from __future__ import annotations

from torch import Tensor

from components.losses.divergences import jsd_rows
from components.losses.registry import LossContext, register_loss
from components.losses.tokens import LogBins, TokenDivergence
from schemas.kd.losses import JSDLoss


class JSD(TokenDivergence[JSDLoss]):
    """L = T^2 * mean_rows [beta KL(p || m) + (1 - beta) KL(q || m)], m = beta p + (1 - beta) q,
    p the teacher's and q the student's softmax at T, summed over the vocabulary, averaged over
    the rows (tokens) or weighted by ``row_weights``. beta = 0.5 is the JSD (DistillKit's
    ``jsd``, checked dense and sparse); DistiLLM's ``js_distance(lam)`` is beta = 1 - lam.

    Targets ``topk`` with the rule
    - ``zero``: p = softmax(v / T) over the kept ids and 0 elsewhere; the student's mass outside
      the top-k, r_s, adds (1 - beta) r_s log(1 / (1 - beta)) (as DistillKit's ZERO).
    - ``symmetric_uniform``: the same formula over the kept ids and the rest (k + 1 bins).
    Part: "jsd" (the row mean, without T^2).
    """

    part = "jsd"

    def divergence(self, bins: LogBins) -> Tensor:
        return jsd_rows(bins.teacher, bins.student, self.spec.beta)


@register_loss(JSDLoss)
def _build(spec: JSDLoss, ctx: LossContext) -> JSD:
    return JSD(spec)
