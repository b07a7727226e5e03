"""The `train` component's models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.kd.artifacts import Dataset, ModelCheckpoint
from schemas.kd.components.training import TrainingSettings
from schemas.kd.models import ModelSpec
from schemas.kd.text import TokenSequences


class TrainConfig(TrainingSettings):
    """Supervised training (cross-entropy) of one model: a classifier on a dataset, or a
    causal language model on token sequences (next-token cross-entropy)."""

    model: ModelSpec = Field(
        description="Architecture; num_classes/input_shape come from the data (a causal_lm's "
        "vocab_size from the sequences' tokenizer)."
    )


class TrainInputs(BaseModel):
    data: Dataset | TokenSequences = Field(
        description="A dataset (classifiers) or packed token sequences (arch: causal_lm)."
    )
    init: ModelCheckpoint | None = Field(
        None, description="Start from these weights (fine-tuning)."
    )


class TrainOutputs(BaseModel):
    model: ModelCheckpoint
    metrics: dict[str, float]
    history: list[dict[str, Any]]
