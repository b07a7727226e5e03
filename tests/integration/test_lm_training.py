"""Language models on Ray Train: a tiny llama teacher trained by `train` with DDP over two CPU
workers (gloo), its top-k cache, and a student distilled by two workers from the cache
streamed shard by shard. Losses stay finite, the checkpoints load, the workers' epochs agree."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from components.artifacts.checkpoints import load_model
from components.lm.models import CausalLM
from orchestrator import run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import ModelCheckpoint
from tests.support.lm import TINY, corpus_file, lm_steps, write_pipeline

pytestmark = pytest.mark.ray

TWO = {"num_workers": 2, "cpus_per_worker": 0.5}


def test_ddp_with_two_workers_trains_and_distils_a_language_model(
    ray_cluster: str, tmp_path: Path
) -> None:
    steps = lm_steps(corpus_file(tmp_path, count=24), cache={"k": 8, "rows_per_shard": 16})
    steps[3] = {
        "id": "teacher",
        "component": "train",
        "inputs": {"data": "tokens.sequences"},
        "config": {
            "model": {**TINY, "max_positions": 64},
            "epochs": 2,
            "batch_size": 8,
            "optimizer": {"lr": 0.003},
            "scaling": TWO,
        },
    }
    steps.append(
        {
            "id": "student",
            "component": "distill",
            "inputs": {"data": "tokens.sequences", "logits": "cache.cache"},
            "config": {
                "student": {**TINY, "layers": 1, "width": 32, "max_positions": 64},
                "epochs": 1,
                "batch_size": 8,
                "grad_accum_steps": 2,
                "worker_cache_mb": 0,  # streamed: each worker reads its rows itself
                "scaling": TWO,
                "losses": [{"type": "forward_kl", "targets": "topk"}],
            },
        }
    )
    path = write_pipeline(tmp_path / "lm.yaml", steps)
    record = run(path, storage=str(tmp_path / "store"), address=ray_cluster)
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    store = ArtifactStore(str(tmp_path / "store"))
    for step in ("teacher", "student"):
        outputs = record.step(step).outputs
        history = outputs["history"]
        assert all(h["workers"] == 2 for h in history)
        assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in history)
        model, _ = load_model(store, ModelCheckpoint.model_validate(outputs["model"]))
        assert isinstance(model, CausalLM)
    assert record.step("teacher").outputs["history"][-1]["val_loss"] < math.log(300)
    assert record.step("student").outputs["metrics"]["train_forward_kl/kl"] > 0
