"""Configuration shared by the components that train with Ray Train (`train`, `distill`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Model


class OptimizerConfig(Model):
    """Optimizer and learning-rate schedule (stepped once per batch)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only.")
    schedule: Literal["constant", "cosine"] = Field("cosine", description="Decay over all steps.")


class ScalingSettings(Model):
    """How many Ray Train workers, and what each one gets."""

    num_workers: int = Field(1, ge=1, description="Data-parallel workers (DDP or DeepSpeed ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); CPU workers use gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs reserved per worker.")
    max_failures: int = Field(
        2, ge=-1, description="Worker-group restarts from the last checkpoint (-1: unlimited)."
    )


class DeepSpeedSettings(Model):
    """ZeRO data parallelism through DeepSpeed (`strategy: deepspeed`)."""

    zero_stage: Literal[0, 1, 2, 3] = Field(
        2, description="ZeRO stage: 1 optimizer, 2 +gradients, 3 +parameters."
    )
    offload_optimizer: bool = Field(False, description="Keep optimizer state on the CPU.")


class TrainingSettings(Model):
    """The loop: epochs, batches, optimisation, scaling, strategy, checkpoint selection."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1, description="Per-worker batch size.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    seed: int = Field(0, description="Seeds model init, shuffling and dropout.")
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    strategy: Literal["ddp", "deepspeed"] = Field("ddp", description="ddp, or deepspeed (ZeRO).")
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings)
    select: Literal["last", "best"] = Field(
        "last",
        description="Output weights: the last epoch's, or the best by val accuracy.",
    )
    eval_split: str = Field("val", description="Split evaluated after every epoch.")
    shuffle_buffer: int = Field(
        2048, ge=0, description="Rows in each worker's local shuffle buffer (streamed shards)."
    )
    cache_data: bool = Field(
        True,
        description="Hold the (joined) training data in Ray's object store instead of re-reading "
        "it every epoch (much faster for data that fits; it spills to disk otherwise).",
    )
    worker_cache_mb: float = Field(
        512,
        ge=0,
        description="With cache_data, a worker whose share of a split is at most this many MB "
        "keeps it in memory after the first pass and reshuffles it fully each epoch (seeded: "
        "the same config trains the same weights on one CPU worker) instead of streaming it "
        "through Ray Data every epoch. 0: always stream.",
    )

    @model_validator(mode="after")
    def _deepspeed_needs_strategy(self) -> TrainingSettings:
        if "deepspeed" in self.model_fields_set and self.strategy != "deepspeed":
            raise ValueError("`deepspeed` settings are only used with `strategy: deepspeed`")
        if self.strategy == "deepspeed" and self.select == "best":
            raise ValueError("`select: best` is not supported with `strategy: deepspeed`; use last")
        return self
