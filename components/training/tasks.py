"""What the training loop does differently for a kind of model (`Task`): how a batch goes to
the device and what the eval split's metrics are. A classifier (`ClassifierTask`, the default)
reshapes its rows to the model's input and reports accuracy and cross-entropy; a language model
brings its own (`components.lm.training`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


class Batches(Protocol):
    def batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]: ...


class Task(Protocol):
    """What the loop does differently for a kind of model: a batch on the device (a
    classifier's rows reshaped to its input; a language model's token ids), and the metrics of
    the eval split (``val_accuracy``, ``val_loss`` and any more, summed over workers)."""

    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]: ...

    def eval_batch_size(self, batch_size: int) -> int: ...

    def evaluate(
        self, student: nn.Module, data: Batches, epoch: int, device: torch.device
    ) -> dict[str, float]: ...


@dataclass(frozen=True)
class ClassifierTask:
    """Rows of features ``x`` (reshaped to ``shape``) and labels ``y``."""

    shape: tuple[int, ...]

    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        return to_device(batch, device, self.shape)

    def eval_batch_size(self, batch_size: int) -> int:
        return max(batch_size, 256)  # rows are small: fewer, larger eval batches

    def evaluate(
        self, student: nn.Module, data: Batches, epoch: int, device: torch.device
    ) -> dict[str, float]:
        return evaluate(student, data, epoch, device, self.shape)


def to_device(
    batch: dict[str, Any], device: torch.device, shape: tuple[int, ...]
) -> dict[str, torch.Tensor]:
    out = {
        k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)
    }
    out["x"] = out["x"].float().reshape(-1, *shape)
    return out


def all_reduce(values: list[float], device: torch.device) -> list[float]:
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def evaluate(
    student: nn.Module,
    data: Batches,
    epoch: int,
    device: torch.device,
    shape: tuple[int, ...],
) -> dict[str, float]:
    was_training = student.training
    student.eval()
    correct = total = 0.0
    loss_sum = 0.0
    for raw in data.batches(epoch):
        batch = to_device(raw, device, shape)
        logits = student(batch["x"])
        loss_sum += torch.nn.functional.cross_entropy(logits, batch["y"], reduction="sum").item()
        correct += (logits.argmax(1) == batch["y"]).sum().item()
        total += len(batch["y"])
    correct, total, loss_sum = all_reduce([correct, total, loss_sum], device)
    student.train(was_training)
    return {"val_accuracy": correct / max(total, 1), "val_loss": loss_sum / max(total, 1)}
