"""The training loop shared by `train` and `distill`, in one process or on Ray Train workers.

Every epoch: train on this worker's rows, evaluate the eval split (summed over ranks), report
the metrics, and save a resumable checkpoint when ``checkpoint_every_s`` has passed (always on
the last epoch of a multi-worker run, whose weights come back through it). A restarted worker
(after a crash) resumes from the last checkpoint: student, loss state (projectors, TAID),
optimizer, schedule, epoch and history all come back. A loss that becomes NaN or infinite stops
the step with the epoch and the loss term that did it, before anything is committed.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from components.training.batches import HeldBatches, StreamBatches
from components.training.midepoch import BEST_FILE, STATE_FILE, MidEpoch, write_state
from components.training.midepoch import MODEL_FILE as MODEL_FILE  # trainer.py imports it
from components.training.optimizers import deepspeed_engine, make_optimizer, make_schedule
from components.training.session import Session, read_meta, write_meta
from components.training.tasks import Batches, ClassifierTask, Task, all_reduce
from components.training.tasks import to_device as _to_device  # noqa: F401 (tests import it)
from orchestrator import ArtifactStore
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.components.training import TrainingSettings
from schemas.kd.models import ModelSpec

DS_TAG = "zero"


class Objective(Protocol):
    """Builds the module the loop optimises: ``module(batch, epoch, step) -> (loss, parts)``,
    with the student as ``module.student`` and ``module.on_step_end(loss)``."""

    def build(self, student: nn.Module, total_steps: int, store: ArtifactStore) -> nn.Module: ...


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the step fails and nothing is committed."""


@dataclass
class LoopSpec:
    """The loop's whole brief (picklable: Pydantic objects travel as they are)."""

    model: ModelSpec  # num_classes/input_shape filled in
    training: TrainingSettings
    objective: Objective
    steps_per_epoch: int
    store: ArtifactStore
    init: ModelCheckpoint | None = None  # start the student from these weights
    task: Task | None = None  # batches to the device, and the eval metrics; None: a classifier

    def the_task(self) -> Task:
        return self.task or ClassifierTask(tuple(self.model.input_shape or ()))

    def optimizer_steps(self) -> int:
        """Optimiser steps of the whole run (gradient accumulation: one per
        ``grad_accum_steps`` batches, and one for an epoch's last, shorter group)."""
        per_epoch = math.ceil(self.steps_per_epoch / self.training.grad_accum_steps)
        return self.training.epochs * per_epoch


@dataclass
class LoopResult:
    student_state: dict[str, torch.Tensor]
    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]
    resumes: int


def _unwrap(module: nn.Module) -> Any:
    return module.module if hasattr(module, "module") else module


def _check_finite(loss: torch.Tensor, parts: dict[str, float], epoch: int, step: int) -> None:
    if bool(torch.isfinite(loss)):
        return
    bad = [f"{name} = {value}" for name, value in parts.items() if not math.isfinite(value)]
    raise NonFiniteLoss(
        f"the training loss became {float(loss)} at epoch {epoch} (step {step})"
        + (f"; non-finite terms: {', '.join(bad)}" if bad else "")
        + ". Lower the learning rate, check the loss settings (e.g. temperature) and the "
        "input data; nothing was committed."
    )


def held_or_streamed(
    source: Any, *, batch_size: int, shuffle: bool, cfg: TrainingSettings, rank: int, world: int = 1
) -> Batches:
    """Batches over held columns (a dict of tensors), a Ray Data dataset/shard, or a source
    that makes each worker's batches itself (``for_worker``: streamed token sequences)."""
    if isinstance(source, dict):
        return HeldBatches(source, batch_size=batch_size, shuffle=shuffle, seed=cfg.seed, rank=rank)
    if hasattr(source, "for_worker"):
        return source.for_worker(
            batch_size=batch_size, shuffle=shuffle, settings=cfg, rank=rank, world=world
        )
    return StreamBatches(
        source,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=cfg.seed,
        rank=rank,
        shuffle_buffer=cfg.shuffle_buffer,
    )


@dataclass
class _Run:
    """One worker's training: what it optimises and where it stands. All of it comes back when
    a restarted worker resumes from a checkpoint."""

    module: nn.Module  # the objective's module, holding the student
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    engine: Any  # the DeepSpeed engine (it then owns the optimiser), or None
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -1.0  # the best validation accuracy so far
    best_state: dict[str, torch.Tensor] | None = None  # the best epoch's student weights
    resumes: int = 0
    accum: int = 1  # batches per optimiser step (gradient accumulation)
    clip: float | None = None  # max global gradient norm
    pending: int = 0  # batches back-propagated since the last optimiser step
    within: dict[str, Any] | None = None  # a mid-epoch checkpoint's place (`midepoch`)

    def backward(self, loss: torch.Tensor) -> bool:
        """Back-propagate ``loss`` (divided by ``accum``: the gradient of the mean over the
        group's batches); True when this completed a group and the optimiser stepped."""
        self.pending += 1
        if self.engine is not None:  # DeepSpeed scales, accumulates and clips by its config
            self.engine.backward(loss)
            self.engine.step()
            done = self.pending == self.accum
            self.pending = 0 if done else self.pending
            return done
        (loss / self.accum if self.accum > 1 else loss).backward()
        return self.pending == self.accum and self.update()

    def update(self) -> bool:
        """One optimiser (and schedule) step over the gradients added since the last one
        (clipped first), when there are any; an epoch ends with one for its last, shorter
        group. DeepSpeed's engine carries a group over to the next epoch instead."""
        if self.engine is not None or not self.pending:
            return False
        if self.clip is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.pending = 0
        return True

    def meta(self, epoch: int) -> dict[str, Any]:
        """What a checkpoint records besides the tensors (`session.write_meta`)."""
        return {"epoch": epoch, "history": self.history, "best": self.best, "resumes": self.resumes}


def run_loop(spec: LoopSpec, session: Session, train_data: Any, eval_data: Any) -> LoopResult:
    """Train as the module docstring says. ``*_data``: held columns (dict of tensors, this
    worker's rows) or a Ray Data dataset/shard."""
    cfg = spec.training
    torch.manual_seed(cfg.seed)
    task = spec.the_task()
    run = _start(spec, session)
    _resume(run, session)
    runner = _runner(run, session.world)
    rank, world = session.rank, session.world
    train_batches = held_or_streamed(
        train_data, batch_size=cfg.batch_size, shuffle=True, cfg=cfg, rank=rank, world=world
    )
    eval_size = task.eval_batch_size(cfg.batch_size)
    eval_batches = held_or_streamed(
        eval_data, batch_size=eval_size, shuffle=False, cfg=cfg, rank=rank, world=world
    )
    step = run.start_epoch * spec.steps_per_epoch
    if run.within is not None:  # resumed inside an epoch: the data goes on from there
        step = run.within["step"]
        getattr(train_batches, "resume_from")(run.within["position"])  # noqa: B009
    mid = MidEpoch.of(train_batches, session, run, cfg.checkpoint_every_s)
    for epoch in range(run.start_epoch, cfg.epochs):
        started = time.perf_counter()
        metrics, step = _train_epoch(spec, run, runner, train_batches, epoch, step, mid, task)
        if hasattr(train_batches, "units_read"):  # streamed units read this epoch, by this run
            metrics["units_read"] = train_batches.units_read
        student_now = _unwrap(runner).student
        metrics.update(task.evaluate(student_now, eval_batches, epoch, session.device))
        metrics.update(
            epoch=epoch,
            seconds=time.perf_counter() - started,
            lr=run.optimizer.param_groups[0]["lr"],
            workers=session.world,  # elastic training grows it (a restart from the last checkpoint)
        )
        run.history.append(metrics)
        if metrics["val_accuracy"] > run.best and run.engine is None and session.rank == 0:
            run.best_state = {
                k: v.detach().cpu().clone() for k, v in student_now.state_dict().items()
            }
        run.best = max(run.best, metrics["val_accuracy"])
        last = epoch == cfg.epochs - 1
        # A Ray Train run's weights come back through its last checkpoint.
        if (mid.due() and not last) or (last and session.returns_by_checkpoint):
            _checkpoint(session, runner, run, metrics, epoch)
            mid.last = time.monotonic()
        else:
            session.report(metrics, None)
    student = _unwrap(runner).student
    return LoopResult(
        student_state={k: v.detach().cpu() for k, v in student.state_dict().items()},
        best_state=run.best_state,
        history=run.history,
        resumes=run.resumes,
    )


def _start(spec: LoopSpec, session: Session) -> _Run:
    """The student (`initial_model`: built, pretrained, or ``spec.init``'s weights), the
    objective's module around it on the worker's device, its optimiser and schedule, and
    DeepSpeed's engine when asked."""
    from components.artifacts.checkpoints import initial_model

    cfg = spec.training
    student = initial_model(spec.model, spec.store, spec.init, seed=cfg.seed)
    total_steps = spec.optimizer_steps()
    module = spec.objective.build(student, total_steps, spec.store).to(session.device)
    optimizer = make_optimizer([p for p in module.parameters() if p.requires_grad], cfg)
    scheduler = make_schedule(optimizer, cfg, total_steps)
    engine = None
    if cfg.strategy == "deepspeed":
        engine = deepspeed_engine(module, optimizer, scheduler, cfg, session.world)
    return _Run(
        module, optimizer, scheduler, engine, accum=cfg.grad_accum_steps, clip=cfg.grad_clip
    )


def _resume(run: _Run, session: Session) -> None:
    """Load the session's checkpoint into ``run``, when it has one (a restarted worker)."""
    with session.restore() as restored:
        if restored is None:
            return
        meta = read_meta(restored)
        if run.engine is not None:
            run.engine.load_checkpoint(str(restored), tag=DS_TAG)
        else:
            # Our own file, holding optimizer state beside tensors: not weights-only.
            state = torch.load(
                Path(restored, STATE_FILE), map_location=session.device, weights_only=False
            )
            run.module.load_state_dict(state["module"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            if "rng" in state:
                torch.set_rng_state(state["rng"])
            if Path(restored, BEST_FILE).exists():
                run.best_state = torch.load(
                    Path(restored, BEST_FILE), map_location="cpu", weights_only=True
                )
        run.start_epoch, run.history = meta["epoch"] + 1, meta["history"]
        run.best, run.resumes = meta["best"], meta["resumes"] + 1
        run.within = meta.get("within")
        where = f"epoch {meta['epoch']}"
        if run.within is not None:
            where = f"epoch {run.within['epoch']}, step {run.within['step']} (mid-epoch)"
        print(f"[kdorch] rank {session.rank}: resumed from the checkpoint of {where}")


def _runner(run: _Run, world: int) -> Any:
    """What the loop calls: DeepSpeed's engine, the module wrapped for DDP, or the module."""
    if run.engine is not None:
        return run.engine
    if world > 1:
        import ray.train.torch

        return ray.train.torch.prepare_model(run.module)
    return run.module


def _train_epoch(
    spec: LoopSpec,
    run: _Run,
    runner: Any,
    data: Batches,
    epoch: int,
    step: int,
    mid: MidEpoch,
    task: Task,
) -> tuple[dict[str, Any], int]:
    """One pass over this worker's training rows, from global step ``step`` (batches): the
    mean over all workers' batches of the loss and of each logged part (``train_<name>``), and
    the global step reached. The objective hears of each optimiser step (``on_step_end``) with
    the mean loss of its group of batches; after one, ``mid`` may checkpoint (`midepoch`)."""
    sums: dict[str, float] = {}
    batches = 0
    if run.within is not None and run.within["epoch"] == epoch:  # resumed inside this epoch
        sums, batches = dict(run.within["sums"]), run.within["batches"]
        run.within = None
    session = mid.session
    group: list[float] = []  # losses of the batches since the last optimiser step
    runner.train()
    for raw in data.batches(epoch):
        batch = task.to_device(raw, session.device)
        progress = epoch + batches / max(spec.steps_per_epoch, 1)
        loss, parts = runner(batch, progress, step)
        _check_finite(loss, parts, epoch, step)
        value = float(loss.detach())
        group.append(value)
        stepped = run.backward(loss)
        if stepped:
            _unwrap(runner).on_step_end(sum(group) / len(group))
            group = []
        sums["loss"] = sums.get("loss", 0.0) + value
        for name, part in parts.items():
            sums[name] = sums.get(name, 0.0) + float(part)
        batches += 1
        step += 1
        if stepped:
            mid.maybe_save(_unwrap(runner), run, epoch, sums, batches, step)
    if run.update():  # the epoch's last, shorter group
        _unwrap(runner).on_step_end(sum(group) / len(group))
    names = sorted(sums)
    reduced = all_reduce([sums[n] for n in names] + [batches], session.device)
    means = {f"train_{n}": v / max(reduced[-1], 1) for n, v in zip(names, reduced, strict=False)}
    return means, step


def _checkpoint(
    session: Session, runner: Any, run: _Run, metrics: dict[str, Any], epoch: int
) -> None:
    """Report the epoch with a checkpoint (rank 0's, or every rank's ZeRO partition)."""
    with tempfile.TemporaryDirectory(prefix="kdorch-ckpt-") as tmp:
        if run.engine is not None:  # every rank writes its ZeRO partition; Ray merges the folders
            run.engine.save_checkpoint(tmp, tag=DS_TAG)
            if session.rank == 0:
                write_meta(Path(tmp), run.meta(epoch))
            session.report(metrics, Path(tmp))
            return
        if session.rank != 0:
            session.report(metrics, None)
            return
        write_state(Path(tmp), _unwrap(runner), run)
        write_meta(Path(tmp), run.meta(epoch))
        session.report(metrics, Path(tmp))
