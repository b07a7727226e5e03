"""Token-level distillation of language models: a token is a row.

A causal LM's (B, T, V) logits become (N, V) rows with `token_rows` (the mask leaves out padding
and document boundaries), or stay whole with ``KDBatch.row_weights`` (0 for a position that does
not count). The terms of this kind (`TokenDivergence` and TAID) read their teacher as

- ``targets: dense``: ``teacher_logits`` (N, V), the full distribution;
- ``targets: topk``: a top-k cache, ``teacher_topk_indices`` (N, k) and
  ``teacher_topk_values`` (N, k) (logits or log-probabilities: any per-row shift), and for the
  rule ``symmetric_uniform`` ``teacher_rest_mass`` (N,), the teacher's mass outside the top-k at
  T = 1 (`rest_mass_from_logsumexp` makes it from a cached log-sum-exp).

Sparse targets never become (N, V) tensors: the divergences run over k (or k + 1) bins, and the
student's side costs a log-sum-exp over its own logits (plus one masked copy of them when its
mass outside the top-k is needed). The rules for the mass outside the top-k (`topk_bins`):

- ``zero``: the teacher has none there, so its distribution is softmax(v / T) over the k kept ids
  (renormalised; exact at any T for the teacher restricted to its top-k). The student keeps
  its full softmax(z / T): its mass outside the top-k is one more bin where the teacher has 0,
  which adds nothing to a forward KL (DistillKit's "zero") and is needed by JSD and the reverse
  skew KL. A reverse KL is infinite there, so it renormalises the student over the top-k too.
- ``symmetric_uniform``: the teacher's rest mass r is spread evenly over the V - k ids not kept,
  and the student's rest is assumed spread the same way, so every divergence reduces to k + 1
  bins (the kept ids, then "the rest") and needs no assumption about how the student spreads
  its tail. At T != 1 the teacher is tempered as that distribution: logits log p_i / T for the
  kept ids and log(r / (V - k)) / T for each of the V - k others (DistillKit instead tempers
  the k + 1 bins as if the rest were one token; both agree at T = 1). r is clamped to
  [1e-8, 1 - 1e-6].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from components.losses.base import (
    KDBatch,
    LossSettings,
    LossTerm,
    row_mean,
    student_log_probs,
    teacher_log_probs,
)

_REST_FLOOR = 1e-8  # the teacher's rest mass: a zero would make a reverse KL infinite
_REST_CEILING = 1 - 1e-6  # ... and one would leave the kept ids no mass


def token_rows(mask: Tensor, **tensors: Tensor | None) -> dict[str, Tensor | None]:
    """Each (B, T, ...) tensor's positions where ``mask`` (B, T) is true, as (N, ...) rows in
    order (sequence by sequence, position by position); None stays None.

    ``KDBatch(**token_rows(mask, student_logits=z, labels=next_ids, teacher_topk_indices=...))``
    is a batch of the real tokens only.
    """
    keep = mask.bool()
    out: dict[str, Tensor | None] = {}
    for name, tensor in tensors.items():
        if tensor is not None and tensor.shape[:2] != keep.shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}; its first two dims must be the "
                f"mask's {tuple(keep.shape)} (sequences, positions)"
            )
        out[name] = None if tensor is None else tensor[keep]
    return out


def rest_mass_from_logsumexp(values: Tensor, logsumexp: Tensor) -> Tensor:
    """The teacher's mass outside its top-k, (N,), from its top-k logits ``values`` (N, k) and
    the log-sum-exp of all its logits (N,): 1 - sum_i exp(v_i - lse), computed as
    -expm1(logsumexp(v) - lse) in float32 and clamped to [0, 1]."""
    kept = torch.logsumexp(values.float(), dim=-1) - logsumexp.float()
    return (-torch.expm1(kept)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class LogBins:
    """Teacher and student log-probabilities over the same bins, one row per token."""

    teacher: Tensor  # (N, C); -inf where the teacher has no mass
    student: Tensor  # (N, C)


def dense_bins(batch: KDBatch, temperature: float) -> LogBins:
    """Both full distributions at ``temperature`` over the vocabulary (several teachers: their
    weighted mixture, as `teacher_log_probs`)."""
    assert batch.teacher_logits is not None
    return LogBins(
        teacher_log_probs(batch.teacher_logits, temperature, batch.teacher_weights),
        student_log_probs(batch.student_logits, temperature),
    )


def topk_bins(batch: KDBatch, temperature: float, missing: str, *, tail: bool = True) -> LogBins:
    """Teacher and student over the top-k ids, plus one bin for every other id where the rule
    (module docstring) puts mass there: always with ``symmetric_uniform``, and with ``zero``
    only when ``tail`` (the divergence reads the student's mass outside the top-k; the teacher
    has -inf there). Without that bin the student's k log-probabilities are its full
    softmax's, not renormalised. k = V has no such bin."""
    idx, values = batch.teacher_topk_indices, batch.teacher_topk_values
    assert idx is not None and values is not None
    idx = idx.long()
    z = batch.student_logits.float()
    z = z if temperature == 1.0 else z / temperature
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    student_top = z.gather(-1, idx) - lse
    vocab, k = z.shape[-1], idx.shape[-1]
    if k == vocab or (missing == "zero" and not tail):
        return LogBins(F.log_softmax(values.float() / temperature, dim=-1), student_top)
    outside = z.scatter(-1, idx, float("-inf"))  # the one (N, V) copy: the student's rest
    student_rest = torch.logsumexp(outside, dim=-1, keepdim=True) - lse
    if missing == "zero":
        teacher_top = F.log_softmax(values.float() / temperature, dim=-1)
        teacher_rest = torch.full_like(student_rest, float("-inf"))
    else:
        assert batch.teacher_rest_mass is not None
        rest = batch.teacher_rest_mass.float().clamp(_REST_FLOOR, _REST_CEILING)[:, None]
        kept = values.float()
        log_p = kept - torch.logsumexp(kept, dim=-1, keepdim=True) + torch.log1p(-rest)
        each = torch.log(rest) - math.log(vocab - k)  # log-probability of one id not kept
        joint = torch.cat([log_p / temperature, math.log(vocab - k) + each / temperature], -1)
        teacher_top, teacher_rest = F.log_softmax(joint, dim=-1).split([k, 1], dim=-1)
    return LogBins(
        torch.cat([teacher_top, teacher_rest], -1), torch.cat([student_top, student_rest], -1)
    )


class TokenSettings(LossSettings, Protocol):
    """What a token-level term reads from its spec besides a loss's type and weight."""

    @property
    def targets(self) -> Literal["dense", "topk"]: ...

    @property
    def missing(self) -> Literal["zero", "symmetric_uniform"]: ...


def target_problem(name: str, spec: TokenSettings, batch: KDBatch) -> str | None:
    """Why ``batch``'s teacher targets do not fit its student rows (shapes, a vocabulary that
    differs, k larger than the vocabulary, ids outside it), or None."""
    z = batch.student_logits
    if z.dim() != 2:
        return (
            f"loss '{name}' takes rows (N, V) of student logits, got shape {tuple(z.shape)}: "
            "flatten (B, T, V) sequences with components.losses.tokens.token_rows"
        )
    rows, vocab = z.shape
    if spec.targets == "dense":
        assert batch.teacher_logits is not None
        shape = tuple(batch.teacher_logits.shape)
        if shape[-2:] != (rows, vocab):
            return (
                f"loss '{name}': teacher logits of shape {shape} for {rows} rows of a "
                f"{vocab}-token vocabulary; teacher and student must share the tokenizer"
            )
        return None
    idx, values, rest = (
        batch.teacher_topk_indices,
        batch.teacher_topk_values,
        batch.teacher_rest_mass,
    )
    assert idx is not None and values is not None
    if idx.dim() != 2 or idx.shape[0] != rows or values.shape != idx.shape:
        return (
            f"loss '{name}' (targets: topk) takes one teacher's cache, ids and values of shape "
            f"({rows}, k); got {tuple(idx.shape)} and {tuple(values.shape)}"
        )
    k = idx.shape[1]
    if k > vocab:
        return (
            f"loss '{name}' (targets: topk): the cache keeps k = {k} ids per token, more than "
            f"the vocabulary of {vocab}: use k <= {vocab}"
        )
    if k and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        return (
            f"loss '{name}' (targets: topk): token ids from {int(idx.min())} to {int(idx.max())}"
            f" in the cache, outside the student's vocabulary of {vocab} (0 to {vocab - 1})"
        )
    if spec.missing == "symmetric_uniform" and rest is not None and rest.shape != (rows,):
        return f"loss '{name}': teacher_rest_mass has shape {tuple(rest.shape)}, expected ({rows},)"
    return None


def targets_advice(name: str, spec: TokenSettings, batch: KDBatch) -> str:
    """What to change when the batch carries the other kind of targets than ``spec`` reads."""
    has_topk = batch.teacher_topk_indices is not None
    if spec.targets == "topk" and not has_topk and batch.teacher_logits is not None:
        return (
            f" (loss '{name}' reads a top-k cache, targets: topk, but the batch has dense "
            "teacher logits only: set targets: dense, or feed it a top-k cache)"
        )
    if spec.targets == "dense" and batch.teacher_logits is None and has_topk:
        return (
            f" (loss '{name}' reads dense teacher logits, targets: dense, but the batch has a "
            "top-k cache only: set targets: topk)"
        )
    symmetric = spec.targets == "topk" and spec.missing == "symmetric_uniform"
    if symmetric and has_topk and batch.teacher_rest_mass is None:
        return (
            f" (loss '{name}' with missing: symmetric_uniform needs the teacher's rest mass; "
            "a cache without it works with missing: zero)"
        )
    return ""


class DivergenceSettings(TokenSettings, Protocol):
    """A token divergence's spec: a token spec with a temperature."""

    @property
    def temperature(self) -> float: ...


D = TypeVar("D", bound=DivergenceSettings)


class TokenDivergence(LossTerm[D]):
    """L = T^2 * sum_i w_i D_i / sum_i w_i: a divergence D_i per row between the teacher's and
    the student's distributions at temperature T (`divergence`), averaged over the rows (every
    row weighs 1 unless the batch has ``row_weights``). T^2 as DistillKit and Hinton KD (the
    gradient's scale stays about the same across T). Parts (unweighted, without T^2): the
    row mean of D under the subclass's ``part`` name."""

    weighs_rows = True
    part = "kl"

    def tail(self) -> bool:
        """Whether, under the rule ``zero``, the divergence reads the student's mass outside the
        top-k (JSD and the reverse skew KL do; the forward KL does not)."""
        return True

    def divergence(self, bins: LogBins) -> Tensor:
        """The divergence per row (N,) over ``bins``."""
        raise NotImplementedError

    def bins(self, batch: KDBatch) -> LogBins:
        """Teacher and student over the bins this term's targets and rule give."""
        T = self.spec.temperature
        if self.spec.targets == "dense":
            return dense_bins(batch, T)
        return topk_bins(batch, T, self.spec.missing, tail=self.tail())

    def compute(self, batch: KDBatch) -> tuple[Tensor, dict[str, Tensor]]:
        why = target_problem(self.name, self.spec, batch)
        if why is not None:
            raise ValueError(why)
        T = self.spec.temperature
        value = row_mean(self.divergence(self.bins(batch)), batch.row_weights)
        return T * T * value, {self.part: value.detach()}

    def advice(self, batch: KDBatch) -> str:
        return targets_advice(self.name, self.spec, batch)
