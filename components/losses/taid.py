"""Temporally adaptive interpolated distillation (TAID; Shing et al., ICLR 2025), for class
logits and for the tokens of a language model (dense or top-k targets)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from components.losses.base import KDBatch, LossTerm, row_mean
from components.losses.registry import LossContext, register_loss
from components.losses.tokens import dense_bins, target_problem, targets_advice, topk_bins
from schemas.kd.losses import TAIDLoss


def _sigmoid(x: float) -> float:
    """Logistic function that does not overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _ids_in_rest_bin(spec: TAIDLoss, batch: KDBatch) -> int:
    """V - k when the bins end with the ids outside a top-k (rule symmetric_uniform), else 0."""
    if spec.targets != "topk" or spec.missing != "symmetric_uniform":
        return 0
    assert batch.teacher_topk_indices is not None
    return batch.student_logits.shape[-1] - batch.teacher_topk_indices.shape[-1]


class TAID(LossTerm[TAIDLoss]):
    """L = -sum_c p_t[c] * log softmax(z_s)[c] per row, averaged over the rows (tokens, or
    samples; weighted by ``row_weights`` when the batch has them), with the intermediate target
    p_t = softmax((1 - t) * stopgrad(z_s) + t * z_t), which moves from the student (t = 0)
    to the teacher (t = 1). No labels, no temperature, no T^2. As in the official code
    (SakanaAI/TAID, src/distil_losses/taid.py) the value is this cross-entropy, which is
    KL(p_t || q) plus the entropy of p_t (the same gradient: p_t is detached).

    Targets (``targets``, ``missing``; `components.losses.tokens`): ``dense`` interpolates the
    full logits. ``topk`` interpolates log-probabilities over the cache's bins: with the rule
    ``zero`` the teacher has no mass outside its k ids, so the target lives on them,
    p_t = softmax((1 - t) * log q_I + t * log p^_I) over the top-k, and the cross-entropy is
    against the student's full softmax gathered there; with ``symmetric_uniform`` over k + 1
    bins (the kept ids and the rest, whose log-masses are log r_s and log r_t), the rest's
    share of the cross-entropy taken as over its V - k ids (each log q = log(r_s / (V - k))),
    so that for a teacher and a student whose tails are flat it equals the dense TAID.

    Schedule (`on_step_end`, once per optimiser step, as the official ``update_t``): with l this
    term's own loss for the step (the mean over the step's training-mode forwards; the
    ``loss_value`` argument is used only when none was recorded) and l_prev the previous one,
        m <- beta * m + (1 - beta) * (l_prev - l) / l_prev
        delta = alpha * sigmoid(m) * (1 - t)
        t <- min(t_end, max(t_start + (t_end - t_start) * n / total_steps, t + delta))
    where n is the index of the step just done, counted from 0 (the official code's
    ``global_step`` during that step). The first step only records l (t stays t_start).
    t never decreases; its linear floor reaches t_end after the run's last step. Checked
    against the official code on the same losses (values and t to 1e-6). t, m, l_prev and the
    step count are float64/int64 buffers, so they are saved in ``state_dict()`` and a resumed
    run continues the schedule. With gradient accumulation the official code updates t once
    per forward; here once per optimiser step, on the mean of its forwards.

    Several teachers (dense): z_t is the log of their mean softmax (for one teacher this
    differs from z_t by a per-row constant, which the softmax ignores). Parts: "taid"
    (unweighted), "t".
    """

    weighs_rows = True

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
        why = target_problem(self.name, self.spec, batch)
        if why is not None:
            raise ValueError(why)
        t = float(self.t)
        if self.spec.targets == "dense":
            bins = dense_bins(batch, 1.0)
        else:
            bins = topk_bins(batch, 1.0, self.spec.missing, tail=False)
        target = F.softmax((1 - t) * bins.student.detach() + t * bins.teacher, dim=-1)
        rows = -(target * bins.student).sum(-1)
        spread = _ids_in_rest_bin(self.spec, batch)
        if spread > 1:  # the rest bin's CE as over its V - k ids: log q_j = log r_s - log(V - k)
            rows = rows + target[:, -1] * math.log(spread)
        value = row_mean(rows, batch.row_weights)
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
            progress = min((int(self.steps) - 1) / self.total_steps, 1.0)
            floor = spec.t_start + (spec.t_end - spec.t_start) * progress
            self.m.fill_(m)
            self.t.fill_(min(spec.t_end, max(floor, t + delta)))
        self.prev_loss.fill_(loss)

    def advice(self, batch: KDBatch) -> str:
        return targets_advice(self.name, self.spec, batch)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, t={float(self.t):.4f}, total_steps={self.total_steps}"


@register_loss(TAIDLoss)
def _build(spec: TAIDLoss, ctx: LossContext) -> LossTerm[TAIDLoss]:
    if ctx.total_steps is None:
        raise ValueError(
            "loss 'taid' needs total_steps (its interpolation schedule spans the whole run)"
        )
    return TAID(spec, ctx.total_steps)
