"""What every loss term sees (`KDBatch`) and returns (`LossOutput`), plus the shared math.

Conventions shared by all terms:
- Everything is computed in float32: logits and features are cast inside (teacher outputs often
  arrive as float16 from a cache). Log-probabilities always come from ``log_softmax`` (or a
  logsumexp), never from ``log(softmax)``.
- Reductions: sums over classes (or bins), mean over the batch ("batchmean").
- ``LossOutput.total`` is already multiplied by the term's ``weight``; ``LossOutput.parts`` are
  the term's *unweighted* components (before ``weight`` and before the fusion ratio alpha), for
  logging.
- Several teachers are stacked on a leading dim ((M, B, K) logits, (M, B, D) features); unless a
  term says otherwise, its target is the mixture of the teachers' distributions, weighted by
  ``KDBatch.teacher_weights`` (the fusion ratios between teachers, summing to 1; equal weights
  when None). Features are averaged with the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class KDBatch:
    """One batch as the losses see it. Teacher tensors may stack M teachers on a leading dim."""

    student_logits: Tensor  # (B, K)
    labels: Tensor | None = None  # (B,) int64
    teacher_logits: Tensor | None = None  # (B, K) one teacher, or (M, B, K) several
    teacher_topk_indices: Tensor | None = None  # (B, k) int64, from a top-k logit cache
    teacher_topk_values: Tensor | None = None  # (B, k): the teacher's logits at those indices
    teacher_rest_mass: Tensor | None = None  # (B,): 1 - sum of softmax(z_t) (T=1) over the top-k
    student_features: Tensor | None = None  # (B, Ds) penultimate embedding
    teacher_features: Tensor | None = None  # (B, Dt) or (M, B, Dt)
    teacher_weights: Tensor | None = None  # (M,) fusion weights of several teachers, sum 1
    epoch: float = 0.0  # fractional epoch, for warm-ups
    step: int = 0

    def missing(self, names: frozenset[str]) -> list[str]:
        """The names among ``names`` that are fields of this batch and are None, sorted."""
        known = {f.name for f in fields(self)}
        return sorted(n for n in names if n in known and getattr(self, n) is None)


@dataclass
class LossOutput:
    """A term's result: ``total`` is weighted (scalar); ``parts`` are unweighted, for logging."""

    total: Tensor
    parts: dict[str, Tensor]


class LossTerm(nn.Module):
    """A weighted loss term. Subclasses set ``name`` and ``requires`` and implement `compute`.

    ``requires`` names the `KDBatch` fields that must be non-None (it may depend on the term's
    settings, e.g. KD needs labels only when alpha < 1, so subclasses may set it per instance).
    State that must survive a resume (TAID's t and m, projector weights) lives in parameters and
    buffers, so it round-trips through ``state_dict()``.
    """

    name: str = "loss"
    requires: frozenset[str] = frozenset({"student_logits"})

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The unweighted loss (scalar) and its named unweighted parts."""
        raise NotImplementedError

    def forward(self, batch: KDBatch) -> LossOutput:
        missing = batch.missing(self.requires)
        if missing:
            raise ValueError(f"loss '{self.name}' needs {missing}, which this batch lacks")
        value, parts = self.compute(batch)
        return LossOutput(self.weight * value, parts)

    def on_step_end(self, loss_value: float) -> None:
        """Called once after each optimiser step with the step's total loss; no-op by default."""

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def student_log_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(z / T) over the last dim, in float32."""
    return F.log_softmax(logits.float() / temperature, dim=-1)


def teacher_log_probs(
    teacher_logits: Tensor, temperature: float = 1.0, weights: Tensor | None = None
) -> Tensor:
    """log of the teachers' (weighted) mean softmax at ``temperature``: (B, K) from (B, K) or
    (M, B, K).

    The mixture is taken in probability space: log sum_m w_m softmax(z_m / T), computed as a
    logsumexp of log-probabilities plus log-weights (equal weights 1/M when ``weights`` is None).
    A teacher with weight 0 contributes nothing.
    """
    logp = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if logp.dim() == 3:
        if weights is None:
            logp = torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])
        else:
            logw = torch.log(weights.float().to(logp.device)).view(-1, 1, 1)
            logp = torch.logsumexp(logp + logw, dim=0)
    return logp


def mean_teacher_features(features: Tensor, weights: Tensor | None = None) -> Tensor:
    """(B, D) teacher features in float32; several teachers (M, B, D) are averaged (with
    ``weights`` when given)."""
    features = features.float()
    if features.dim() != 3:
        return features
    if weights is None:
        return features.mean(0)
    return (features * weights.float().to(features.device).view(-1, 1, 1)).sum(0)


def kl_from_log_probs(target_logp: Tensor, student_logp: Tensor) -> Tensor:
    """KL(target || student) from log-probabilities: summed over the last dim, mean over batch.

    Classes where the target has zero probability contribute 0 (the 0·log 0 convention).
    """
    target = target_logp.exp()
    terms = target * (target_logp - student_logp)
    return torch.where(target > 0, terms, torch.zeros_like(terms)).sum(-1).mean()


def soft_cross_entropy(target: Tensor, student_logp: Tensor) -> Tensor:
    """-sum_c target[c] * student_logp[c], mean over the batch."""
    return -(target * student_logp).sum(-1).mean()


def cross_entropy(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Hard-label cross-entropy in float32, mean over the batch."""
    return F.cross_entropy(logits.float(), labels.long(), label_smoothing=label_smoothing)


def other_classes(labels: Tensor, num_classes: int) -> Tensor:
    """(B, K-1) indices of every class except each row's label, in increasing order."""
    cols = torch.arange(num_classes - 1, device=labels.device).expand(labels.shape[0], -1)
    return cols + (cols >= labels[:, None]).long()
