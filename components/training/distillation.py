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
from components.training.trainer import FitResult
from orchestrator import StepContext
from schemas.kd.artifacts import Dataset, LogitShards, ModelCheckpoint
from schemas.kd.components.distill import DistillConfig
from schemas.kd.models import ModelSpec

#: What each kind of teacher input puts into a batch (names of `KDBatch` fields).
_ALWAYS = frozenset({"student_logits", "student_features", "labels"})
_DENSE = frozenset({"teacher_logits"})
_TOPK = frozenset({"teacher_topk_indices", "teacher_topk_values", "teacher_rest_mass"})
_FEATURES = frozenset({"teacher_features"})
_HOW = {
    "teacher_logits": "all of the teacher's logits: run teacher_inference without `top_k`, or "
    "connect `teachers` (online)",
    "teacher_topk_indices": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_topk_values": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_rest_mass": "a top-k logit cache: teacher_inference with `top_k`",
    "teacher_features": "teacher features: teacher_inference with `feature: penultimate`, or "
    "`teachers` (online)",
}


def provided_fields(logits: Sequence[LogitShards], online: bool) -> frozenset[str]:
    """The batch fields the connected teacher inputs can fill."""
    if online:
        return _ALWAYS | _DENSE | _FEATURES
    if not logits:
        return _ALWAYS
    out = set(_ALWAYS)
    if all(c.top_k is None for c in logits):
        out |= _DENSE
    if all(c.top_k is not None for c in logits):
        out |= _TOPK
    if all(c.feature is not None for c in logits):
        out |= _FEATURES
    return frozenset(out)


def check_teacher_inputs(
    cfg: DistillConfig, logits: Sequence[LogitShards], teachers: Sequence[ModelCheckpoint]
) -> None:
    """Refuse combinations of teacher inputs and losses that cannot work, before training."""
    if logits and teachers:
        raise ValueError(
            "connect either `logits` (cached teacher outputs) or `teachers` (run online), not both"
        )
    if len({c.top_k for c in logits}) > 1:
        raise ValueError(
            "the logit caches mix dense and top-k (or different k): give every teacher the "
            "same teacher_inference settings"
        )
    count = len(logits) or len(teachers)
    if cfg.teacher_weights is not None and len(cfg.teacher_weights) != count:
        raise ValueError(
            f"teacher_weights has {len(cfg.teacher_weights)} weights for {count} teachers; "
            "give one per teacher, in input order"
        )
    provided = provided_fields(logits, bool(teachers))
    for i, loss in enumerate(cfg.losses):
        missing = sorted(loss.requires() - provided)
        if missing:
            needs = "; ".join(dict.fromkeys(_HOW.get(m, m) for m in missing))
            hint = ""
            if (
                loss.type in ("kd", "dkd", "pld", "taid", "meal")
                and "teacher_logits" in missing
                and any(c.top_k for c in logits)
            ):
                hint = " (with a top-k cache, use `type: topk_kl`)"
            raise ValueError(f"losses[{i}] ({loss.type}) needs {needs}{hint}")


def kept_teachers(
    cfg: DistillConfig, logits: Sequence[LogitShards], teachers: Sequence[ModelCheckpoint]
) -> tuple[list[LogitShards], list[ModelCheckpoint]]:
    """The teachers left after `skip_teachers_trained_on` (e.g. the expert of a held-out
    domain); ``teacher_weights`` apply to these, in input order."""
    skip = set(cfg.skip_teachers_trained_on)
    kept_logits = [c for c in logits if not skip & set(c.teacher_domains)]
    kept_online = [t for t in teachers if not skip & set(t.trained_domains)]
    if skip and (logits or teachers) and not (kept_logits or kept_online):
        raise ValueError(
            f"every teacher was trained on {sorted(skip)} (skip_teachers_trained_on): none left"
        )
    return kept_logits, kept_online


def checked_teachers(
    cfg: DistillConfig, logits: Sequence[LogitShards], teachers: Sequence[ModelCheckpoint]
) -> tuple[list[LogitShards], list[ModelCheckpoint]]:
    """`kept_teachers`, refused by `check_teacher_inputs` when they cannot serve ``cfg``'s
    losses and weights: the one check of teacher inputs, before anything trains."""
    kept = kept_teachers(cfg, logits, teachers)
    check_teacher_inputs(cfg, *kept)
    return kept


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

    logits, teachers = checked_teachers(cfg, logits, teachers)
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

    weights = cfg.normalised_teacher_weights()
    if logits:
        columns = prepared.held.get("train") or held_columns(ctx.store, data, "train", logits)
        feats = [columns[f"t{i}_feature"].astype(np.float32) for i in range(len(logits))]
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
