"""The function each Ray Train worker runs (DDP or DeepSpeed), shared by `train` and `distill`.

Every epoch: train on this worker's shard, evaluate the eval split (summed over ranks), then
report metrics with a checkpoint. A restarted worker group (after a crash; `max_failures`)
resumes from the last checkpoint: student, loss state (projectors, TAID), optimizer, schedule,
epoch and history all come back.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from components.training.batches import EpochBatches
from components.training.objective import ObjectiveSpec

MODEL_FILE = "model.pt"
BEST_FILE = "best_model.pt"
STATE_FILE = "train_state.pt"
META_FILE = "meta.json"
DS_TAG = "zero"


@dataclass
class LoopSpec:
    """The worker's whole brief (picklable)."""

    model: dict[str, Any]  # ModelSpec JSON with num_classes/input_shape filled in
    training: Any  # schemas.components.training.TrainingSettings
    objective: ObjectiveSpec
    steps_per_epoch: int
    init_weights: str | None = None  # checkpoint URI to start the student from
    storage_options: dict[str, Any] = field(default_factory=dict)
    held_splits: frozenset[str] = frozenset()  # splits each worker keeps in memory (batches.py)


def _optimizer(params: Any, cfg: Any) -> torch.optim.Optimizer:
    opt = cfg.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return cls(params, lr=opt.lr, weight_decay=opt.weight_decay)


def _schedule(
    optimizer: torch.optim.Optimizer, cfg: Any, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.optimizer.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (
                0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
            ),
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _to_device(
    batch: dict[str, Any], device: torch.device, shape: list[int]
) -> dict[str, torch.Tensor]:
    out = {
        k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
    }
    out["x"] = out["x"].float().reshape(-1, *shape)
    return out


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def _evaluate(
    student: torch.nn.Module,
    data: EpochBatches,
    epoch: int,
    device: torch.device,
    shape: list[int],
) -> dict[str, float]:
    student.eval()
    correct = total = 0.0
    loss_sum = 0.0
    for raw in data.batches(epoch):
        batch = _to_device(raw, device, shape)
        logits = student(batch["x"])
        loss_sum += torch.nn.functional.cross_entropy(logits, batch["y"], reduction="sum").item()
        correct += (logits.argmax(1) == batch["y"]).sum().item()
        total += len(batch["y"])
    correct, total, loss_sum = _all_reduce([correct, total, loss_sum], device)
    student.train()
    return {"val_accuracy": correct / max(total, 1), "val_loss": loss_sum / max(total, 1)}


def _unwrap(module: torch.nn.Module) -> Any:
    return module.module if hasattr(module, "module") else module


def train_loop_per_worker(spec: LoopSpec) -> None:
    import ray.train
    import ray.train.torch

    from components.models import build_model, load_checkpoint
    from components.training.objective import TrainModule

    cfg = spec.training
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    device = ray.train.torch.get_device()
    shape = list(spec.model["input_shape"])

    from pydantic import TypeAdapter

    from schemas.models import ModelSpec as _ModelSpec

    model_spec = TypeAdapter(_ModelSpec).validate_python(spec.model)
    if spec.init_weights:
        student, _ = load_checkpoint(spec.init_weights, storage_options=spec.storage_options)
    else:
        student = build_model(model_spec, seed=cfg.seed)
    total_steps = cfg.epochs * spec.steps_per_epoch
    module = TrainModule(student, spec.objective, total_steps).to(device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _optimizer(params, cfg)
    scheduler = _schedule(optimizer, cfg, total_steps)

    start_epoch, history, best, resumes = 0, [], -1.0, 0
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's student weights
    restored = ray.train.get_checkpoint()
    deepspeed_engine = None
    if cfg.strategy == "deepspeed":
        deepspeed_engine = _deepspeed(module, optimizer, scheduler, cfg, world)
        if restored is not None:
            with restored.as_directory() as d:
                deepspeed_engine.load_checkpoint(d, tag=DS_TAG)
                meta = json.loads(Path(d, META_FILE).read_text())
            start_epoch, history, resumes = meta["epoch"] + 1, meta["history"], meta["resumes"] + 1
        runner: Any = deepspeed_engine
    else:
        if restored is not None:
            with restored.as_directory() as d:
                state = torch.load(Path(d, STATE_FILE), map_location=device, weights_only=False)
                meta = json.loads(Path(d, META_FILE).read_text())
                best_state = torch.load(Path(d, BEST_FILE), map_location="cpu", weights_only=True)
            module.load_state_dict(state["module"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, history, best = meta["epoch"] + 1, meta["history"], meta["best"]
            resumes = meta["resumes"] + 1
        runner = (
            ray.train.torch.prepare_model(module) if world > 1 or device.type != "cpu" else module
        )
    if restored is not None:
        print(f"[kdorch] rank {rank}: resumed from the checkpoint of epoch {start_epoch - 1}")

    train_data = EpochBatches(
        ray.train.get_dataset_shard("train"),
        batch_size=cfg.batch_size,
        hold="train" in spec.held_splits,
        shuffle=True,
        seed=cfg.seed,
        rank=rank,
        shuffle_buffer=cfg.shuffle_buffer,
    )
    eval_data = EpochBatches(
        ray.train.get_dataset_shard(cfg.eval_split),
        batch_size=max(cfg.batch_size, 256),
        hold=cfg.eval_split in spec.held_splits,
        shuffle=False,
    )
    step = start_epoch * spec.steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        sums: dict[str, float] = {}
        batches = 0
        runner.train()
        for raw in train_data.batches(epoch):
            batch = _to_device(raw, device, shape)
            progress = epoch + batches / max(spec.steps_per_epoch, 1)
            loss, parts = runner(batch, progress, step)
            if deepspeed_engine is not None:
                deepspeed_engine.backward(loss)
                deepspeed_engine.step()
            else:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
            _unwrap(runner).loss.on_step_end(float(loss.detach()))
            for name, value in {"loss": float(loss.detach()), **parts}.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            batches += 1
            step += 1
        names = sorted(sums)
        reduced = _all_reduce([sums[n] for n in names] + [batches], device)
        metrics = {
            f"train_{n}": v / max(reduced[-1], 1) for n, v in zip(names, reduced, strict=False)
        }
        metrics.update(_evaluate(_unwrap(runner).student, eval_data, epoch, device, shape))
        metrics.update(
            epoch=epoch, seconds=time.perf_counter() - started, lr=optimizer.param_groups[0]["lr"]
        )
        history.append(metrics)
        if metrics["val_accuracy"] > best and deepspeed_engine is None and rank == 0:
            student = _unwrap(runner).student
            best_state = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
        best = max(best, metrics["val_accuracy"])
        meta = {"epoch": epoch, "history": history, "best": best, "resumes": resumes}
        _report(runner, deepspeed_engine, optimizer, scheduler, metrics, meta, best_state, rank)


def _report(
    runner: Any,
    engine: Any,
    optimizer: Any,
    scheduler: Any,
    metrics: dict[str, Any],
    meta: dict[str, Any],
    best_state: dict[str, torch.Tensor] | None,
    rank: int,
) -> None:
    """Report the epoch with a checkpoint (rank 0's, or every rank's ZeRO partition)."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        if engine is not None:  # every rank writes its ZeRO partition; Ray merges the folders
            engine.save_checkpoint(tmp, tag=DS_TAG)
            if rank == 0:
                Path(tmp, META_FILE).write_text(json.dumps(meta))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            return
        if rank != 0:
            ray.train.report(metrics)
            return
        module = _unwrap(runner)
        torch.save(module.student.state_dict(), Path(tmp, MODEL_FILE))
        torch.save(best_state, Path(tmp, BEST_FILE))
        torch.save(
            {
                "module": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
            Path(tmp, STATE_FILE),
        )
        Path(tmp, META_FILE).write_text(json.dumps(meta))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _deepspeed(
    module: torch.nn.Module, optimizer: Any, scheduler: Any, cfg: Any, world: int
) -> Any:
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.scaling.use_gpu else "cpu")
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if cfg.scaling.use_gpu else "gloo")
    zero: dict[str, Any] = {"stage": cfg.deepspeed.zero_stage}
    if cfg.deepspeed.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    config = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": 1,
        "train_batch_size": cfg.batch_size * world,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    # Passing a torch optimizer avoids compiling DeepSpeed's fused/CPU Adam ops on CPU machines.
    engine, _, _, _ = deepspeed.initialize(
        model=module, optimizer=optimizer, lr_scheduler=scheduler, config=config
    )
    return engine
