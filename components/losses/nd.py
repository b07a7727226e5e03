"""Feature norm-and-direction (ND) loss against the teacher's class-mean embeddings."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from components.losses.base import KDBatch, LossTerm, mean_teacher_features
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import NDLoss

_EPS = 1e-12


class NormDirection(LossTerm[NDLoss]):
    """L_nd = (1/B) * sum_i [1 - <s_i, e_{y_i} / ||e_{y_i}||> / max(||s_i||, ||t_i||)].

    e_c is the teacher's mean penultimate embedding of class c over the training set ((K, Dt),
    given at build time and kept as a buffer); s_i is the student's embedding, through a learned
    linear projector without bias when its width differs from the teacher's (identity when
    equal); t_i is the teacher's embedding of the same sample. The direction term pulls s_i
    towards e_{y_i}; dividing by max(||s_i||, ||t_i||) also rewards norms up to the teacher's,
    so L_nd = 0 exactly when s_i points along e_{y_i} with ||s_i|| >= ||t_i||.

    `weight` is lambda_nd (default 2.0): this term is only lambda_nd * L_nd; add `ce` and `kd`
    terms beside it for the paper's CE + lambda_kd * KD + lambda_nd * L_nd.
    Several teachers: t_i is the mean of their embeddings. Part: "nd" (unweighted L_nd).
    """

    class_means: Tensor

    def __init__(self, spec: NDLoss, class_means: Tensor, student_dim: int) -> None:
        super().__init__(spec)
        if class_means.dim() != 2:
            shape = tuple(class_means.shape)
            raise ValueError(f"loss 'nd' needs class_means of shape (K, dim), got {shape}")
        self.register_buffer("class_means", class_means.detach().float().clone())
        teacher_dim = class_means.shape[1]
        self.projector: nn.Module = (
            nn.Identity()
            if student_dim == teacher_dim
            else nn.Linear(student_dim, teacher_dim, bias=False)
        )

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.student_features is not None and batch.teacher_features is not None
        assert batch.labels is not None
        s = self.projector(batch.student_features.float())
        t = mean_teacher_features(batch.teacher_features, batch.teacher_weights)
        e = self.class_means[batch.labels.long()]
        e = e / e.norm(dim=1, keepdim=True).clamp_min(_EPS)
        denom = torch.maximum(s.norm(dim=1), t.norm(dim=1)).clamp_min(_EPS)
        value = (1 - (s * e).sum(1) / denom).mean()
        return value, {"nd": value.detach()}


@register_loss(NDLoss)
def _build(spec: NDLoss, ctx: LossContext) -> LossTerm[NDLoss]:
    if ctx.class_means is None:
        raise ValueError(
            "loss 'nd' needs class_means (the teacher's per-class mean penultimate features, "
            "(num_classes, teacher_dim); cache them with teacher_inference `feature: penultimate`)"
        )
    if ctx.student_feature_dim is None:
        raise ValueError(
            "loss 'nd' needs student_feature_dim (the width of the student's penultimate "
            "features, to size its projector)"
        )
    means = ctx.class_means
    if means.dim() != 2 or means.shape[0] != ctx.num_classes:
        raise ValueError(
            f"loss 'nd' needs class_means of shape ({ctx.num_classes}, teacher_dim), "
            f"got {tuple(means.shape)}"
        )
    if ctx.teacher_feature_dim is not None and means.shape[1] != ctx.teacher_feature_dim:
        raise ValueError(
            f"loss 'nd': class_means have width {means.shape[1]} but teacher_feature_dim is "
            f"{ctx.teacher_feature_dim}"
        )
    return NormDirection(spec, means, ctx.student_feature_dim)
