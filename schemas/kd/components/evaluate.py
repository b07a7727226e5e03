"""The `evaluate` component's models."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from schemas.base import Model
from schemas.kd.artifacts import Dataset, EvalReport, ModelCheckpoint


class EvaluateConfig(Model):
    """What to measure and how to label the models."""

    split: str = Field("test", description="The split every model is scored on.")
    domains: list[str] | None = Field(
        None,
        description="Score only rows of these domains (a multi-domain dataset, e.g. the "
        "held-out target domain). Default: every row of the split.",
    )
    names: list[str] | None = Field(
        None,
        description="A label per model, in input order; models sharing a label are a recipe "
        "(seeds of one config): reported as mean ± std and mean with a 95% interval, and "
        "compared with other recipes (`compare`). Default: <arch>_<index>.",
    )
    ece_bins: int = Field(15, ge=2, description="Equal-width confidence bins for ECE.")
    latency_batch_sizes: list[int] = Field(
        default_factory=lambda: [1, 256], description="Batch sizes timed on the CPU."
    )
    latency_repeats: int = Field(20, ge=1, description="Timed repeats (median) after 3 warm-ups.")
    latency_budget_s: float = Field(
        0.5,
        gt=0,
        description="About the most seconds of timed passes per model and batch size: a slow "
        "model gets fewer repeats (never fewer than 3), a fast one all `latency_repeats`.",
    )
    plots: bool = Field(
        True, description="Write reliability, confusion, comparison and differences PNGs."
    )
    compare: list[tuple[str, str]] | None = Field(
        None,
        description="Pairs of labels [a, b] to compare: a's top-1 minus b's, paired over models "
        "trained with the same seed (with one model each: McNemar over rows), e.g. [[kd, "
        "scratch], [dkd, kd]]. Default: every label against the first (not the teacher, nor a "
        "model trained on a scored domain); a single label against the teacher.",
    )
    bootstrap_resamples: int = Field(
        10_000,
        ge=1_000,
        le=1_000_000,  # a resample of n pairs is n integers: 10^6 x 30 pairs is 240 MB already
        description="Resamples of the percentile bootstrap intervals.",
    )
    bootstrap_seed: int = Field(0, description="Seeds the bootstrap: the same seed, the same CI.")

    @field_validator("compare")
    @classmethod
    def _distinct_sides(cls, pairs: list[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
        for a, b in pairs or []:
            if a == b:
                raise ValueError(f"[{a}, {b}] compares '{a}' with itself; name two labels")
        return pairs


class EvaluateInputs(BaseModel):
    data: Dataset
    models: list[ModelCheckpoint]
    teacher: ModelCheckpoint | None = Field(
        None, description="Scored too (as 'teacher'); students' agreement is measured against it."
    )


class EvaluateOutputs(BaseModel):
    report: EvalReport
    metrics: dict[str, dict[str, float]]
