"""The evaluation report's content on a real 3-class table (sklearn's wine, as Parquet): top-k
only where it means something, the majority baseline, compression against the teacher, and
the sample std over seeds, stated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from components.artifacts.checkpoints import save_model
from components.artifacts.datasets import read_split
from components.data.bundled import feature_columns, write_table
from components.evaluation.evaluate import EvaluateComponent
from components.models.zoo import build_model
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset, ModelCheckpoint
from schemas.kd.components.evaluate import EvaluateConfig, EvaluateInputs
from schemas.kd.models import MLPSpec
from tests.support.context import step_context
from tests.support.evaluation import fit, made_dataset


@pytest.fixture(scope="module")
def wine(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ArtifactStore, Dataset, list[ModelCheckpoint]]:
    root = tmp_path_factory.mktemp("wine")
    table = write_table("wine", root / "wine.parquet")
    config = {"source": "parquet", "uri": str(table), "features": feature_columns("wine")}
    store, data = made_dataset(root / "s", {**config, "label": "label"})
    train = read_split(store, data, "train")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    checkpoints = []
    # A wide teacher and two seeds of a narrow student (standardised features: quick to fit).
    for i, hidden in enumerate([[128], [8], [8]]):
        model = build_model(MLPSpec(num_classes=3, input_shape=(13,), hidden=hidden), seed=i)
        fit(model, x, y, steps=40, lr=1e-2)
        ctx = step_context(store, f"model{i}", f"{i + 10:02d}" * 32)
        checkpoints.append(store.seal(save_model(ctx, "model", model)))
    return store, data, checkpoints


def test_report_content_on_three_classes(wine) -> None:  # type: ignore[no-untyped-def]
    store, data, (teacher, s0, s1) = wine
    config = EvaluateConfig(names=["student", "student"], latency_repeats=3, plots=False)
    inputs = EvaluateInputs(data=data, teacher=teacher, models=[s0, s1])
    out = EvaluateComponent(config).run(inputs, step_context(store, "report", "cd" * 32))
    metrics = out.metrics
    assert all("top5" not in row for row in metrics.values())  # 3 classes: top-5 is always 100%
    # The majority class of the train split (class_1: 71 of 178 rows), scored on the test split.
    assert out.report.baselines["majority"] == pytest.approx(14 / 36, abs=0.03)
    for name in ("student[0]", "student[1]"):
        row = metrics[name]
        assert row["top1"] > out.report.baselines["majority"] + 0.3
        assert row["params_ratio"] > 10 and row["macs_ratio"] > 10
        assert row["top1_kept"] == pytest.approx(row["top1"] / metrics["teacher"]["top1"])
        assert row["latency_ratio_b1"] > 0
    group = out.report.groups["student"]
    tops = [metrics["student[0]"]["top1"], metrics["student[1]"]["top1"]]
    assert group["top1_std"] == pytest.approx(abs(tops[0] - tops[1]) / 2**0.5)  # ddof=1
    folder = Path(store.fs_path(out.report.path))
    md = (folder / "report.md").read_text()
    assert "| majority baseline ('class_1') |" in md
    assert "Top-5 is not shown" in md and "top-5" not in md.split("\n")[2]
    assert "## Against the teacher" in md and "x params" in md and "top-1 kept" in md
    assert "sample standard deviation over the n models (ddof=1)" in md
    document = json.loads((folder / "report.json").read_text())
    assert document["baseline"]["class"] == "class_1"
    assert document["baseline"]["fitted_on"] == "train"
