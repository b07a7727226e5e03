"""Temporally adaptive interpolated distillation (TAID; Shing et al., ICLR 2025)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from components.losses.base import (
    KDBatch,
    LossTerm,
    soft_cross_entropy,
    student_log_probs,
    teacher_log_probs,
)
from components.losses.registry import LossContext, register_loss
from schemas.kd.losses import TAIDLoss


def _sigmoid(x: float) -> float:
    """Logistic function that does not overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class TAID(LossTerm[TAIDLoss]):
    """L = -sum_c p_t[c] * log softmax(z_s)[c], mean over the batch, with the intermediate target
    p_t = softmax((1 - t) * stopgrad(z_s) + t * z_t), which moves from the student (t = 0)
    to the teacher (t = 1). No labels, no temperature, no T^2.

    Schedule (`on_step_end`, once per optimiser step, as in the official code): with l this
    term's own loss for the step (the mean over the step's training-mode forwards; the
    ``loss_value`` argument is used only when none was recorded) and l_prev the previous one,
        m <- beta * m + (1 - beta) * (l_prev - l) / l_prev
        delta = alpha * sigmoid(m) * (1 - t)
        t <- min(t_end, max(t_start + (t_end - t_start) * n / total_steps, t + delta))
    where n is the number of steps done. The first step only records l (t stays t_start).
    t never decreases and reaches t_end by the last step. t, m, l_prev and n are float64/int64
    buffers, so they are saved in ``state_dict()`` and a resumed run continues the schedule.

    Several teachers: z_t is the log of their mean softmax (for one teacher this differs from
    z_t by a per-row constant, which the softmax ignores). Parts: "taid" (unweighted), "t".
    """

    t: Tensor
    m: Tensor
    prev_loss: Tensor
    steps: Tensor

    def __init__(self, spec: TAIDLoss, total_steps: int) -> None:
        super().__init__(spec)
        if total_steps < 1:
            raise ValueError(f"loss 'taid' needs total_steps >= 1, got {total_steps}")
        self.total_steps = int(total_steps)
        self.register_buffer("t", torch.tensor(spec.t_start, dtype=torch.float64))
        self.register_buffer("m", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("prev_loss", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))
        self._pending: list[Tensor] = []  # this step's own losses (training-mode forwards)

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.teacher_logits is not None
        t = float(self.t)
        z_s = batch.student_logits.float()
        z_t = teacher_log_probs(batch.teacher_logits, 1.0, batch.teacher_weights)
        target = F.softmax((1 - t) * z_s.detach() + t * z_t, dim=-1)
        value = soft_cross_entropy(target, student_log_probs(z_s))
        if self.training and torch.is_grad_enabled():
            self._pending.append(value.detach())
        return value, {"taid": value.detach(), "t": torch.tensor(t)}

    def on_step_end(self, loss_value: float) -> None:
        pending, self._pending = self._pending, []
        loss = float(torch.stack(pending).mean()) if pending else float(loss_value)
        self.steps.add_(1)
        prev, spec = float(self.prev_loss), self.spec
        if not math.isnan(prev):
            m = spec.beta * float(self.m) + (1 - spec.beta) * (prev - loss) / (prev + 1e-15)
            t = float(self.t)
            delta = spec.alpha * _sigmoid(m) * (1 - t)
            progress = min(int(self.steps) / self.total_steps, 1.0)
            floor = spec.t_start + (spec.t_end - spec.t_start) * progress
            self.m.fill_(m)
            self.t.fill_(min(spec.t_end, max(floor, t + delta)))
        self.prev_loss.fill_(loss)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, t={float(self.t):.4f}, total_steps={self.total_steps}"


@register_loss(TAIDLoss)
def _build(spec: TAIDLoss, ctx: LossContext) -> LossTerm[TAIDLoss]:
    if ctx.total_steps is None:
        raise ValueError(
            "loss 'taid' needs total_steps (its interpolation schedule spans the whole run)"
        )
    return TAID(spec, ctx.total_steps)
