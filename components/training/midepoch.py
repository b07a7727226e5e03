"""Checkpoints inside an epoch, for training data that can say where it stands.

Streamed token sequences (`components.lm.streams.StreamedRows`) have a ``position``: the units
of the epoch already fed, the shuffle buffer's rows not yet trained on, the shuffle
generator's state. In a run of one worker in the step's process (`LocalSession`, which can
``save`` a checkpoint without reporting an epoch), the loop then also checkpoints between two
optimiser steps when ``checkpoint_every_s`` has passed: the tensors of an epoch-end checkpoint
and torch's RNG state, and in ``meta.json`` under ``within`` that position, the epoch's running
sums, its batch count and the global step. A restarted step resumes there: the data yields the
batches the killed run had still to train on, in the same order, without reading its finished
units again, so the resumed run trains the weights an unkilled run trains (bit for bit on one
CPU worker: same batches, same order, same optimiser and RNG states).

Held data (small by definition) and runs of several workers resume from the epoch's end.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from components.training.session import write_meta

STATE_FILE = "train_state.pt"
MODEL_FILE = "model.pt"
BEST_FILE = "best_model.pt"


def write_state(folder: Path, module: Any, run: Any) -> None:
    """The student's weights, the best epoch's, and the module/optimiser/schedule/RNG state."""
    torch.save(module.student.state_dict(), Path(folder, MODEL_FILE))
    if run.best_state is not None:
        torch.save(run.best_state, Path(folder, BEST_FILE))
    torch.save(
        {
            "module": module.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
        },
        Path(folder, STATE_FILE),
    )


@dataclass
class MidEpoch:
    """When and how the loop checkpoints inside an epoch (module docstring)."""

    data: Any  # the training batches
    session: Any
    every_s: float
    enabled: bool
    last: float  # time.monotonic() of the last checkpoint (or the start)

    @classmethod
    def of(cls, data: Any, session: Any, run: Any, every_s: float) -> MidEpoch:
        enabled = (
            hasattr(data, "position")
            and hasattr(session, "save")
            and session.world == 1
            and run.engine is None
        )
        return cls(data, session, every_s, enabled, time.monotonic())

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every_s

    def maybe_save(
        self, module: Any, run: Any, epoch: int, sums: dict[str, float], batches: int, step: int
    ) -> None:
        """Checkpoint here when enabled and due (called after an optimiser step)."""
        if not self.enabled or not self.due():
            return
        position = self.data.position()
        if position is None:
            return
        within = {"epoch": epoch, "position": position, "sums": sums, "batches": batches}
        with tempfile.TemporaryDirectory(prefix="kdorch-ckpt-") as tmp:
            write_state(Path(tmp), module, run)
            write_meta(Path(tmp), {**run.meta(epoch - 1), "within": {**within, "step": step}})
            self.session.save(Path(tmp), f"ckpt-{epoch:05d}-{step:09d}")
        self.last = time.monotonic()
