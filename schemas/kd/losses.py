"""Loss specs for distillation (a list of them is a `distill` step's objective).

One model per loss, told apart by ``type``; `LossSpec` is their discriminated union. Every spec
has a ``weight`` (its multiplier in the total), its own parameters (defaults from METHODS.md)
and `requires()`: the batch fields the term reads (names of `components.losses.KDBatch`
fields), from which `distill` decides, before anything trains, whether its inputs can feed it.
A spec is its term's only statement of these facts: the term is built from it and reads its
settings and `requires()` from it. Formulas and conventions (where alpha applies, reductions,
the T^2 factor) are in the docstrings of the matching `components.losses` terms, which register
their builders against these classes (`components.losses.registry`).

Adding a loss: a spec class here (added to `LossSpec`) and a term module under
`components/losses/` with `@register_loss(TheSpec)` on its builder; the registry finds the
module by itself.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from schemas.base import Model

_TEMPERATURE = "Softmax temperature T (> 0) of the soft targets; the KD term is scaled by T^2."
_FUSION = "Fusion ratio: weight of the KD term; the hard-label CE term gets 1 - alpha."


class _Loss(Model):
    weight: float = Field(1.0, ge=0, description="Multiplier of this term in the total loss.")

    def requires(self) -> frozenset[str]:
        """The `KDBatch` fields this term reads, which must not be None in a batch."""
        raise NotImplementedError


_LOGITS = frozenset({"student_logits", "teacher_logits"})
_TOPK = frozenset({"student_logits", "teacher_topk_indices", "teacher_topk_values"})
_FEATURES = frozenset({"student_features", "teacher_features"})
_LABELS = frozenset({"labels"})


class CELoss(_Loss):
    """Cross-entropy with the labels: CE(y, softmax(z_s)), mean over the rows (for a language
    model: the next token of each token row)."""

    type: Literal["ce"] = "ce"
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Label smoothing eps in [0, 1) (0: plain cross-entropy)."
    )

    def requires(self) -> frozenset[str]:
        return frozenset({"student_logits"}) | _LABELS


class KDLoss(_Loss):
    """Hinton KD: (1 - alpha) CE + alpha T^2 KL(softmax(z_t/T) || softmax(z_s/T)), batchmean."""

    type: Literal["kd"] = "kd"
    temperature: float = Field(4.0, gt=0, description=_TEMPERATURE)
    alpha: float = Field(0.9, ge=0, le=1, description=_FUSION)

    def requires(self) -> frozenset[str]:
        return _LOGITS | (_LABELS if self.alpha < 1 else frozenset())


class DKDLoss(_Loss):
    """Decoupled KD: ce_weight CE + min(epoch / warmup, 1) (alpha TCKD + beta NCKD)."""

    type: Literal["dkd"] = "dkd"
    temperature: float = Field(4.0, gt=0, description=_TEMPERATURE)
    alpha: float = Field(1.0, ge=0, description="Weight of target-class KD (TCKD).")
    beta: float = Field(8.0, ge=0, description="Weight of non-target-class KD (NCKD).")
    warmup: float = Field(
        20.0, ge=0, description="Epochs over which the KD part ramps up linearly (0: no ramp)."
    )
    ce_weight: float = Field(1.0, ge=0, description="Weight of the hard-label CE term.")

    def requires(self) -> frozenset[str]:
        return _LOGITS | _LABELS


class PLDLoss(_Loss):
    """Plackett-Luce distillation: list-wise loss over the teacher's ranking (label first),
    each step weighted by the teacher's confidence. Replaces CE + KD."""

    type: Literal["pld"] = "pld"
    temperature: float = Field(
        1.0,
        gt=0,
        description="tau of the teacher's confidence weights softmax(z_t / tau) (paper: 1).",
    )

    def requires(self) -> frozenset[str]:
        return _LOGITS | _LABELS


class NDLoss(_Loss):
    """Feature norm-and-direction loss against the teacher's class-mean embeddings.
    Only lambda_nd L_nd: add `ce` and `kd` terms beside it."""

    type: Literal["nd"] = "nd"
    weight: float = Field(2.0, ge=0, description="lambda_nd, the multiplier of L_nd.")

    def requires(self) -> frozenset[str]:
        return _FEATURES | _LABELS


_TARGETS = (
    "Teacher targets the term reads: 'dense' (teacher_logits, the full distribution) or "
    "'topk' (a top-k cache: teacher_topk_indices and teacher_topk_values, logits or "
    "log-probabilities of the kept ids)."
)
_MISSING = (
    "With targets 'topk', the rule for the teacher's mass outside the top-k: 'zero' (none: "
    "the teacher renormalised over its top-k, DistillKit's default) or 'symmetric_uniform' "
    "(the rest mass of teacher and student each spread uniformly over the ids not kept; "
    "needs teacher_rest_mass). Not read with targets 'dense'."
)
_TOKEN_TEMPERATURE = (
    "Softmax temperature T (> 0) of teacher and student; the divergence is scaled by T^2."
)


class _TokenLoss(_Loss):
    """A loss per row (a token of a language model's sequence, or a sample), averaged over the
    rows, against dense teacher logits or a top-k cache with a rule for the mass outside it."""

    targets: Literal["dense", "topk"] = Field("dense", description=_TARGETS)
    missing: Literal["zero", "symmetric_uniform"] = Field("zero", description=_MISSING)

    def requires(self) -> frozenset[str]:
        if self.targets == "dense":
            return _LOGITS
        rest = {"teacher_rest_mass"} if self.missing == "symmetric_uniform" else set()
        return _TOPK | rest


class _DivergenceLoss(_TokenLoss):
    """A token loss that compares teacher and student at a temperature T, scaled by T^2."""

    temperature: float = Field(1.0, gt=0, description=_TOKEN_TEMPERATURE)


def _share(default: float, description: str) -> Any:
    """A mixture weight in (0, 1)."""
    return Field(default, gt=0, lt=1, description=description)


class ForwardKLLoss(_DivergenceLoss):
    """Forward KL(teacher || student) per token, masked, averaged over tokens, times T^2."""

    type: Literal["forward_kl"] = "forward_kl"


class ReverseKLLoss(_DivergenceLoss):
    """Reverse KL(student || teacher) per token, masked, averaged over tokens, times T^2."""

    type: Literal["reverse_kl"] = "reverse_kl"


class JSDLoss(_DivergenceLoss):
    """Generalised Jensen-Shannon divergence per token with mixture beta p + (1 - beta) q."""

    type: Literal["jsd"] = "jsd"
    beta: float = _share(
        0.5, "Teacher's share beta of the mixture m = beta p + (1 - beta) q (0.5: the JSD)."
    )


class SkewKLLoss(_DivergenceLoss):
    """DistiLLM's skew KL per token: KL against a mixture skewed by alpha."""

    type: Literal["skew_kl"] = "skew_kl"
    alpha: float = _share(0.1, "Skew alpha: the share of the first distribution in the mixture.")
    direction: Literal["forward", "reverse"] = Field(
        "forward",
        description=(
            "'forward': KL(p || alpha p + (1 - alpha) q); 'reverse': "
            "KL(q || alpha q + (1 - alpha) p) (p teacher, q student)."
        ),
    )


class TAIDLoss(_TokenLoss):
    """Temporally adaptive interpolated distillation: CE against
    softmax((1 - t) stopgrad(z_s) + t z_t), with t rising adaptively from t_start to t_end."""

    type: Literal["taid"] = "taid"
    t_start: float = Field(0.4, ge=0, lt=1, description="Initial interpolation t (0: student).")
    t_end: float = Field(1.0, gt=0, le=1, description="Final interpolation t (1: teacher).")
    alpha: float = Field(5e-4, ge=0, le=1, description="Step size of the adaptive t update.")
    beta: float = Field(
        0.99, ge=0, lt=1, description="Momentum of the relative loss change driving t."
    )

    @model_validator(mode="after")
    def _t_rises(self) -> TAIDLoss:
        if self.t_start > self.t_end:
            raise ValueError(f"t_start ({self.t_start}) must not exceed t_end ({self.t_end})")
        return self


class TopKKLLoss(_Loss):
    """KD from a top-k logit cache: (1 - alpha) CE + alpha T^2 KL over a rule-built target."""

    type: Literal["topk_kl"] = "topk_kl"
    temperature: float = Field(4.0, gt=0, description=_TEMPERATURE)
    alpha: float = Field(0.9, ge=0, le=1, description=_FUSION)
    rule: Literal["renormalize", "uniform", "bucket"] = Field(
        "uniform",
        description=(
            "Mass outside the top-k: 'uniform' spreads it evenly over the other classes "
            "(KL over all K), 'renormalize' drops it (KL over the top-k only), 'bucket' keeps "
            "it as one 'other' bin (KL over k + 1 bins)."
        ),
    )

    def requires(self) -> frozenset[str]:
        rest = frozenset() if self.rule == "renormalize" else frozenset({"teacher_rest_mass"})
        return _TOPK | rest | (_LABELS if self.alpha < 1 else frozenset())


class HintLoss(_Loss):
    """FitNets hint: MSE between linearly projected student features and teacher features."""

    type: Literal["hint"] = "hint"

    def requires(self) -> frozenset[str]:
        return _FEATURES


class MEALLoss(_Loss):
    """MEAL V2: cross-entropy against the teachers' mean softmax at T = 1 (no labels)."""

    type: Literal["meal"] = "meal"

    def requires(self) -> frozenset[str]:
        return _LOGITS


AnyLossSpec = (
    CELoss
    | KDLoss
    | DKDLoss
    | PLDLoss
    | NDLoss
    | TAIDLoss
    | TopKKLLoss
    | HintLoss
    | MEALLoss
    | ForwardKLLoss
    | ReverseKLLoss
    | JSDLoss
    | SkewKLLoss
)
LOSS_SPECS: tuple[type[_Loss], ...] = AnyLossSpec.__args__

LossSpec = Annotated[AnyLossSpec, Field(discriminator="type")]
"""Any one loss spec, chosen by its ``type`` field."""
