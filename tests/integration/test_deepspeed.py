"""DeepSpeed ZeRO via Ray Train on CPU (gloo): partitioned training, a consolidated export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from components.artifacts.checkpoints import load_model
from components.artifacts.datasets import read_split
from orchestrator import ArtifactStore, Pipeline, run
from schemas.kd.artifacts import Dataset, ModelCheckpoint

pytestmark = pytest.mark.ray


def test_zero3_with_two_workers_exports_the_trained_weights(
    ray_cluster: str, tmp_path: Path
) -> None:
    p = Pipeline("deepspeed", storage=str(tmp_path / "store"))
    data = p.add("data", "dataset", config={"source": "digits"})
    p.add(
        "student",
        "distill",
        inputs={"data": data.dataset, "teachers": []},
        config={
            "student": {"arch": "mlp", "hidden": [64]},
            "losses": [{"type": "ce"}],
            "epochs": 3,
            "batch_size": 32,
            "optimizer": {"lr": 0.005},
            "strategy": "deepspeed",
            "deepspeed": {"zero_stage": 3},
            "scaling": {"num_workers": 2},
        },
    )
    record = run(p.spec)
    step = record.step("student")
    assert step.status.value == "ran", step.error
    reported = step.outputs["metrics"]["val_accuracy"]
    assert reported > 0.7
    store = ArtifactStore(str(tmp_path / "store"))
    model, _ = load_model(store, ModelCheckpoint.model_validate(step.outputs["model"]))
    val = read_split(store, Dataset.model_validate(record.step("data").outputs["dataset"]), "val")
    x, y = val.x, val.y
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert accuracy == pytest.approx(reported, abs=0.02)  # the export is the trained model
    assert np.isfinite(step.outputs["metrics"]["train_loss"])
