"""Data checks without running anything: labels, class counts, and `kdorch validate` reading
Parquet footers (local and S3) through `Component.check_config`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.data.labels import (
    check_class_count,
    check_splits_hold_every_class,
    encode_labels,
)
from orchestrator import ValidationFailed, validate
from orchestrator.cli import main


def test_labels_integers_strings_and_categorical() -> None:
    y, names = encode_labels(np.array([2, 0, 1, 2]), column="y", source="t")
    assert y.tolist() == [2, 0, 1, 2] and names == ["0", "1", "2"]
    y, names = encode_labels(np.array(["dog", "cat", "dog"], dtype=object), column="y", source="t")
    assert y.tolist() == [1, 0, 1] and names == ["cat", "dog"]
    y, names = encode_labels(np.array([-5, 7, -5]), column="y", source="t", kind="categorical")
    assert y.tolist() == [0, 1, 0] and names == ["-5", "7"]


def test_label_refusals_say_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"whole numbers: store the column as integers"):
        encode_labels(np.array([0.0, 1.0, 1.0]), column="y", source="t")
    with pytest.raises(ValueError, match=r"negative values \(min -1\).*categorical"):
        encode_labels(np.array([-1, 0, 1]), column="y", source="t")
    with pytest.raises(ValueError, match=r"2 missing values"):
        encode_labels(np.array([0.5, np.nan, np.nan]), column="y", source="t", kind="categorical")
    with pytest.raises(ValueError, match="single class"):
        check_class_count(1, 100, source="t", column="y")
    with pytest.raises(ValueError, match=r"456 classes for 1,000 rows \(2.2 rows per class"):
        check_class_count(456, 1000, source="t", column="y")
    check_class_count(10, 50, source="t", column="y")  # 5 per class: enough


def test_every_split_must_hold_every_class() -> None:
    names = ["a", "b", "c"]
    check_splits_hold_every_class(
        {"train": np.array([0, 1, 2]), "test": np.array([2, 1, 0])}, names, source="t"
    )
    with pytest.raises(
        ValueError, match=r"split 'test' \(1 rows\) has no rows of 2 of the 3 classes \('a', 'b'\)"
    ):
        check_splits_hold_every_class(
            {"train": np.array([0, 1, 2, 0]), "test": np.array([2])}, names, source="t"
        )


@pytest.fixture
def table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "uid": np.arange(100),
                "height": rng.normal(size=100),
                "weight": rng.normal(size=100),
                "city": ["x"] * 100,
                "score": rng.random(100),
                "kind": ["a", "b"] * 50,
            }
        ),
        path,
    )
    return path


def pipeline(tmp_path: Path, **config: object) -> Path:
    """A one-step pipeline file: a Parquet dataset whose config is on line 5 (JSON is YAML)."""
    path = tmp_path / "p.yaml"
    text = json.dumps({"source": "parquet", **config})
    path.write_text(f"name: p\nsteps:\n  - id: data\n    component: dataset\n    config: {text}\n")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        validate(path)
    return [p.render() for p in info.value.problems]


def test_validate_reads_the_footer_for_columns_and_types(table: Path, tmp_path: Path) -> None:
    uri = str(table)
    validate(
        pipeline(tmp_path, uri=uri, features=["height", "weight"], label="kind", id_column="uid")
    )
    bad = pipeline(
        tmp_path,
        uri=uri,
        features=["height", "wieght", "city"],
        label="score",
        id_column="kind",
        feature_shape=[4],
    )
    found = problems(bad)
    assert len(found) == 5, found
    assert "has no column 'wieght'" in found[0] and "did you mean 'weight'" in found[0]
    assert "config.features[1]" in found[0] and "p.yaml:5:" in found[0]
    assert "feature column 'city' is string, not numbers" in found[1]
    assert "feature_shape [4] holds 4 values, but" in found[2] and "gives 3 features" in found[2]
    assert "label column 'score' is double" in found[3] and "label_kind: categorical" in found[3]
    assert "id column 'kind' is string, not integers" in found[4]
    # The user says the floats are classes: accepted.
    validate(
        pipeline(tmp_path, uri=uri, features=["height"], label="score", label_kind="categorical")
    )


def test_validate_reports_a_missing_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pipeline(tmp_path, uri=f"{tmp_path}/gone.parquet")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert "gone.parquet does not exist" in err and "config.uri" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "folder without .parquet files" in problems(pipeline(tmp_path, uri=str(empty)))[0]


def test_validate_checks_parquet_on_s3(tmp_path: Path, table: Path, s3_server: dict) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    fs.put(str(table), f"{s3_server['bucket']}/checks/t.parquet")
    options = {"endpoint_url": s3_server["endpoint"]}  # credentials: the AWS_* environment
    uri = f"s3://{s3_server['bucket']}/checks"
    common = {"label": "kind", "storage_options": options}
    validate(pipeline(tmp_path, uri=f"{uri}/t.parquet", features=["height"], **common))
    found = problems(pipeline(tmp_path, uri=f"{uri}/t.parquet", features=["hight"], **common))
    assert "has no column 'hight'" in found[0]
    found = problems(pipeline(tmp_path, uri=f"{uri}/nope.parquet", storage_options=options))
    assert "nope.parquet does not exist" in found[0]


def test_validation_imports_no_torch(table: Path, tmp_path: Path) -> None:
    path = pipeline(tmp_path, uri=str(table), features=["height"], label="kind")
    code = (
        "import sys; from orchestrator import validate; "
        f"validate({str(path)!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
