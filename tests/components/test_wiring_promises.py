"""What validation assumes about a run, checked against real runs: the dataset step's promise
is what it writes, the metric names a tune step may optimise are what the training loop
reports, and a student search says where it did less than asked (issue 21)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.dataset import DatasetComponent
from components.data.promise import BUNDLED
from components.tuning.checks import EPOCH_METRICS, metric_issue
from orchestrator import Pipeline, load, run
from orchestrator.component import Wiring
from schemas.kd.artifacts import Dataset, SearchRanking
from schemas.kd.components.dataset import DatasetConfig
from schemas.kd.components.tune import TuneConfig
from schemas.kd.promises import DatasetPromise


def promised(config: dict[str, object], outside: bool = True) -> DatasetPromise:
    cfg = DatasetConfig.model_validate(config)
    promise = DatasetComponent.promise(cfg, Wiring("data", outside=outside))["dataset"]
    assert isinstance(promise, DatasetPromise)
    return promise


def test_the_bundled_sources_are_what_the_loaders_give() -> None:
    from components.data.sources import load_digits, load_mnist5k

    for name, loader in (("mnist5k", load_mnist5k), ("digits", load_digits)):
        raw = loader()
        shape, classes = BUNDLED[name]
        assert list(raw.x.shape[1:]) == shape
        assert len(np.unique(raw.y)) == classes


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("table") / "t.parquet"
    x = pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=120 * 6), pa.float32()), 6)
    pq.write_table(pa.table({"x": x, "a": rng.normal(size=120), "y": np.arange(120) % 3}), path)
    return path


@pytest.mark.parametrize(
    "config",
    [
        {"source": "digits", "max_rows": 200, "splits": {"fit": 0.7, "check": 0.3}},
        {"source": "mnist5k", "max_rows": 300, "domains": {"angles": [0, 30]}},
        {"source": "parquet", "features": "x"},
        {"source": "parquet", "features": ["a"], "splits": {"train": 0.5, "val": 0.5}},
    ],
)
def test_a_dataset_step_writes_what_it_promised(
    config: dict[str, object], table: Path, tmp_path: Path
) -> None:
    if config["source"] == "parquet":
        config = {**config, "uri": str(table)}
    promise = promised(config)
    p = Pipeline("promise")
    p.add("data", "dataset", config=config)
    record = run(p.spec, storage=str(tmp_path / "store"), executor="local")
    written = Dataset.model_validate(record.step("data").outputs["dataset"])
    assert promise.splits == list(written.splits)
    assert promise.domains == written.domains
    assert promise.feature_shape == written.feature_shape
    assert promise.num_classes in (None, written.num_classes)
    if config["source"] == "parquet" and config["features"] == "x":
        # the list's size comes from the footer: unknown when validation may not look
        assert promised(config, outside=False).feature_shape is None


PROMISES = """\
name: promises
steps:
- {id: data, component: dataset, config: {source: digits, max_rows: 300}}
- id: teacher
  component: train
  inputs: {data: data.dataset}
  config: {model: {arch: mlp, hidden: [32]}, epochs: 1, batch_size: 32}
- id: search  # 4 candidates, asked for 10 and for a validation sample of 6
  component: student_search
  inputs: {data: data.dataset, teacher: teacher.model}
  config:
    space: {mlp: {hidden_width: [8, 16], depth: [1, 2]}}
    search: {strategy: random, num_candidates: 10, batch_size: 16}
    validation: {sample: 6, epochs: 1, batch_size: 32}
- id: student  # a repeated loss type: its terms are logged as kd and kd_1
  component: distill
  inputs: {data: data.dataset, teachers: teacher.model}
  config:
    student: {arch: mlp, hidden: [16]}
    losses: [{type: kd}, {type: ce}, {type: kd}]
    epochs: 2
    batch_size: 32
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, list[str]]:
    """A teacher, a random search over a space of 4 candidates asked for 10 (and a validation
    sample of 6), and a distilled student: the run's record and the search's log lines."""
    folder = tmp_path_factory.mktemp("promises")
    (folder / "p.yaml").write_text(PROMISES)
    spec, store = load(folder / "p.yaml").spec, folder / "store"
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler, logger = Lines(), logging.getLogger("kdorch")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        record = run(spec, storage=str(store), executor="local")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert record.status.value == "succeeded", [s.error for s in record.steps]
    return record, lines


def test_every_metric_the_loop_reports_may_be_tuned(searched: tuple[object, list[str]]) -> None:
    record, _ = searched
    history = record.step("student").outputs["history"]  # type: ignore[attr-defined]
    reported = set(history[0])
    assert set(EPOCH_METRICS) <= reported
    assert "train_kd_1/total" in reported  # a repeated loss type gets a suffix
    base = {"student": {"arch": "mlp"}, "losses": [{"type": "kd"}, {"type": "ce"}, {"type": "kd"}]}
    space = {"losses[0].alpha": {"uniform": [0.1, 0.9]}}
    for name in reported:
        config = TuneConfig.model_validate({"distill": base, "space": space, "metric": name})
        assert metric_issue(config) is None, name
    typo = TuneConfig.model_validate({"distill": base, "space": space, "metric": "train_kld/kl"})
    issue = metric_issue(typo)
    assert issue is not None and issue.field == "metric"


def test_a_search_says_where_it_did_less_than_asked(searched: tuple[object, list[str]]) -> None:
    record, lines = searched
    ranking = SearchRanking.model_validate(
        record.step("search").outputs["ranking"]  # type: ignore[attr-defined]
    )
    assert ranking.evaluations == ranking.candidates == 4
    space, validation = ranking.notes
    assert space == (
        "only 4 candidates of the space fit the caps for inputs [1, 8, 8] and 10 classes: "
        "scored 4 of num_candidates 10"
    )
    assert validation == (
        "validation distilled 4 candidates, not sample 6: the search scored only 4 distinct ones"
    )
    assert f"[search] less than asked: {space}" in lines
    assert f"[search] less than asked: {validation}" in lines
