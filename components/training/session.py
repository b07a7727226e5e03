"""Where a training loop runs: in the step's own process, or as a Ray Train worker.

The loop (`loop.py`) only sees a `Session`: its rank and device, the checkpoint to resume from,
and where to report epochs and checkpoints. Checkpoints are folders of files (model, optimizer
and loss state, metadata) either way.

- `LocalSession`: one process. A checkpoint is copied into the store's resume folder of the
  step's key (`StepContext.resume_path`), under a fresh name, and then ``latest.json`` is pointed
  at it (one atomic write), so a crash mid-copy leaves the previous checkpoint in use. A retried
  or re-run step with the same key resumes from it.
- `RayTrainSession`: a Ray Train worker; checkpoints go through ``ray.train.report`` and Ray
  Train restores them after a worker group restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from orchestrator import ArtifactStore

log = logging.getLogger("kdorch")
LATEST = "latest.json"


class Session(Protocol):
    rank: int
    world: int
    device: torch.device
    #: The trained weights come back through the last checkpoint (Ray Train), not the return
    #: value: the last epoch must be checkpointed, whatever the number of workers (an elastic
    #: run may end on one).
    returns_by_checkpoint: bool

    def restore(self) -> contextlib.AbstractContextManager[Path | None]:
        """The folder of the checkpoint to resume from (None: start fresh)."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        """One epoch's metrics, with a checkpoint folder when one was saved."""
        ...


class LocalSession:
    """Training in this process; checkpoints in the store (see the module docstring)."""

    rank = 0
    world = 1
    returns_by_checkpoint = False

    def __init__(
        self,
        store: ArtifactStore,
        resume_path: str,
        device: torch.device,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.store, self.path, self.device = store, resume_path, device
        self.on_epoch = on_epoch
        self._saved: str | None = None

    @contextlib.contextmanager
    def restore(self) -> Iterator[Path | None]:
        try:
            latest = self.store.read_json(f"{self.path}/{LATEST}")
        except FileNotFoundError:
            yield None
            return
        except Exception as e:  # an unreadable pointer: start over rather than fail
            log.warning("ignoring the unreadable checkpoint pointer in %s: %s", self.path, e)
            yield None
            return
        folder = f"{self.path}/{latest['folder']}"
        with tempfile.TemporaryDirectory(prefix="kdorch-resume-") as tmp:
            for name in latest["files"]:
                Path(tmp, name).write_bytes(self.store.read_bytes(f"{folder}/{name}"))
            self._saved = latest["folder"]
            yield Path(tmp)

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        if self.on_epoch is not None:
            self.on_epoch(metrics)
        if checkpoint is not None:
            self.save(checkpoint, f"ckpt-{int(metrics['epoch']):05d}")

    def save(self, checkpoint: Path, folder: str) -> None:
        """Copy ``checkpoint`` into the resume folder as ``folder``, then point at it."""
        files = sorted(p.name for p in checkpoint.iterdir() if p.is_file())
        for name in files:
            self.store.write_bytes(
                f"{self.path}/{folder}/{name}", Path(checkpoint, name).read_bytes()
            )
        self.store.write_json(f"{self.path}/{LATEST}", {"folder": folder, "files": files})
        if self._saved and self._saved != folder:
            self.store.remove(f"{self.path}/{self._saved}", recursive=True)
        self._saved = folder


class RayTrainSession:
    """A Ray Train worker's view (rank, device, ``ray.train`` checkpoints)."""

    returns_by_checkpoint = True

    def __init__(self) -> None:
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()

    def restore(self) -> contextlib.AbstractContextManager[Path | None]:
        import ray.train

        return checkpoint_folder(ray.train.get_checkpoint())

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        import ray.train

        if checkpoint is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint))


@contextlib.contextmanager
def checkpoint_folder(checkpoint: Any) -> Iterator[Path | None]:
    """A Ray (Train or Tune) checkpoint as a local folder while the block runs; None: none."""
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder)


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    Path(folder, "meta.json").write_text(json.dumps(meta))


def read_meta(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(folder, "meta.json").read_text())
    return data
