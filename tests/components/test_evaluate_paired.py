"""Paired comparisons in a real run: students trained by the real `train` step over seeds (in
a different matrix order per recipe), paired by the seed each training step committed; the
report's tables, report.json, predictions.parquet and differences.png; models with no
committed training step paired by position; a `compare` label no model has, refused by
`kdorch validate` and `kdorch run` before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.artifacts.checkpoints import save_model
from components.artifacts.datasets import read_split
from components.evaluation.evaluate import EvaluateComponent
from components.models.zoo import build_model
from orchestrator import Pipeline, run
from orchestrator.storage.store import ArtifactStore
from schemas.kd.artifacts import Dataset, EvalReport
from schemas.kd.components.evaluate import EvaluateConfig, EvaluateInputs
from schemas.kd.models import MLPSpec
from tests.support.cli import kdorch
from tests.support.context import step_context

Ran = tuple[ArtifactStore, Dataset, EvalReport]

STUDENT = {"model": {"arch": "mlp", "hidden": [16]}, "batch_size": 64, "seed": "${seed}"}


def pipeline(root: Path) -> Pipeline:
    p = Pipeline("paired", storage=str(root))
    data = p.add("data", "dataset", config={"source": "digits"})
    p.add(
        "short",
        "train",
        matrix={"seed": [1, 0]},  # the other order than `long`: pairs follow seeds, not order
        inputs={"data": data.dataset},
        config={**STUDENT, "epochs": 1},
    )
    p.add(
        "long",
        "train",
        matrix={"seed": [0, 1]},
        inputs={"data": data.dataset},
        config={**STUDENT, "epochs": 6},
    )
    p.add(
        "report",
        "evaluate",
        inputs={"data": data.dataset, "models": ["short[*].model", "long[*].model"]},
        config={
            "names": ["short", "short", "long", "long"],
            "compare": [["long", "short"]],
            "latency_repeats": 1,
        },
    )
    return p


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Ran:
    root = tmp_path_factory.mktemp("paired") / "store"
    record = run(pipeline(root).spec, executor="local")
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    store = ArtifactStore(str(root))
    data = Dataset.model_validate(record.step("data").outputs["dataset"])
    return store, data, EvalReport.model_validate(record.step("report").outputs["report"])


def test_models_are_paired_by_their_training_seed(ran: Ran) -> None:
    store, data, report = ran
    assert report.recipes["short"].seeds == [1, 0] and report.recipes["long"].seeds == [0, 1]
    (c,) = report.comparisons
    assert (c.a, c.b, c.paired_by) == ("long", "short", "seed")
    pairs = [(p.seed, p.a, p.b) for p in c.pairs]
    assert pairs == [(0, "long[0]", "short[1]"), (1, "long[1]", "short[0]")]
    top1 = {k: row["top1"] for k, row in report.metrics.items()}
    assert [p.difference for p in c.pairs] == pytest.approx(
        [top1["long[0]"] - top1["short[1]"], top1["long[1]"] - top1["short[0]"]]
    )
    assert c.bootstrap is not None and c.t_interval is not None and c.row_test is None
    assert c.bootstrap.method == "percentile bootstrap over pairs, 10,000 resamples, seed 0"
    assert c.t_interval.method == "Student's t, 1 degree of freedom"
    rows = data.splits["test"]
    assert report.rows == rows
    folder = Path(store.fs_path(report.path))
    document = json.loads((folder / "report.json").read_text())
    assert document["comparisons"] == [c.model_dump(mode="json")]
    assert document["resolution_points"] == pytest.approx(100 / rows)
    md = (folder / "report.md").read_text()
    assert f"{rows:,} rows scored: one row = {100 / rows:.3g} points of top-1" in md
    assert "## Top-1 per recipe: mean and 95% interval" in md
    assert "| long vs short | 2 | seed 0, 1 |" in md and c.verdict in md
    assert (folder / "differences.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_row_predictions_are_kept(ran: Ran) -> None:
    store, data, report = ran
    folder = Path(store.fs_path(report.path))
    assert report.predictions == "predictions.parquet"
    table = pq.read_table(folder / report.predictions)
    assert table.column_names == ["row_id", "label", "short[0]", "short[1]", "long[0]", "long[1]"]
    split = read_split(store, data, "test")
    assert table["row_id"].to_pylist() == split.row_id.tolist()
    assert table["label"].to_pylist() == split.y.tolist()
    for key in ("short[0]", "long[1]"):
        predicted = np.asarray(table[key])
        assert np.mean(predicted == split.y) == pytest.approx(report.metrics[key]["top1"])


def test_models_without_a_committed_step_pair_by_position(ran: Ran) -> None:
    store, data, _ = ran
    checkpoints = []
    for i in range(4):  # saved outside any run: no COMMIT.json, no seed
        model = build_model(MLPSpec(num_classes=10, input_shape=(1, 8, 8), hidden=[4]), seed=i)
        ctx = step_context(store, f"m{i}", f"{i + 40:02d}" * 32)
        checkpoints.append(store.seal(save_model(ctx, "model", model)))
    config = EvaluateConfig(names=["x", "x", "y", "y"], latency_repeats=1, plots=False)
    inputs = EvaluateInputs(data=data, models=checkpoints)
    out = EvaluateComponent(config).run(inputs, step_context(store, "r", "ef" * 32))
    (c,) = out.report.comparisons
    assert (c.a, c.b, c.paired_by) == ("y", "x", "position")
    assert [(p.a, p.b) for p in c.pairs] == [("y[0]", "x[0]"), ("y[1]", "x[1]")]
    assert out.report.recipes["x"].seeds == [None, None]
    md = (Path(store.fs_path(out.report.path)) / "report.md").read_text()
    assert "paired by position: a training seed is not recorded" in md
    bad = EvaluateConfig(names=["x", "x", "y", "y"], compare=[("y", "z")], plots=False)
    with pytest.raises(ValueError, match=r"compare\[0\] names 'z', which no model has"):
        EvaluateComponent(bad).run(inputs, step_context(store, "r", "fe" * 32))


BAD_COMPARE = """\
name: bad_compare
steps:
- id: data
  component: dataset
  config: {source: digits}
- id: student
  component: train
  matrix: {seed: [0, 1]}
  inputs: {data: data.dataset}
  config: {model: {arch: mlp, hidden: [8]}, seed: "${seed}"}
- id: report
  component: evaluate
  inputs: {data: data.dataset, models: "student[*].model"}
  config: {names: [mlp, mlp], compare: [[mlp, teacher], [mlp, mpl]]}
"""


def test_a_compare_label_no_model_has_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BAD_COMPARE)
    store = tmp_path / "store"
    assert kdorch("validate", str(path)) == 2
    err = capsys.readouterr().err
    assert kdorch("run", str(path), "--storage", str(store), "--executor", "local") == 2
    assert capsys.readouterr().err == err  # the same problems, before anything runs
    assert not store.exists() and "Traceback" not in err
    assert "steps[2] (report).config.compare[0]" in err
    assert "names 'teacher', which no model has (labels: mlp)" in err  # no teacher input
    assert "steps[2] (report).config.compare[1]" in err
    assert "names 'mpl', which no model has (labels: mlp); did you mean 'mlp'?" in err
    assert "2 errors in" in err


def test_a_pair_of_one_label_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BAD_COMPARE.replace("[[mlp, teacher], [mlp, mpl]]", "[[mlp, mlp]]"))
    store = tmp_path / "store"
    assert kdorch("validate", str(path)) == 2
    err = capsys.readouterr().err
    assert kdorch("run", str(path), "--storage", str(store), "--executor", "local") == 2
    assert capsys.readouterr().err == err and not store.exists() and "Traceback" not in err
    assert "steps[2] (report).config.compare" in err
    assert "[mlp, mlp] compares 'mlp' with itself; name two labels" in err
