"""The `teacher_inference` component's models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.augment import ViewSettings


class TeacherInferenceConfig(ViewSettings):
    """How the teacher is run over the data and how its outputs are stored; with ``views``, over
    that many augmented views of every image row (`ViewSettings`: ``views``, ``augment``,
    ``view_seed``), all stored in the row's own shard row."""

    splits: list[str] | None = Field(None, description="Splits to cover (default: all of them).")
    batch_size: int = Field(512, ge=1, description="Rows per inference batch.")
    num_actors: int = Field(
        1,
        ge=1,
        description="1: run the teacher in the step's own process (no Ray Data start-up); "
        "more: a Ray Data actor pool of this size.",
    )
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0, description="> 0 runs the teacher on GPUs.")
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

    def runs_in_process(self) -> bool:
        """One actor runs in the step's own process; a pool runs on Ray Data."""
        return self.num_actors == 1


class TeacherInferenceInputs(BaseModel):
    teacher: ModelCheckpoint
    data: Dataset


class TeacherInferenceOutputs(BaseModel):
    logits: LogitShards
