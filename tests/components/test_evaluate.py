"""The evaluate component on real tiny models (trained here with plain PyTorch on digits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from components.artifacts.checkpoints import save_model
from components.artifacts.datasets import read_split
from components.evaluation.evaluate import EvaluateComponent
from components.models.zoo import build_model
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset, ModelCheckpoint
from schemas.kd.components.evaluate import EvaluateConfig, EvaluateInputs
from schemas.kd.models import MLPSpec
from tests.support.context import step_context
from tests.support.evaluation import made_dataset


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[ArtifactStore, Dataset, list[ModelCheckpoint]]:
    store, data = made_dataset(tmp_path_factory.mktemp("eval"), {"source": "digits"})
    split = read_split(store, data, "train")
    x, y = split.x, split.y
    checkpoints = []
    for i, steps in enumerate([300, 300, 0]):  # two trained models and an untrained one
        spec = MLPSpec(num_classes=10, input_shape=(1, 8, 8), hidden=[32])
        model = build_model(spec, seed=i)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(steps):
            idx = torch.randint(0, len(y), (64,), generator=torch.Generator().manual_seed(step))
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        ctx = step_context(store, step_id=f"model{i}", key=f"{i:02d}" * 32)
        checkpoints.append(store.seal(save_model(ctx, "model", model)))
    return store, data, checkpoints


def evaluate(store: ArtifactStore, **kwargs: object):  # type: ignore[no-untyped-def]
    config = kwargs.pop("config", EvaluateConfig(latency_repeats=2))
    return EvaluateComponent(config).run(EvaluateInputs(**kwargs), step_context(store))  # type: ignore[arg-type]


def test_scores_labels_groups_and_files(setup) -> None:  # type: ignore[no-untyped-def]
    store, data, (a, b, untrained) = setup
    config = EvaluateConfig(names=["mlp", "mlp", "untrained"], latency_repeats=2)
    out = evaluate(store, config=config, data=data, teacher=a, models=[a, b, untrained])
    metrics = out.metrics
    assert list(metrics) == ["teacher", "mlp[0]", "mlp[1]", "untrained"]
    assert metrics["teacher"]["agreement"] == 1.0 and metrics["mlp[0]"]["agreement"] == 1.0
    assert metrics["mlp[1]"]["top1"] > 0.8 and metrics["untrained"]["top1"] < 0.3
    assert metrics["teacher"]["top5"] >= metrics["teacher"]["top1"]
    assert {
        "ece",
        "nll",
        "parameters",
        "macs",
        "latency_ms_b1",
        "latency_ms_b256",
        "class_3",
    } <= set(metrics["mlp[0]"])
    group = out.report.groups["mlp"]
    assert group["n"] == 2 and group["top1_mean"] == pytest.approx(
        (metrics["mlp[0]"]["top1"] + metrics["mlp[1]"]["top1"]) / 2
    )
    folder = Path(store.fs_path(out.report.path))
    assert json.loads((folder / "report.json").read_text())["groups"]["mlp"]["n"] == 2
    md = (folder / "report.md").read_text()
    assert all(name in md for name in ("teacher", "mlp[0]", "untrained", "± "))
    for png in ("reliability.png", "comparison.png", "confusion_mlp.png", "confusion_teacher.png"):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_names_must_match_the_models(setup) -> None:  # type: ignore[no-untyped-def]
    store, data, (a, b, _) = setup
    with pytest.raises(ValueError, match="got 2 models but 1 names"):
        evaluate(store, config=EvaluateConfig(names=["x"]), data=data, models=[a, b])
