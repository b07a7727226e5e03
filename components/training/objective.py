"""The `distill` component's objective: the student plus its loss terms in one module.

Keeping the loss terms (which may own parameters: ND and FitNets projectors, TAID's state)
inside the same `nn.Module` as the student means DDP synchronises their gradients, DeepSpeed
partitions them, and checkpoints save and restore them with the student.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from components.artifacts.logits import TEACHER_COLUMNS
from schemas.kd.artifacts import ModelCheckpoint
from schemas.kd.losses import LossSpec

if TYPE_CHECKING:
    from components.data.augment import Views

_TEACHER_COLUMN = re.compile(rf"t\d+_({'|'.join(TEACHER_COLUMNS)})")


@dataclass
class DistillObjective:
    """Everything a worker needs to build the loss; Pydantic objects travel as they are."""

    losses: list[LossSpec]
    num_classes: int
    num_teachers: int = 0  # cached teacher outputs joined into the batch as t{i}_<column>
    teacher_weights: list[float] | None = None  # fusion weights, normalised to sum to 1
    teacher_feature_dim: int | None = None
    class_means: np.ndarray | None = None
    online_teachers: list[ModelCheckpoint] = field(default_factory=list)
    views: Views | None = None  # augmented views: each epoch a row trains on one of them
    seed: int = 0  # the run's seed: which view a row trains on in each epoch

    def build(self, student: nn.Module, total_steps: int, store: Any) -> TrainModule:
        return TrainModule(student, self, total_steps, store)


def viewed_batch(
    batch: dict[str, torch.Tensor], views: Views, seed: int, epoch: int
) -> dict[str, torch.Tensor]:
    """``batch`` as the student trains on it in ``epoch``: each row's drawn view in place of
    ``x`` (regenerated as the teacher saw it) and, of every per-view teacher column
    (``t{i}_<column>``, the views side by side), that view's slice."""
    row_id = batch["row_id"].cpu().numpy()
    drawn = views.draw(seed, epoch, row_id)
    out = dict(batch)
    out["x"] = views.tensors(batch["x"], row_id, drawn)
    view = torch.from_numpy(drawn).to(batch["x"].device)
    rows = torch.arange(len(row_id), device=view.device)
    for name, values in batch.items():
        if _TEACHER_COLUMN.fullmatch(name):
            picked = values.reshape(len(row_id), views.count, -1)[rows, view]
            out[name] = picked.squeeze(1) if name.endswith("_rest_mass") else picked
    return out


def _stack(batch: dict[str, torch.Tensor], column: str, count: int) -> torch.Tensor | None:
    items = [batch[f"t{t}_{column}"] for t in range(count) if f"t{t}_{column}" in batch]
    if not items:
        return None
    return items[0] if len(items) == 1 else torch.stack(items)


class TrainModule(nn.Module):
    """Student + loss terms + (frozen) online teachers. ``forward(batch) -> (total, parts)``."""

    def __init__(
        self, student: nn.Module, spec: DistillObjective, total_steps: int, store: Any
    ) -> None:
        super().__init__()
        from components.losses import build_loss

        self.student = student
        self.spec = spec
        means = (
            torch.as_tensor(spec.class_means, dtype=torch.float32)
            if spec.class_means is not None
            else None
        )
        self.loss = build_loss(
            spec.losses,
            num_classes=spec.num_classes,
            student_feature_dim=getattr(student, "feature_dim", None),
            teacher_feature_dim=spec.teacher_feature_dim,
            class_means=means,
            total_steps=total_steps,
        )
        self.teachers = nn.ModuleList()
        if spec.online_teachers:
            from components.artifacts.checkpoints import load_model

            for checkpoint in spec.online_teachers:
                teacher, _ = load_model(store, checkpoint)
                teacher.eval().requires_grad_(False)
                self.teachers.append(teacher)
        weights = spec.teacher_weights
        self.register_buffer(
            "teacher_weights",
            torch.tensor(weights, dtype=torch.float32) if weights else torch.zeros(0),
            persistent=False,
        )
        self.wants_features = bool(
            {"student_features", "teacher_features"} & set(self.loss.requires)
        )

    def kd_batch(self, batch: dict[str, torch.Tensor], epoch: float, step: int) -> Any:
        from components.losses import KDBatch

        if self.spec.views is not None:
            # ``epoch`` is epoch + batches done / steps per epoch, below epoch + 1 on every path
            # (held rows: ceil(rows / workers / batch) batches; Ray Train's equal splits), so
            # its floor is the epoch: the draw is a function of (seed, epoch, row_id) alone.
            batch = viewed_batch(batch, self.spec.views, self.spec.seed, math.floor(epoch))
        x, y = batch["x"], batch["y"]
        student: Any = self.student
        if self.wants_features:
            out = student.forward_features(x)
            logits, features = out.logits, out.features
        else:
            logits, features = student(x), None
        kd = KDBatch(
            student_logits=logits, labels=y, student_features=features, epoch=epoch, step=step
        )
        count = self.spec.num_teachers
        kd.teacher_logits = _stack(batch, "logits", count)
        kd.teacher_topk_indices = _stack(batch, "topk_indices", count)
        if kd.teacher_topk_indices is not None:
            kd.teacher_topk_indices = kd.teacher_topk_indices.long()
        kd.teacher_topk_values = _stack(batch, "topk_values", count)
        kd.teacher_rest_mass = _stack(batch, "rest_mass", count)
        kd.teacher_features = _stack(batch, "feature", count)
        if len(self.teachers):
            with torch.no_grad():
                outs = [t.forward_features(x) for t in self.teachers]  # type: ignore[operator]
            logits_t = [o.logits for o in outs]
            feats_t = [o.features for o in outs]
            kd.teacher_logits = logits_t[0] if len(outs) == 1 else torch.stack(logits_t)
            if self.wants_features:
                kd.teacher_features = feats_t[0] if len(outs) == 1 else torch.stack(feats_t)
        weights = self.get_buffer("teacher_weights")
        if weights.numel():
            kd.teacher_weights = weights
        return kd

    def forward(
        self, batch: dict[str, torch.Tensor], epoch: float = 0.0, step: int = 0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss(self.kd_batch(batch, epoch, step))

    def on_step_end(self, loss_value: float) -> None:
        self.loss.on_step_end(loss_value)

    def train(self, mode: bool = True) -> TrainModule:
        super().train(mode)
        for teacher in self.teachers:  # teachers stay in eval mode (frozen BN, no dropout)
            teacher.eval()
        return self
