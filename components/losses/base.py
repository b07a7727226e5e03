"""What every loss term sees (`KDBatch`) and returns (`LossOutput`), plus the shared math.

Conventions shared by all terms:
- Everything is computed in float32: logits and features are cast inside (teacher outputs often
  arrive as float16 from a cache). Log-probabilities always come from ``log_softmax`` (or a
  logsumexp), never from ``log(softmax)``.
- Reductions: sums over classes (or bins), mean over the batch ("batchmean"). A row is a sample
  or, for a language model, one token (`components.losses.tokens.token_rows` flattens
  (B, T, ...) sequences into rows); terms that say so take ``KDBatch.row_weights`` and average
  sum_i w_i l_i / sum_i w_i instead (0 for padding), the others refuse a batch that has them.
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
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class KDBatch:
    """One batch as the losses see it. Teacher tensors may stack M teachers on a leading dim."""

    student_logits: Tensor  # (B, K)
    labels: Tensor | None = None  # (B,) int64 (a language model's: the next token of each row)
    teacher_logits: Tensor | None = None  # (B, K) one teacher, or (M, B, K) several
    teacher_topk_indices: Tensor | None = None  # (B, k) int64, from a top-k logit cache
    # (B, k): the teacher's logits at those indices, or its log-probabilities (any per-row shift)
    teacher_topk_values: Tensor | None = None
    teacher_rest_mass: Tensor | None = None  # (B,): 1 - sum of softmax(z_t) (T=1) over the top-k
    student_features: Tensor | None = None  # (B, Ds) penultimate embedding
    teacher_features: Tensor | None = None  # (B, Dt) or (M, B, Dt)
    teacher_weights: Tensor | None = None  # (M,) fusion weights of several teachers, sum 1
    row_weights: Tensor | None = None  # (B,) weight of each row in the mean (0: not counted)
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


class LossSettings(Protocol):
    """What a term reads from its spec (a `schemas.kd.losses` model): its type, its weight and
    the batch fields it needs."""

    @property
    def type(self) -> str: ...

    @property
    def weight(self) -> float: ...

    def requires(self) -> frozenset[str]: ...

    def model_dump(self, *, exclude: set[str]) -> dict[str, Any]: ...


S = TypeVar("S", bound=LossSettings)


class LossTerm(nn.Module, Generic[S]):
    """A weighted loss term, built from its spec. Subclasses implement `compute`.

    The spec is the term's only statement of its settings: ``name`` is the spec's ``type``,
    ``weight`` its weight, and ``requires`` (the `KDBatch` fields that must be non-None; they
    may depend on the settings, e.g. KD needs labels only when alpha < 1) its `requires()`.
    State that must survive a resume (TAID's t and m, projector weights) lives in parameters and
    buffers, so it round-trips through ``state_dict()``.
    """

    weighs_rows: ClassVar[bool] = False
    """Whether the term averages with ``KDBatch.row_weights`` (else it refuses them)."""

    def __init__(self, spec: S) -> None:
        super().__init__()
        self.spec = spec
        self.weight = float(spec.weight)

    @property
    def name(self) -> str:
        return self.spec.type

    @property
    def requires(self) -> frozenset[str]:
        return self.spec.requires()

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The unweighted loss (scalar) and its named unweighted parts."""
        raise NotImplementedError

    def advice(self, batch: KDBatch) -> str:
        """What to change when ``batch`` lacks a field this term needs ("" when nothing more
        specific than the field's name can be said): appended to the error."""
        return ""

    def lacking(self, batch: KDBatch) -> str | None:
        """Why this term cannot read ``batch`` (a field it needs is None, or row weights it does
        not take), with what to change; None when it can."""
        missing = batch.missing(self.requires)
        if missing:
            return f"loss '{self.name}' needs {missing}, which this batch lacks{self.advice(batch)}"
        if batch.row_weights is not None and not self.weighs_rows:
            return (
                f"loss '{self.name}' averages over every row and does not take row_weights: "
                "leave the masked rows out of the batch instead"
            )
        return None

    def forward(self, batch: KDBatch) -> LossOutput:
        why = self.lacking(batch)
        if why is not None:
            raise ValueError(why)
        value, parts = self.compute(batch)
        return LossOutput(self.weight * value, parts)

    def on_step_end(self, loss_value: float) -> None:
        """Called once after each optimiser step with the step's total loss; no-op by default."""

    def extra_repr(self) -> str:
        settings = self.spec.model_dump(exclude={"type"})
        return ", ".join(f"{key}={value!r}" for key, value in settings.items())


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


def tempered_kl(
    teacher_logits: Tensor, student_logits: Tensor, temperature: float, weights: Tensor | None
) -> Tensor:
    """KL(softmax(z_t / T) || softmax(z_s / T)), batchmean, without T^2; several teachers' target
    is their (weighted) mixture (`teacher_log_probs`)."""
    return kl_from_log_probs(
        teacher_log_probs(teacher_logits, temperature, weights),
        student_log_probs(student_logits, temperature),
    )


def soft_cross_entropy(target: Tensor, student_logp: Tensor) -> Tensor:
    """-sum_c target[c] * student_logp[c], mean over the batch."""
    return -(target * student_logp).sum(-1).mean()


def cross_entropy(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Hard-label cross-entropy in float32, mean over the batch."""
    return F.cross_entropy(logits.float(), labels.long(), label_smoothing=label_smoothing)


def row_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """The mean of per-row ``values`` (N,), or sum_i w_i v_i / sum_i w_i with row ``weights``
    (rows of weight 0 are not counted). No rows, or weights that sum to 0, give 0 (still
    attached to the graph), not NaN."""
    if weights is None:
        return values.sum() / max(values.numel(), 1)
    w = weights.to(device=values.device, dtype=values.dtype)
    if w.shape != values.shape:
        raise ValueError(f"row_weights has shape {tuple(w.shape)}, the rows {tuple(values.shape)}")
    weighted = torch.where(w > 0, values * w, torch.zeros_like(values))  # padding may be inf
    return weighted.sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def with_label_fusion(
    kl: Tensor, batch: KDBatch, alpha: float, temperature: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Hinton's fusion of a KL at temperature T with the hard labels:
    alpha * T^2 * KL + (1 - alpha) * CE(y, softmax(z_s)) at T = 1, the CE only when the batch
    has labels. Parts (unweighted): "kl" (without T^2) and "ce" when labels exist."""
    value = alpha * temperature * temperature * kl
    parts = {"kl": kl.detach()}
    if batch.labels is not None:
        ce = cross_entropy(batch.student_logits, batch.labels)
        value = value + (1 - alpha) * ce
        parts["ce"] = ce.detach()
    return value, parts


def other_classes(labels: Tensor, num_classes: int) -> Tensor:
    """(B, K-1) indices of every class except each row's label, in increasing order."""
    cols = torch.arange(num_classes - 1, device=labels.device).expand(labels.shape[0], -1)
    return cols + (cols >= labels[:, None]).long()
