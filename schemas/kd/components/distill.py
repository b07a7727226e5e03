"""The `distill` component's models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.augment import ViewSettings
from schemas.kd.components.training import TrainingSettings
from schemas.kd.losses import KDLoss, LossSpec
from schemas.kd.models import ModelSpec, ModelSpecValue
from schemas.kd.text import TokenSequences
from schemas.kd.token_cache import TokenCache


def _default_loss() -> LossSpec:
    return KDLoss()


class DistillConfig(TrainingSettings, ViewSettings):
    """Train a student against teacher outputs with a weighted sum of KD losses.

    Augmented views (``views``, ``augment``, ``view_seed``): a logit cache made with views
    carries its own, and the student trains on them (leave these out, or repeat the cache's);
    with teachers run online they set the views the student and its teachers see. Each epoch a
    row trains on one of its views, drawn from (seed, epoch, row_id); evaluation sees the clean
    rows.
    """

    student: ModelSpec | None = Field(
        None,
        description="Student architecture (num_classes/input_shape from data). May be left out "
        "when the `student` input is connected (e.g. student_search's `student`).",
    )
    losses: list[LossSpec] = Field(
        default_factory=lambda: [_default_loss()],
        min_length=1,
        description="Loss terms, summed with their weights (docs/components.md, 'Losses').",
    )
    skip_teachers_trained_on: list[str] = Field(
        default_factory=list,
        description="Leave out teachers (caches or checkpoints) trained on any of these domains, "
        "e.g. the held-out target domain of a leave-one-domain-out experiment.",
    )
    teacher_weights: list[float] | None = Field(
        None,
        description="Fusion ratios between several teachers, one per teacher in input order "
        "(cached or online); normalised to sum to 1. Default: equal weights.",
    )

    @field_validator("teacher_weights")
    @classmethod
    def _weights(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if not value:
                raise ValueError("needs one weight per teacher (or leave it out)")
            if any(w < 0 for w in value):
                raise ValueError(f"weights must be >= 0, got {value}")
            if sum(value) <= 0:
                raise ValueError(f"at least one weight must be > 0, got {value}")
        return value

    def normalised_teacher_weights(self) -> list[float] | None:
        if self.teacher_weights is None:
            return None
        total = sum(self.teacher_weights)
        return [w / total for w in self.teacher_weights]


class DistillStepInputs(BaseModel):
    """The `distill` component's ports: a classifier on a dataset with logit caches, or a
    causal language model on token sequences with the teacher's token cache."""

    data: Dataset | TokenSequences = Field(
        description="A dataset (classifiers) or packed token sequences (arch: causal_lm)."
    )
    logits: list[LogitShards | TokenCache] | None = Field(
        None,
        description="Cached teacher outputs: logit shards per teacher (teacher_inference), or "
        "one token cache (lm_inference) for token sequences.",
    )
    teachers: list[ModelCheckpoint] | None = Field(
        None, description="Teachers run online in every worker, when no cached logits are given."
    )
    init: ModelCheckpoint | None = Field(None, description="Start the student from these weights.")
    student: ModelSpecValue | None = Field(
        None,
        description="Student architecture from another step (student_search's `student`, "
        "`largest` or `random`); replaces `config.student`.",
    )


class DistillInputs(DistillStepInputs):
    """A classifier's distillation (what `tune` trials take): a dataset and logit shards."""

    data: Dataset
    # Narrower than the step's list (list is invariant): tune's trials never hold token caches.
    logits: list[LogitShards] | None = Field(  # type: ignore[assignment]
        None, description="Cached teacher outputs, one per teacher (from teacher_inference)."
    )


class DistillOutputs(BaseModel):
    model: ModelCheckpoint
    metrics: dict[str, float]
    history: list[dict[str, Any]]
