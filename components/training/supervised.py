"""The `train` component's objective: cross-entropy with the labels, nothing else.

Kept apart from the distillation objective (and its loss library), so that a `train` step's
code fingerprint — and so its cache key — does not change when a KD loss does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SupervisedModule(nn.Module):
    """Student + CE. ``forward(batch) -> (loss, {"ce": value})``."""

    def __init__(self, student: nn.Module, label_smoothing: float = 0.0):
        super().__init__()
        self.student = student
        self.label_smoothing = label_smoothing

    def forward(
        self, batch: dict[str, torch.Tensor], epoch: float = 0.0, step: int = 0
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.student(batch["x"])
        loss = F.cross_entropy(
            logits.float(), batch["y"].long(), label_smoothing=self.label_smoothing
        )
        return loss, {"ce": float(loss.detach())}

    def on_step_end(self, loss_value: float) -> None:
        """Nothing adapts between steps."""


@dataclass(frozen=True)
class SupervisedObjective:
    label_smoothing: float = 0.0

    def build(self, student: nn.Module, total_steps: int, store: Any) -> SupervisedModule:
        return SupervisedModule(student, self.label_smoothing)
