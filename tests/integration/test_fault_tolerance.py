"""Kill a training process mid-distillation; the step resumes from its last checkpoint.

Two paths: one worker trains inside the step's own Ray task (Ray restarts the task, which
resumes from the checkpoint in the store), and two workers under Ray Train (the worker group
restarts from Ray Train's checkpoint). Every epoch runs exactly once either way.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import Pipeline, run

pytestmark = pytest.mark.ray
EPOCHS = 8


def pipeline(store: Path, workers: int) -> Pipeline:
    p = Pipeline("fault", storage=str(store))
    data = p.add("data", "dataset", config={"source": "digits"})
    p.add(
        "student",
        "distill",
        inputs={"data": data.dataset, "teachers": []},
        config={
            "student": {"arch": "mlp", "hidden": [32]},
            "losses": [{"type": "ce"}],
            "epochs": EPOCHS,
            "batch_size": 4,
            "checkpoint_every_s": 0,
            "scaling": {"max_failures": 2, "num_workers": workers},
        },
    )
    return p


def kill_once_checkpointed(
    p: Pipeline, checkpointed: Callable[[], bool], pids: Callable[[], list[int]]
) -> tuple[int | None, object]:
    """Run ``p`` and SIGKILL the first of ``pids()`` once ``checkpointed()`` says a whole
    checkpoint is in the store; (the pid killed or None, the run's record)."""
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(record=run(p.spec)))
    thread.start()
    deadline = time.time() + 120
    killed = None
    found: list[int] = []
    while thread.is_alive() and time.time() < deadline:
        found = found or pids()  # the state API is slow: ask before it matters
        if found and checkpointed():
            killed = found[0]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.02)
    thread.join(timeout=300)
    return killed, result["record"]


def check_resumed(record: object) -> None:
    step = record.step("student")  # type: ignore[attr-defined]
    assert step.status.value == "ran", step.error
    metrics = step.outputs["metrics"]
    epochs = [h["epoch"] for h in step.outputs["history"]]
    assert metrics["resumes"] >= 1, epochs
    assert epochs == list(range(EPOCHS)), epochs  # every epoch exactly once: resumed
    assert metrics["val_accuracy"] > 0.8


def test_killed_step_process_resumes_from_the_store(ray_dashboard: str, tmp_path: Path) -> None:
    from ray.util.state import list_tasks

    def step_pids() -> list[int]:
        tasks = list_tasks(
            address=ray_dashboard,
            filters=[("name", "=", "step:student"), ("state", "=", "RUNNING")],
        )
        return [int(t.worker_pid) for t in tasks if t.worker_pid]

    store = tmp_path / "store"
    # The pointer is renamed into place once its checkpoint's files are written (what the two
    # entries of the folder counted before, the first checkpoint's folder and the pointer's
    # temporary file, only show a checkpoint being written: killed then, the step starts over).
    killed, record = kill_once_checkpointed(
        pipeline(store, 1),
        lambda: any(store.glob("objects/*/*/_resume/loop/latest.json")),
        step_pids,
    )
    assert killed is not None, "training ended before its process could be killed"
    check_resumed(record)
    assert not list(store.glob("objects/*/*/_resume"))  # removed once committed


def test_killed_ray_train_worker_resumes_from_checkpoint(
    ray_dashboard: str, tmp_path: Path
) -> None:
    from ray.util.state import list_actors

    def worker_pids() -> list[int]:
        actors = list_actors(
            address=ray_dashboard,
            filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
        )
        return [int(a.pid) for a in actors if a.pid]

    store = tmp_path / "store"
    # Ray Train writes a checkpoint's folder in place: the first is whole once a second starts.
    pattern = "objects/*/*/*/_work/ray_train/*/checkpoint_*"
    killed, record = kill_once_checkpointed(
        pipeline(store, 2), lambda: len(list(store.glob(pattern))) >= 2, worker_pids
    )
    assert killed is not None, "training ended before a worker could be killed"
    check_resumed(record)
