"""Every consumer on an image dataset, unchanged: a folder of PNG files (one unreadable, skipped)
-> a CNN teacher trained on held data -> its cached logits -> a student distilled from data
streamed through Ray Data -> the report, which says what the dataset left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import Pipeline, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset, EvalReport
from tests.support.images import truncate, write_folder

pytestmark = pytest.mark.ray


def pipeline(store: Path, folder: Path) -> Pipeline:
    p = Pipeline("images", storage=str(store))
    data = p.add(
        "data",
        "dataset",
        config={"source": "image_folder", "uri": str(folder), "on_bad_row": "skip"},
    )
    teacher = p.add(
        "teacher",
        "train",
        inputs={"data": data.dataset},
        config={
            "model": {"arch": "mnist_cnn", "width": 8, "depth": 2},
            "epochs": 4,
            "batch_size": 16,
            "optimizer": {"lr": 0.01},
        },
    )
    logits = p.add(
        "logits", "teacher_inference", inputs={"teacher": teacher.model, "data": data.dataset}
    )
    student = p.add(
        "student",
        "distill",
        inputs={"data": data.dataset, "logits": logits.logits},
        config={
            "student": {"arch": "mlp", "hidden": [16]},
            "epochs": 4,
            "batch_size": 16,
            "optimizer": {"lr": 0.01},
            "worker_cache_mb": 0,  # streamed through Ray Data
            "losses": [{"type": "kd", "temperature": 2.0, "alpha": 0.5}],
        },
    )
    p.add(
        "report",
        "evaluate",
        inputs={"data": data.dataset, "teacher": teacher.model, "models": [student.model]},
        config={"plots": False, "latency_repeats": 1},
    )
    return p


def test_an_image_folder_trains_held_and_streamed(ray_cluster: str, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "images", classes=3, per_class=24, size=(12, 12))
    truncate(folder / "c1" / "005.png")
    store = tmp_path / "store"
    record = run(pipeline(store, folder).spec)
    assert record.status.value == "succeeded", [s.error for s in record.steps if s.error]
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    assert data.feature_shape == [3, 12, 12] and data.skipped is not None
    assert data.skipped.count == 1 and sum(data.splits.values()) == 71
    report = EvalReport.model_validate(record.step("report").outputs["report"])
    # Classes differ in brightness: both models learn them, far above chance (1/3).
    assert all(m["top1"] > 0.6 for m in report.metrics.values()), report.metrics
    text = ArtifactStore(str(store)).read_bytes(f"{report.path}/report.md").decode()
    assert "1 unreadable rows of the source were left out" in text
    assert f"{folder}/c1/005.png: corrupt or truncated image" in text
