"""Running the loop with Ray Train: our settings become Ray's config objects only here."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from components.training.loop import BEST_FILE, DS_TAG, META_FILE, MODEL_FILE, LoopSpec
from orchestrator.execution.context import StepContext
from orchestrator.storage.store import ArtifactStore
from schemas.components.training import TrainingSettings


@dataclass
class FitResult:
    student_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    metrics: dict[str, float]


def _entry(config: dict[str, Any]) -> None:
    from components.training.loop import train_loop_per_worker

    train_loop_per_worker(config["spec"])


def steps_per_epoch(rows: int, settings: TrainingSettings) -> int:
    return max(1, math.ceil(rows / settings.scaling.num_workers / settings.batch_size))


def held_splits(materialized: dict[str, Any], settings: TrainingSettings) -> frozenset[str]:
    """The splits small enough for each worker to keep in memory (see `batches.py`)."""
    budget = settings.worker_cache_mb * 2**20
    return frozenset(
        name
        for name, ds in materialized.items()
        if ds.size_bytes() / settings.scaling.num_workers <= budget
    )


def run_config(ctx: StepContext, settings: TrainingSettings) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    from components.training.data import arrow_path, pyarrow_filesystem

    store: ArtifactStore = ctx.store
    return RunConfig(
        name=f"{ctx.step_id.replace('[', '_').replace(']', '')}-{ctx.attempt}",
        storage_path=arrow_path(store, ctx.work_uri("ray_train")),
        storage_filesystem=pyarrow_filesystem(store),
        failure_config=FailureConfig(max_failures=settings.scaling.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
    )


def fit(ctx: StepContext, spec: LoopSpec, datasets: dict[str, Any]) -> FitResult:
    """Train with a `TorchTrainer`; returns the selected student weights and the history."""
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    settings: TrainingSettings = spec.training
    scaling = settings.scaling
    if settings.cache_data:
        datasets = {name: ds.materialize() for name, ds in datasets.items()}
        spec = replace(spec, held_splits=held_splits(datasets, settings))
    trainer = TorchTrainer(
        _entry,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={
                "CPU": scaling.cpus_per_worker,
                **({"GPU": 1} if scaling.use_gpu else {}),
            },
        ),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=run_config(ctx, settings),
        datasets=datasets,
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        import json

        meta = json.loads(Path(d, META_FILE).read_text())
        if settings.strategy == "deepspeed":
            state = _consolidate_zero(Path(d))
        else:
            chosen = BEST_FILE if settings.select == "best" else MODEL_FILE
            state = torch.load(Path(d, chosen), map_location="cpu", weights_only=True)
    history = meta["history"]
    final = dict(history[-1])
    best = max(h["val_accuracy"] for h in history)
    metrics = {k: float(v) for k, v in final.items() if isinstance(v, int | float)}
    metrics["best_val_accuracy"] = float(best)
    metrics["resumes"] = float(meta["resumes"])  # times a restarted worker group resumed
    return FitResult(student_state=state, history=history, metrics=metrics)


def _consolidate_zero(directory: Path) -> dict[str, torch.Tensor]:
    """fp32 student weights from a (possibly partitioned) DeepSpeed ZeRO checkpoint."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=DS_TAG)
    prefix = "student."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
