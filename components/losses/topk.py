"""Distillation from a top-k logit cache, and reconstructing full logits from one."""

from __future__ import annotations

import math
from typing import get_args

import torch
from torch import Tensor

from components.losses.base import (
    KDBatch,
    LossTerm,
    kl_from_log_probs,
    student_log_probs,
    teacher_log_probs,
    tempered_kl,
    with_label_fusion,
)
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import TopKKLLoss

RULES: tuple[str, ...] = get_args(TopKKLLoss.model_fields["rule"].annotation)
"""The rules for the mass outside the top-k, as the spec allows them."""
_MIN_REST = 1e-30  # rest mass ~0: the missing classes get this much mass in all (negligible)
_MIN_TOP = 1e-12  # rest mass ~1: the top-k keep at least this much


def densify_topk(indices: Tensor, values: Tensor, rest_mass: Tensor, num_classes: int) -> Tensor:
    """Full (..., K) float32 logits from a top-k cache, spreading the missing mass uniformly.

    Every class outside the top-k gets the same logit m, chosen so that their softmax mass at
    T = 1 totals ``rest_mass``: with log Z = logsumexp(values) - log(1 - rest),
    m = log(rest / (K - k)) + log Z. Then softmax(result) reproduces the teacher's top-k
    probabilities exactly (p_i = exp(v_i) / Z) and gives each missing class rest / (K - k).
    Guards: rest is clamped to [1e-30, 1 - 1e-12] (so rest ~ 0 puts the missing classes ~69
    nats below, and a cache whose top-k mass rounds to 0 stays finite); with k == K there is
    nothing to fill. Computed in float64. Works for any leading dims ((B, k) or (M, B, k)).
    Note that with a heavy tail m may exceed the k-th cached logit: the mass constraint wins.
    """
    k = indices.shape[-1]
    if k > num_classes:
        raise ValueError(f"a top-{k} cache cannot belong to {num_classes} classes")
    v = values.double()
    shape = (*v.shape[:-1], num_classes)
    if k == num_classes:
        out = v.new_zeros(shape)
    else:
        rest = rest_mass.double().clamp(_MIN_REST, 1.0 - _MIN_TOP)
        log_z = torch.logsumexp(v, dim=-1) - torch.log1p(-rest)
        fill = torch.log(rest) - math.log(num_classes - k) + log_z
        out = fill[..., None].expand(shape).clone()
    out.scatter_(-1, indices.long(), v)
    return out.float()


class TopKKD(LossTerm[TopKKLLoss]):
    """L = (1 - alpha) * CE(y, softmax(z_s)) + alpha * T^2 * KL(target || student), from a cache
    of the teacher's k largest logits (values v at indices I) and its rest mass at T = 1.

    Rules for the probability mass outside the top-k:
    - "uniform" (default): densify_topk (the missing mass spread evenly over the K - k classes
      at T = 1), then the ordinary KL at T over all K classes against softmax(z_s / T).
      Assumes a flat tail; exact when k = K (then it is Hinton KD).
    - "renormalize": target softmax(v / T) over the top-k only; the student is restricted to
      the same k classes and renormalised, softmax(z_s[I] / T). Assumes the tail carries no
      information and ignores the rest mass; the student's tail is unconstrained.
    - "bucket": k + 1 bins, the top-k classes plus one "other" bin. The teacher's bins are the
      densified (uniform-tail) softmax at T, its other bin their mass outside I; the student's
      other bin is the sum of softmax(z_s / T) outside I. Keeps the tail's total mass at every
      T without assuming how the student spreads it.
    Conventions as in Hinton KD: alpha on the KD term, KL summed over classes/bins and averaged
    over the batch, CE at T = 1, T^2 on the KL; labels needed only when alpha < 1.
    Several teachers ((M, B, k) caches) only with "uniform": the target is the mean of their
    densified softmaxes at T. Parts (unweighted): "kl" (without T^2), "ce" when labels exist.
    """

    def __init__(self, spec: TopKKLLoss, num_classes: int) -> None:
        super().__init__(spec)
        self.num_classes = int(num_classes)

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        idx, val = batch.teacher_topk_indices, batch.teacher_topk_values
        assert idx is not None and val is not None
        z_s = batch.student_logits.float()
        if z_s.shape[-1] != self.num_classes:
            raise ValueError(
                f"loss 'topk_kl' was built for {self.num_classes} classes, "
                f"the student gives {z_s.shape[-1]}"
            )
        rule = self.spec.rule
        if idx.dim() == 3 and rule != "uniform":
            raise ValueError(
                f"loss 'topk_kl' with rule {rule!r} takes one teacher's cache; use "
                "rule 'uniform' for several teachers, or one term per teacher"
            )
        T, idx = self.spec.temperature, idx.long()
        if rule == "renormalize":
            kl = kl_from_log_probs(
                student_log_probs(val, T), student_log_probs(z_s.gather(1, idx), T)
            )
        else:
            assert batch.teacher_rest_mass is not None
            dense = densify_topk(idx, val, batch.teacher_rest_mass, self.num_classes)
            if rule == "uniform":  # Hinton KD against the densified teacher
                kl = tempered_kl(dense, z_s, T, batch.teacher_weights)
            else:
                logp_t = teacher_log_probs(dense, T, batch.teacher_weights)
                kl = kl_from_log_probs(_bins(logp_t, idx), _bins(student_log_probs(z_s, T), idx))
        return with_label_fusion(kl, batch, self.spec.alpha, T)


def _bins(logp: Tensor, idx: Tensor) -> Tensor:
    """(B, k + 1) log-masses: the classes in ``idx``, then everything else in one bin."""
    top = logp.gather(1, idx)
    if idx.shape[1] == logp.shape[1]:
        return top
    inside = torch.zeros_like(logp, dtype=torch.bool).scatter_(1, idx, True)
    other = torch.logsumexp(logp.masked_fill(inside, float("-inf")), dim=1, keepdim=True)
    return torch.cat([top, other], dim=1)


@register_loss(TopKKLLoss)
def _build(spec: TopKKLLoss, ctx: LossContext) -> LossTerm[TopKKLLoss]:
    return TopKKD(spec, ctx.num_classes)
