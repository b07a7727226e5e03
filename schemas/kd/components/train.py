"""The `train` component's models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.kd.artifacts import Dataset, ModelCheckpoint
from schemas.kd.components.training import TrainingSettings
from schemas.kd.models import ModelSpec


class TrainConfig(TrainingSettings):
    """Supervised training (cross-entropy) of one model."""

    model: ModelSpec = Field(
        description="Architecture; num_classes/input_shape come from the data."
    )


class TrainInputs(BaseModel):
    data: Dataset
    init: ModelCheckpoint | None = Field(
        None, description="Start from these weights (fine-tuning)."
    )


class TrainOutputs(BaseModel):
    model: ModelCheckpoint
    metrics: dict[str, float]
    history: list[dict[str, Any]]
