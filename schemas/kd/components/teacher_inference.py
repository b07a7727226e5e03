"""The `teacher_inference` component's models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from schemas.kd.actor_pool import ActorPoolSettings
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.augment import ViewSettings


class TeacherInferenceConfig(ViewSettings, ActorPoolSettings):
    """How the teacher is run over the data and how its outputs are stored; with ``views``, over
    that many augmented views of every image row (`ViewSettings`: ``views``, ``augment``,
    ``view_seed``), all stored in the row's own shard row."""

    splits: list[str] | None = Field(None, description="Splits to cover (default: all of them).")
    batch_size: int = Field(512, ge=1, description="Rows per inference batch.")
    precision: Literal["float16", "float32"] = Field(
        "float16", description="Storage dtype of logits and features (computation is fp32)."
    )
    top_k: int | None = Field(
        None, ge=1, description="Keep only the k largest logits (+ indices and left-over mass)."
    )
    feature: str | None = Field(
        None, description="Also store this intermediate (e.g. 'penultimate'), flattened."
    )
    rows_per_shard: int = Field(50_000, ge=1, description="Rows per Parquet shard.")


class TeacherInferenceInputs(BaseModel):
    teacher: ModelCheckpoint
    data: Dataset


class TeacherInferenceOutputs(BaseModel):
    logits: LogitShards
