"""FitNets hint loss (Romero et al., 2015) on penultimate embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.losses.base import KDBatch, LossTerm, mean_teacher_features
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import HintLoss


class FeatureHint(LossTerm[HintLoss]):
    """L = mean over batch and dims of (W s_i + b - t_i)^2, (W, b) a learned linear regressor.

    The regressor maps the student's width to the teacher's and trains with the student (it is
    a submodule, so it is optimised and saved). When the widths are equal it starts as the
    identity (W = I, b = 0), so the loss starts as the plain MSE between the embeddings.
    Several teachers: t_i is the mean of their embeddings. Part: "hint" (unweighted).
    """

    def __init__(self, spec: HintLoss, student_dim: int, teacher_dim: int) -> None:
        super().__init__(spec)
        self.projector = nn.Linear(student_dim, teacher_dim)
        if student_dim == teacher_dim:
            with torch.no_grad():
                self.projector.weight.copy_(torch.eye(student_dim))
                self.projector.bias.zero_()

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.student_features is not None and batch.teacher_features is not None
        t = mean_teacher_features(batch.teacher_features, batch.teacher_weights)
        value = F.mse_loss(self.projector(batch.student_features.float()), t)
        return value, {"hint": value.detach()}


@register_loss(HintLoss)
def _build(spec: HintLoss, ctx: LossContext) -> LossTerm[HintLoss]:
    lacking = [
        name
        for name, value in (
            ("student_feature_dim", ctx.student_feature_dim),
            ("teacher_feature_dim", ctx.teacher_feature_dim),
        )
        if value is None
    ]
    if lacking:
        raise ValueError(
            f"loss 'hint' needs {' and '.join(lacking)} (the widths of the penultimate "
            "features, to size its projector; cache the teacher's `feature: penultimate`)"
        )
    assert ctx.student_feature_dim is not None and ctx.teacher_feature_dim is not None
    return FeatureHint(spec, ctx.student_feature_dim, ctx.teacher_feature_dim)
