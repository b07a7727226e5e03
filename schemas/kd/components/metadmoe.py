"""The Meta-DMoE components' models: `aggregator` and `meta_distill`.

Meta-DMoE (Zhong et al., NeurIPS 2022): frozen domain experts, a transformer aggregator over
their penultimate features, a student meta-distilled with a second-order inner step, and
test-time adaptation on an unlabeled batch of each target domain (see METHODS.md and
`components.metadmoe`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.base import Model
from schemas.kd.artifacts import (
    AdaptiveModelCheckpoint,
    AggregatorCheckpoint,
    Dataset,
    LogitShards,
    ModelCheckpoint,
)

_EXCLUDE = (
    "Domains left out: the held-out target domain(s) of a leave-one-domain-out experiment; "
    "experts trained on them are not used."
)


class AggregatorConfig(Model):
    """The aggregator's shape and its optional pre-training (linear head + CE)."""

    num_heads: int = Field(4, ge=1, description="Attention heads; must divide the expert width.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Attention and FFN dropout.")
    exclude_domains: list[str] = Field(default_factory=list, description=_EXCLUDE)
    epochs: int = Field(5, ge=0, description="CE pre-training epochs on source rows (0: none).")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the pre-training.")
    lr_decay: float = Field(0.96, gt=0, le=1, description="Learning-rate factor per epoch.")
    select: Literal["best", "last"] = Field(
        "best",
        description="Keep the pre-training epoch with the best accuracy on `eval_split` "
        "(the source domains' rows only), or the last epoch.",
    )
    eval_split: str = Field(
        "val", description="Split of the source domains that selects the pre-training epoch."
    )
    seed: int = 0


class AggregatorInputs(BaseModel):
    data: Dataset
    features: list[LogitShards] = Field(
        description="One cache per expert with its penultimate features (teacher_inference "
        "`feature: penultimate`)."
    )
    student: ModelCheckpoint = Field(description="The student: its feature width is the target's.")


class AggregatorOutputs(BaseModel):
    aggregator: AggregatorCheckpoint
    metrics: dict[str, float]


class MetaDistillConfig(Model):
    """Meta-distillation from the experts into the student (second-order), then packaging the
    student as an adaptive model for test-time adaptation."""

    exclude_domains: list[str] = Field(default_factory=list, description=_EXCLUDE)
    epochs: int = Field(
        10,
        ge=0,
        description="Meta-training epochs; 0 packages the student and the aggregator as they "
        "come (a control: test-time adaptation without meta-training).",
    )
    batch_size: int = Field(
        48, ge=2, description="Rows per meta-batch, all from one domain: support + query."
    )
    support_size: int = Field(
        24,
        ge=1,
        description="Rows of a batch used as the (unlabeled) support set; also the "
        "size of the adaptation batch at test time.",
    )
    inner_lr: float = Field(
        0.01,
        gt=0,
        description="Step size of the inner (adaptation) step; 0.01 was best on the source "
        "domains' validation rows of pipelines/meta_dmoe.yaml among 0.003, 0.01, 0.05.",
    )
    student_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the student.")
    aggregator_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the aggregator.")
    lr_decay: float = Field(0.96, gt=0, le=1, description="Both learning rates, per epoch.")
    first_order: bool = Field(
        False,
        description="First-order meta-gradient (the inner gradient is a constant: the "
        "aggregator gets no gradient and stays as pre-trained); an ablation. Default: second "
        "order, as the paper.",
    )
    mask: bool = Field(
        True,
        description="Hide the expert trained on each meta-batch's own domain from the "
        "aggregator during meta-training (the paper); False is an ablation. Source validation "
        "always hides it, as the target has no expert.",
    )
    adaptation: Literal["aggregator", "entropy"] = Field(
        "aggregator",
        description="How the adaptive model adapts to a domain: aggregator (Meta-DMoE: one "
        "inner MSE step towards the aggregated experts' features) or entropy (a control: one "
        "step of `inner_lr` minimising the student's mean prediction entropy on the same "
        "unlabeled rows, no experts; only with `epochs: 0`).",
    )
    select: Literal["best", "last"] = Field(
        "best",
        description="Keep the epoch with the best adapted accuracy on the source domains' "
        "validation rows (each domain's own expert hidden), or the last.",
    )
    eval_split: str = Field("val", description="Split of the source domains used to select.")
    seed: int = 0

    @model_validator(mode="after")
    def _support_and_query(self) -> MetaDistillConfig:
        if self.support_size >= self.batch_size:
            raise ValueError(
                f"support_size ({self.support_size}) must be smaller than batch_size "
                f"({self.batch_size}): the rest of each batch is the labelled query set"
            )
        return self

    @model_validator(mode="after")
    def _entropy_is_a_control(self) -> MetaDistillConfig:
        if self.adaptation == "entropy" and self.epochs:
            raise ValueError(
                f"adaptation 'entropy' is the control without meta-training, but epochs is "
                f"{self.epochs}: set epochs: 0 (or adaptation: aggregator to meta-train)"
            )
        return self


class MetaDistillInputs(BaseModel):
    data: Dataset
    student: ModelCheckpoint = Field(description="Starting student (ERM pre-trained).")
    aggregator: AggregatorCheckpoint
    features: list[LogitShards] = Field(description="The experts' feature caches.")
    experts: list[ModelCheckpoint] = Field(
        description="The experts themselves (run on the adaptation batch at test time)."
    )


class MetaDistillOutputs(BaseModel):
    model: ModelCheckpoint = Field(description="The meta-distilled student, without adaptation.")
    adaptive: AdaptiveModelCheckpoint = Field(description="The same student, adapting per domain.")
    metrics: dict[str, float]
    history: list[dict[str, Any]]
