"""Configuration shared by the training components (`train`, `distill`).

One worker (the default) trains inside the step's own process, with no Ray Train start-up; more
workers, or DeepSpeed, run as a Ray Train `TorchTrainer` (DDP over gloo/NCCL, or ZeRO).
"""

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
    warmup_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of the optimiser steps over which the rate rises linearly from 0 to "
        "`lr` before the schedule (cosine: decays over the steps after it).",
    )


class ScalingSettings(Model):
    """How many Ray Train workers, and what each one gets."""

    num_workers: int = Field(
        1,
        ge=1,
        description="Data-parallel workers (DDP or DeepSpeed ranks). 1: train in the step's own "
        "process (no Ray Train start-up); more: a Ray Train TorchTrainer.",
    )
    min_workers: int | None = Field(
        None,
        ge=1,
        description="Elastic training: start with as few as this many workers when the cluster "
        "cannot give `num_workers` yet, and grow towards `num_workers` as nodes arrive (Ray "
        "Train's (min, max) workers). Only with Ray Train (num_workers > 1).",
    )
    resize_interval_s: float = Field(
        60.0,
        gt=0,
        description="Elastic training: how often Ray Train looks for more workers to grow to "
        "(a resize restarts the workers from the last checkpoint).",
    )
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); CPU workers use gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs reserved per worker.")
    max_failures: int = Field(
        2,
        ge=-1,
        description="Restarts from the last checkpoint after a worker dies (-1: unlimited; "
        "one worker: the step's task is restarted).",
    )

    @model_validator(mode="after")
    def _elastic_range(self) -> ScalingSettings:
        if self.min_workers is not None and self.min_workers > self.num_workers:
            raise ValueError(
                f"min_workers ({self.min_workers}) must not exceed num_workers ({self.num_workers})"
            )
        return self


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
    grad_accum_steps: int = Field(
        1,
        ge=1,
        description="Batches whose gradients add up before each optimiser step (an effective "
        "batch of batch_size x grad_accum_steps per worker); each batch's loss is divided by it.",
    )
    grad_clip: float | None = Field(
        None, gt=0, description="Clip the gradients' global L2 norm to this before each step."
    )
    across_documents: bool = Field(
        False,
        description="Language models: also count a document's first token as a target (predicted "
        "from the previous document's end token). Default: those targets are left out, as padding.",
    )
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
    domains: list[str] | None = Field(
        None,
        description="Train and validate only on rows of these domains (a multi-domain "
        "dataset, e.g. [rot15, rot30]). Default: every domain.",
    )
    exclude_domains: list[str] = Field(
        default_factory=list,
        description="Leave these domains out of training and validation (e.g. the held-out "
        "target domain).",
    )
    shuffle_buffer: int = Field(
        2048, ge=0, description="Rows in each worker's local shuffle buffer (streamed data)."
    )
    worker_cache_mb: float = Field(
        512,
        ge=0,
        description="Training data (with teacher outputs) of at most this many MB per worker is "
        "read once, held in memory and fully reshuffled each epoch (seeded: the same config "
        "trains the same weights on one CPU worker); larger data streams through Ray Data. "
        "0: always stream.",
    )
    checkpoint_every_s: float = Field(
        30.0,
        ge=0,
        description="Save a resumable checkpoint when this many seconds passed since the last "
        "one (0: every epoch). A crashed worker resumes from it.",
    )

    def runs_in_process(self) -> bool:
        """The one decision between training in the step's own process (one DDP worker) and a
        Ray Train `TorchTrainer` (several workers, or DeepSpeed)."""
        return self.scaling.num_workers == 1 and self.strategy == "ddp"

    @model_validator(mode="after")
    def _deepspeed_needs_strategy(self) -> TrainingSettings:
        if "deepspeed" in self.model_fields_set and self.strategy != "deepspeed":
            raise ValueError("`deepspeed` settings are only used with `strategy: deepspeed`")
        if self.strategy == "deepspeed" and self.select == "best":
            raise ValueError("`select: best` is not supported with `strategy: deepspeed`; use last")
        return self
