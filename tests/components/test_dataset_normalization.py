"""The dataset component's standardisation and label checks, on real bundled tables as Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.artifacts.datasets import read_split
from components.data.bundled import bundled_table, feature_columns, write_table
from components.data.labels import encode_labels
from orchestrator import ArtifactStore
from tests.support.datasets import make


def table_config(path: Path, name: str = "breast_cancer", **extra: object) -> dict[str, object]:
    return {
        "source": "parquet",
        "uri": str(path),
        "features": feature_columns(name),
        "label": "label",
        "id_column": "row_id",
        **extra,
    }


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 30 features from ~0.001 (fractal dimension error) to ~4,000 (worst area).
    return write_table("breast_cancer", tmp_path_factory.mktemp("t") / "cancer.parquet")


def test_parquet_is_standardised_on_train_only_and_recorded(cancer: Path, tmp_path: Path) -> None:
    ds, error = make(tmp_path / "s", **table_config(cancer))
    assert ds is not None, error
    assert ds.transform == "standardize:train"
    assert ds.normalization is not None and ds.normalization.fitted_on == "train"
    store = ArtifactStore(str(tmp_path / "s"))
    train, test = read_split(store, ds, "train"), read_split(store, ds, "test")
    assert np.allclose(train.x.mean(0), 0, atol=1e-5) and np.allclose(train.x.std(0), 1, atol=1e-4)
    # The test split is transformed with the train split's statistics, not its own.
    raw = bundled_table("breast_cancer").to_pandas().set_index("row_id")  # type: ignore[attr-defined]
    raw_test = raw.loc[test.row_id, feature_columns("breast_cancer")].to_numpy()
    raw_train = raw.loc[train.row_id, feature_columns("breast_cancer")].to_numpy()
    expected = (raw_test - raw_train.mean(0)) / raw_train.std(0)
    assert np.allclose(test.x, expected, atol=1e-4)
    assert np.allclose(ds.normalization.mean, raw_train.mean(0))
    assert not np.allclose(test.x.mean(0), 0, atol=1e-3)  # its own mean was not subtracted


def test_normalize_none_keeps_raw_features_and_changes_the_data_version(
    cancer: Path, tmp_path: Path
) -> None:
    standard, _ = make(tmp_path / "a", **table_config(cancer))
    raw, error = make(tmp_path / "b", **table_config(cancer, normalize="none"))
    assert standard is not None and raw is not None, error
    assert raw.normalization is None and raw.transform == "none"
    assert raw.data_version != standard.data_version
    x = read_split(ArtifactStore(str(tmp_path / "b")), raw, "train").x
    assert x.max() > 1000  # worst area, as loaded


def test_constant_columns_do_not_divide_by_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "a": rng.normal(size=200) * 1000,
            "flat": np.full(200, 7.0),
            "y": np.repeat([0, 1], 100),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    ds, error = make(
        tmp_path / "s", source="parquet", uri=str(tmp_path / "t.parquet"), features=["a", "flat"]
    )
    assert ds is not None and ds.normalization is not None, error
    assert ds.normalization.std[1] == 1.0
    x = read_split(ArtifactStore(str(tmp_path / "s")), ds, "val").x
    assert np.isfinite(x).all() and (x[:, 1] == 0).all()


def test_images_keep_their_own_scaling_unless_asked(tmp_path: Path) -> None:
    digits, _ = make(tmp_path / "a", source="digits", max_rows=300)
    assert digits is not None and digits.normalization is None
    assert digits.transform == "scale:/16"
    x = read_split(ArtifactStore(str(tmp_path / "a")), digits, "train").x
    assert x.min() >= 0 and x.max() <= 1
    standard, error = make(tmp_path / "b", source="digits", max_rows=300, normalize="standard")
    assert standard is not None, error  # corner pixels are constant 0: no NaN
    assert standard.transform == "scale:/16;standardize:train"
    assert np.isfinite(read_split(ArtifactStore(str(tmp_path / "b")), standard, "test").x).all()


def test_split_without_a_train_split_fits_on_the_first(cancer: Path, tmp_path: Path) -> None:
    ds, error = make(tmp_path / "s", **table_config(cancer, splits={"fit": 0.7, "holdout": 0.3}))
    assert ds is not None and ds.normalization is not None, error
    assert ds.normalization.fitted_on == "fit"


def test_float_label_is_refused_unless_categorical(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    table = pa.table(
        {"f": rng.normal(size=300), "grade": np.repeat([1.0, 2.0, 3.5], 100)},
    )
    pq.write_table(table, tmp_path / "t.parquet")
    config = {"source": "parquet", "uri": str(tmp_path / "t.parquet"), "features": ["f"]}
    ds, error = make(tmp_path / "a", **config, label="grade")
    assert ds is None  # validation sees the column's type in the footer
    assert "label column 'grade' is double" in error and "label_kind: categorical" in error
    with pytest.raises(ValueError, match=r"holds floats \(3 distinct values.*categorical"):
        encode_labels(np.array([1.0, 2.0, 3.5]), column="grade", source="t.parquet")
    ds, error = make(tmp_path / "b", **config, label="grade", label_kind="categorical")
    assert ds is not None, error
    assert ds.class_names == ["1", "2", "3.5"] and ds.num_classes == 3


def test_too_many_classes_for_the_rows_is_refused(tmp_path: Path) -> None:
    # A measurement given as the label: 300 rows, ~290 distinct values.
    rng = np.random.default_rng(0)
    table = pa.table({"f": rng.normal(size=300), "m": rng.integers(0, 10_000, 300)})
    pq.write_table(table, tmp_path / "t.parquet")
    ds, error = make(
        tmp_path / "s", source="parquet", uri=str(tmp_path / "t.parquet"), features=["f"], label="m"
    )
    assert ds is None
    assert "classes for 300 rows" in error and "Check that `label` names the class column" in error


def test_a_split_missing_a_class_is_refused_with_what_to_change(tmp_path: Path) -> None:
    # Class 'rare' has 2 rows: one lands in train, one in val, none in test.
    labels = ["a"] * 100 + ["b"] * 100 + ["rare"] * 2
    rng = np.random.default_rng(0)
    table = pa.table({"f": rng.normal(size=len(labels)), "y": labels})
    pq.write_table(table, tmp_path / "t.parquet")
    ds, error = make(
        tmp_path / "s", source="parquet", uri=str(tmp_path / "t.parquet"), features=["f"]
    )
    assert ds is None
    assert "split 'test'" in error and "'rare'" in error
    assert "larger fraction in `splits`" in error
