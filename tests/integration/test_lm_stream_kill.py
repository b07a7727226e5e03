"""Kill a streamed language-model distill step mid-epoch (SIGKILL of the step's process, as
tests/integration/test_fault_tolerance.py does for a classifier): Ray runs the step's task
again, which resumes from the mid-epoch checkpoint in the store, reads through Ray Data only
the cache shards it had not finished, and trains the weights of a run that was not killed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from components.artifacts.checkpoints import load_model
from orchestrator import run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import ModelCheckpoint
from tests.support.lm import corpus_file, lm_steps, write_pipeline

pytestmark = pytest.mark.ray
STUDENT = {"arch": "causal_lm", "layers": 1, "width": 32, "heads": 2, "max_positions": 64}


def steps(folder: Path) -> list[dict[str, Any]]:
    out = lm_steps(corpus_file(folder, count=24), cache={"k": 8, "rows_per_shard": 16})
    config = {
        "student": STUDENT,
        "losses": [{"type": "forward_kl", "targets": "topk"}],
        "epochs": 1,
        "batch_size": 8,
        "shuffle_buffer": 64,
        "worker_cache_mb": 0,  # streamed
        "checkpoint_every_s": 0,  # a checkpoint after every optimiser step
        "scaling": {"max_failures": 2},
    }
    inputs = {"data": "tokens.sequences", "logits": "cache.cache"}
    return [*out, {"id": "student", "component": "distill", "inputs": inputs, "config": config}]


def mid_epoch_step(store: Path) -> int:
    """The highest step of the mid-epoch checkpoints in the store's resume folders."""
    names = [p.name for p in store.glob("objects/*/*/_resume/loop/ckpt-00000-*")]
    return max((int(n.rsplit("-", 1)[1]) for n in names), default=0)


def student_pid() -> int | None:
    """The Ray worker running the step's task (its process title), among this session's."""
    import psutil

    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline() and proc.cmdline()[0].startswith("ray::step:student"):
                return proc.pid
        except psutil.Error:  # ended meanwhile
            continue
    return None


def test_a_killed_streamed_distill_resumes_mid_epoch_without_rereading(
    ray_cluster: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    path = write_pipeline(tmp_path / "lm.yaml", steps(tmp_path))
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(record=run(path, storage=str(store), address=ray_cluster))
    )
    thread.start()
    killed, deadline = None, time.time() + 400
    while thread.is_alive() and time.time() < deadline:
        if mid_epoch_step(store) >= 60:  # a quarter of the epoch's 229 steps
            killed = student_pid()
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    thread.join(timeout=600)
    assert killed is not None, "the step ended before it could be killed"
    record = result["record"]
    step = record.step("student")
    assert step.status.value == "ran", step.error
    metrics, history = step.outputs["metrics"], step.outputs["history"]
    assert metrics["resumes"] == 1 and [h["epoch"] for h in history] == [0]
    shards = record.step("cache").outputs["cache"]["splits"]["train"]["shards"]
    # The resumed run read a unit per unfinished shard, not the epoch's shards from the start.
    assert 0 < history[0]["units_read"] < shards - 20, (history[0]["units_read"], shards)

    # The same step not killed: another key (checkpoints do not change what is trained).
    again = run(
        path,
        storage=str(store),
        address=ray_cluster,
        overrides=["steps.student.config.checkpoint_every_s=1000"],
    )
    assert again.step("student").status.value == "ran"
    assert again.step("student").outputs["history"][0]["units_read"] == shards
    weights = []
    for rec in (record, again):
        ref = ModelCheckpoint.model_validate(rec.step("student").outputs["model"])
        weights.append(load_model(ArtifactStore(str(store)), ref)[0].state_dict())
    for name, value in weights[1].items():
        assert torch.equal(weights[0][name], value), name  # bit for bit
