"""Distillation as a library: what the `distill` component runs, step by step.

`distill` calls `distill_student` once; `student_search`'s validation mode calls it once per
sampled candidate, so an accuracy it reports is what a `distill` step with the same config
would reach (same data preparation, objective, loop and checkpointing). Each call names its own
resume folder, so several distillations in one step never resume from each other's checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from components.training.data import TrainingData
from components.training.teachers import checked_teachers
from components.training.trainer import FitResult
from orchestrator import StepContext
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.components.distill import DistillConfig
from schemas.kd.models import ModelSpec


def distill_student(
    ctx: StepContext,
    cfg: DistillConfig,
    spec: ModelSpec,
    data: Dataset,
    *,
    logits: Sequence[LogitShards] = (),
    teachers: Sequence[ModelCheckpoint] = (),
    init: ModelCheckpoint | None = None,
    resume: str = "loop",
) -> FitResult:
    """Distil ``spec`` (num_classes/input_shape filled in) on ``data`` with ``cfg``'s losses.

    ``resume`` names the step's resume folder of this training (`StepContext.resume_path`).
    The teacher inputs are checked here (`checked_teachers`), before any data is read.
    """
    from components.training.data import prepare_data
    from components.training.loop import LoopSpec
    from components.training.objective import DistillObjective
    from components.training.trainer import fit, steps_per_epoch
    from components.training.views import training_views

    logits, teachers = checked_teachers(cfg, logits, teachers)
    views = training_views(cfg, data, logits)  # refused before any data is read
    caches = list(logits)
    training_data = prepare_data(ctx.store, data, cfg, caches)
    kinds = {loss.type for loss in cfg.losses}
    class_means, teacher_dim = None, caches[0].feature_dim if caches else None
    if "nd" in kinds:
        class_means, teacher_dim = teacher_class_means(
            ctx, cfg, data, caches, list(teachers), training_data
        )
    objective = DistillObjective(
        losses=list(cfg.losses),
        num_classes=data.num_classes,
        num_teachers=len(caches),
        teacher_weights=cfg.normalised_teacher_weights(),
        teacher_feature_dim=teacher_dim,
        class_means=class_means,
        online_teachers=list(teachers),
        views=views,
        seed=cfg.seed,
    )
    loop = LoopSpec(
        model=spec,
        training=cfg,
        objective=objective,
        steps_per_epoch=steps_per_epoch(data.splits["train"], cfg),
        store=ctx.store,
        init=init,
    )
    return fit(ctx, loop, training_data, resume=resume)


def teacher_class_means(
    ctx: StepContext,
    cfg: DistillConfig,
    data: Dataset,
    logits: list[LogitShards],
    teachers: list[ModelCheckpoint],
    prepared: TrainingData,
) -> tuple[np.ndarray, int]:
    """e_c: the teachers' (fused) mean penultimate embedding per class over the train split."""
    from components.artifacts.datasets import read_split
    from components.training.data import held_columns
    from components.training.views import view_mean

    weights = cfg.normalised_teacher_weights()
    if logits:
        columns = prepared.held.get("train") or held_columns(ctx.store, data, "train", logits)
        # With views: each row's mean over its views (teachers online: over the clean rows).
        feats = [
            view_mean(columns[f"t{i}_feature"].astype(np.float32), cache.views)
            for i, cache in enumerate(logits)
        ]
        y = columns["y"]
    else:
        split = read_split(ctx.store, data, "train")
        feats, y = online_features(ctx, teachers, split.x), split.y
    w = weights or [1.0 / len(feats)] * len(feats)
    fused = sum(wi * f for wi, f in zip(w, feats, strict=True))
    assert isinstance(fused, np.ndarray)
    means = np.stack([fused[y == c].mean(0) for c in range(data.num_classes)])
    return means, int(fused.shape[1])


def online_features(
    ctx: StepContext, teachers: list[ModelCheckpoint], x: np.ndarray
) -> list[np.ndarray]:
    """Each teacher's penultimate features of ``x``."""
    import torch

    from components.artifacts.checkpoints import load_model

    out = []
    for checkpoint in teachers:
        teacher, _ = load_model(ctx.store, checkpoint)
        with torch.inference_mode():
            out.append(
                torch.cat(
                    [
                        teacher.embed(torch.from_numpy(b))
                        for b in np.array_split(x, max(1, len(x) // 512))
                    ]
                ).numpy()
            )
    return out
