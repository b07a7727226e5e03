"""Running the loop: in the step's own process (one worker), or with Ray Train.

One worker with DDP (the default) runs `run_loop` right here — no `TorchTrainer`, no worker
actors, none of Ray Train's ~12 s start-up — and resumes after a crash from the checkpoint in
the store when Ray restarts the step's task (`Component.task_retries`). Several workers, or
DeepSpeed, run a `TorchTrainer`; our settings become Ray's config objects only here. Held data
reaches Ray Train workers through the object store (each worker takes rows ``rank::world``, the
same count on every worker for training: see `worker_rows`); streamed data as Ray Data datasets
(Ray Train's equal splits).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from components.training.data import TrainingData
from components.training.loop import BEST_FILE, DS_TAG, MODEL_FILE, LoopResult, LoopSpec, run_loop
from components.training.session import LocalSession
from components.training.tensorboard import EpochBoard, epoch_board
from orchestrator import StepContext
from schemas.kd.components.training import TrainingSettings


@dataclass
class FitResult:
    student_state: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    metrics: dict[str, float]


def steps_per_epoch(rows: int, settings: TrainingSettings) -> int:
    return max(1, math.ceil(rows / settings.scaling.num_workers / settings.batch_size))


def as_tensors(columns: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(values) for name, values in columns.items()}


def fit(ctx: StepContext, spec: LoopSpec, data: TrainingData, *, resume: str = "loop") -> FitResult:
    """Train; returns the selected student weights, the history and summary metrics.

    ``resume`` names the resume folder of an in-process run (`StepContext.resume_path`): a step
    that trains several models gives each its own.
    """
    settings = spec.training
    with epoch_board(ctx, resume) as board:  # TensorBoard curves, when the run is tracked
        if settings.runs_in_process():
            result = _fit_here(ctx, spec, data, resume, board)
            chosen = result.best_state if settings.select == "best" else result.student_state
            state = chosen if chosen is not None else result.student_state
            return _summary(state, result.history, result.resumes)
        fitted = _fit_ray_train(ctx, spec, data)
        if board is not None:
            board.history(fitted.history)
        return fitted


#: Seconds between two epoch lines of a training step on the console.
PROGRESS_EVERY_S = 5.0


def _fit_here(
    ctx: StepContext, spec: LoopSpec, data: TrainingData, resume: str, board: EpochBoard | None
) -> LoopResult:
    settings = spec.training
    use_gpu = settings.scaling.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    torch.set_num_threads(max(1, int(ctx.resources.num_cpus or settings.scaling.cpus_per_worker)))
    epochs = settings.epochs

    held = data.held.get("train")
    rows = len(held["y"]) if held else spec.steps_per_epoch * settings.batch_size

    last_line = [float("-inf")]

    def progress(metrics: dict[str, Any]) -> None:
        from orchestrator.execution import metrics as dashboard

        seconds = float(metrics.get("seconds") or 0.0)
        epoch = int(metrics["epoch"])
        dashboard.training_epoch(ctx.step_id, epoch, rows / max(seconds, 1e-9))
        if board is not None:
            board.epoch(metrics)
        # A line every few seconds (and for the last epoch): progress, not a flood.
        if epoch + 1 < epochs and time.monotonic() - last_line[0] < PROGRESS_EVERY_S:
            return
        last_line[0] = time.monotonic()
        ctx.log(
            "epoch %d/%d: loss %.4f, val accuracy %.4f",
            int(metrics["epoch"]) + 1,
            epochs,
            metrics.get("train_loss", float("nan")),
            metrics["val_accuracy"],
        )

    session = LocalSession(ctx.store, ctx.resume_path(resume), device, on_epoch=progress)

    def source(split: str) -> Any:
        if split in data.held:
            return as_tensors(data.held[split])
        return data.streamed[split]

    return run_loop(spec, session, source("train"), source(settings.eval_split))


def _summary(
    state: dict[str, torch.Tensor], history: list[dict[str, Any]], resumes: int
) -> FitResult:
    final = dict(history[-1])
    metrics = {k: float(v) for k, v in final.items() if isinstance(v, int | float)}
    metrics["best_val_accuracy"] = float(max(h["val_accuracy"] for h in history))
    metrics["resumes"] = float(resumes)  # times a restarted worker resumed
    return FitResult(student_state=state, history=history, metrics=metrics)


def worker_rows(columns: dict[str, Any], rank: int, world: int, *, equal: bool) -> dict[str, Any]:
    """Worker ``rank``'s rows of held ``columns``: rows ``rank::world``. ``equal`` cuts every
    worker to ``rows // world`` of them (at most ``world - 1`` rows of the split left out), so
    every worker runs the same number of batches: DDP all-reduces every backward pass, and a
    worker with one batch more would wait for the others for ever."""
    rows = len(next(iter(columns.values()))) if columns else 0
    stop = rows // world * world if equal else rows
    return {name: value[rank:stop:world] for name, value in columns.items()}


def _entry(config: dict[str, Any]) -> None:
    import ray

    from components.training.session import RayTrainSession

    spec: LoopSpec = config["spec"]
    session = RayTrainSession()
    torch.set_num_threads(max(1, int(spec.training.scaling.cpus_per_worker)))

    def source(split: str) -> Any:
        if split in config["held"]:
            columns = ray.get(config["held"][split])
            equal = split == "train"  # DDP steps in lockstep; evaluation only sums at the end
            return as_tensors(worker_rows(columns, session.rank, session.world, equal=equal))
        if split in config["own"]:  # a source that makes each worker's batches itself
            return config["own"][split]
        return ray.train.get_dataset_shard(split)

    run_loop(spec, session, source("train"), source(spec.training.eval_split))


def run_config(ctx: StepContext, settings: TrainingSettings) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    store = ctx.store
    return RunConfig(
        name=f"run-{ctx.attempt}",  # no user text in paths
        storage_path=store.fs_path(ctx.work_path("ray_train")),
        storage_filesystem=store.arrow_filesystem(),
        failure_config=FailureConfig(max_failures=settings.scaling.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=2),
    )


def _fit_ray_train(ctx: StepContext, spec: LoopSpec, data: TrainingData) -> FitResult:
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    settings = spec.training
    scaling = settings.scaling
    held = {split: ray.put(columns) for split, columns in data.held.items()}
    own = {s: d for s, d in data.streamed.items() if hasattr(d, "for_worker")}
    # Elastic: (min, max) grows as nodes arrive (Ray Train V2; V1's type stubs say int).
    workers: Any = (
        (scaling.min_workers, scaling.num_workers)
        if scaling.min_workers is not None
        else scaling.num_workers
    )
    elastic: dict[str, Any] = (
        {"elastic_resize_monitor_interval_s": scaling.resize_interval_s}
        if scaling.min_workers is not None
        else {}
    )
    trainer = TorchTrainer(
        _entry,
        train_loop_config={"spec": spec, "held": held, "own": own},
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={
                "CPU": scaling.cpus_per_worker,
                **({"GPU": 1} if scaling.use_gpu else {}),
            },
            **elastic,
        ),
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        run_config=run_config(ctx, settings),
        datasets={s: d for s, d in data.streamed.items() if s not in own},
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        meta = json.loads(Path(d, "meta.json").read_text())
        if settings.strategy == "deepspeed":
            state = _consolidate_zero(Path(d))
        else:
            chosen = BEST_FILE if settings.select == "best" else MODEL_FILE
            state = torch.load(Path(d, chosen), map_location="cpu", weights_only=True)
    return _summary(state, meta["history"], meta["resumes"])


def _consolidate_zero(directory: Path) -> dict[str, torch.Tensor]:
    """fp32 student weights from a (possibly partitioned) DeepSpeed ZeRO checkpoint."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(str(directory), tag=DS_TAG)
    prefix = "student."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
