"""TensorBoard curves of a training step: one event file per step (torch's `SummaryWriter`),
a scalar per metric of each epoch (``train_loss``, ``val_accuracy``, ``train_kd/ce``, ...,
step = epoch), written as each epoch ends.

On only when the run is tracked with TensorBoard (docs/tracking.md): the folder is the run's
tracking context's (`orchestrator.tracking.context.tensorboard_folder`); otherwise nothing is
imported or written. On a local store the writer writes there directly (TensorBoard shows the
curves while the step trains); on an object store it writes a local file and copies it to the
store after every epoch.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from orchestrator import ArtifactStore, StepContext
from orchestrator.tracking.context import tensorboard_folder

#: The resume folder of a step that trains one model (`trainer.fit`'s default): no subfolder.
DEFAULT_NAME = "loop"


class EpochBoard:
    """A step's `SummaryWriter`, one scalar per number of each epoch's metrics."""

    def __init__(self, store: ArtifactStore, folder: str):
        from torch.utils.tensorboard import SummaryWriter

        self.store, self.folder = store, folder
        self._local = store.is_local
        self.logdir = store.fs_path(folder) if self._local else tempfile.mkdtemp(prefix="kdtb-")
        Path(self.logdir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=self.logdir)

    def epoch(self, metrics: Mapping[str, Any]) -> None:
        step = int(metrics.get("epoch", 0))
        for name, value in metrics.items():
            if name != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(name, float(value), global_step=step)
        self.writer.flush()
        if not self._local:
            self._copy()

    def history(self, history: list[dict[str, Any]]) -> None:
        """Epochs reported elsewhere (Ray Train workers), written at once."""
        for row in history:
            self.epoch(row)

    def _copy(self) -> None:
        for path in Path(self.logdir).iterdir():
            if path.is_file():
                self.store.write_bytes(f"{self.folder}/{path.name}", path.read_bytes())

    def close(self) -> None:
        self.writer.close()
        if not self._local:
            self._copy()
            shutil.rmtree(self.logdir, ignore_errors=True)


@contextlib.contextmanager
def epoch_board(ctx: StepContext, name: str = DEFAULT_NAME) -> Iterator[EpochBoard | None]:
    """The step's board while it trains (a subfolder ``name`` for each further model a step
    trains); None when the run writes no TensorBoard files."""
    folder = tensorboard_folder(ctx.store, ctx.run_id, ctx.step_id)
    if folder is None:
        yield None
        return
    board = EpochBoard(ctx.store, folder if name == DEFAULT_NAME else f"{folder}/{name}")
    try:
        yield board
    finally:
        board.close()
