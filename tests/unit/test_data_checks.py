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
    """A one-step pipeline file: a Parquet dataset (unless ``source`` says otherwise) whose
    config is on line 5 (JSON is YAML)."""
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


def cli_validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`kdorch validate PATH`: (exit code, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    return int(info.value.code or 0), capsys.readouterr().err


def test_an_empty_parquet_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: validate passed, and the run failed with "cannot reshape array of size 0 into
    # shape (0,newaxis)"; a 0-byte file got "ArrowInvalid: Parquet file size is 0 bytes".
    empty = tmp_path / "empty.parquet"
    pq.write_table(
        pa.table({"f": pa.array([], pa.float64()), "y": pa.array([], pa.int64())}), empty
    )
    code, err = cli_validate(pipeline(tmp_path, uri=str(empty), features=["f"]), capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{empty} holds no rows (columns: f, y)" in err and "config.uri" in err
    zero = tmp_path / "zero.parquet"
    zero.write_bytes(b"")
    code, err = cli_validate(pipeline(tmp_path, uri=str(zero), features=["f"]), capsys)
    assert code == 2 and f"{zero} is empty (0 bytes), not a Parquet file" in err
    assert not (tmp_path / "store").exists()


def test_every_footer_of_a_folder_is_read(
    tmp_path: Path, table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: validate read the first footer only and passed; the run failed with "Failed to
    # parse string: 'a' as a scalar of type int64", naming neither the file nor the column.
    folder = tmp_path / "parts"
    folder.mkdir()
    t = pq.read_table(table)
    pq.write_table(t, folder / "a.parquet")
    pq.write_table(
        t.drop_columns(["weight"]).append_column("uid2", t.column("uid")), folder / "b.parquet"
    )
    pq.write_table(t.set_column(0, "uid", t.column("kind")), folder / "c.parquet")
    config = {
        "uri": str(folder),
        "features": ["height", "weight"],
        "label": "kind",
        "id_column": "uid",
    }
    code, err = cli_validate(pipeline(tmp_path, **config), capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{folder}/b.parquet has no column 'weight' ({folder}/a.parquet has it, double)" in err
    assert f"column 'uid' is string in {folder}/c.parquet but int64 in {folder}/a.parquet" in err
    # Columns the dataset does not read may differ.
    validate(pipeline(tmp_path, uri=str(folder), features=["height"], label="kind"))


def test_the_run_checks_the_files_again(tmp_path: Path, table: Path) -> None:
    """Files may change between validation and the run: the step names the file and column."""
    from components.data.sources import load_parquet
    from schemas.engine.storage import StorageOptions

    folder = tmp_path / "parts"
    folder.mkdir()
    t = pq.read_table(table)
    pq.write_table(t, folder / "a.parquet")
    pq.write_table(t.set_column(5, "kind", pa.array(np.arange(100))), folder / "b.parquet")
    with pytest.raises(ValueError, match=r"column 'kind' is int64 in .*b.parquet but string in"):
        load_parquet(
            str(folder),
            features=["height"],
            label="kind",
            feature_shape=None,
            id_column=None,
            options=StorageOptions(),
        )


def test_image_sources_are_checked_from_listings_and_footers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.images import write_folder

    def issues(at: str = "config.uri", **config: object) -> str:
        path = tmp_path / "p.yaml"
        text = json.dumps(config)
        path.write_text(
            f"name: p\nsteps:\n  - id: data\n    component: dataset\n    config: {text}\n"
        )
        code, err = cli_validate(path, capsys)
        assert code == 2 and "Traceback" not in err and at in err
        return err

    folder = lambda name: str(tmp_path / name)  # noqa: E731
    missing = issues(source="image_folder", uri=folder("nope"))
    assert "image folder " + folder("nope") + " does not exist" in missing
    assert "python -m components.data.bundled mnist-png data/mnist_png" in " ".join(missing.split())
    loose = tmp_path / "loose"
    write_folder(loose, classes=1, per_class=3)
    for p in (loose / "c0").iterdir():
        p.rename(loose / p.name)
    err = issues(source="image_folder", uri=str(loose))
    assert "holds no images" in err and "3 lie directly in it" in err
    one = write_folder(tmp_path / "one", classes=1, per_class=8)
    assert "holds images of one class only ('c0', 8 images)" in issues(
        source="image_folder", uri=str(one)
    )
    (one / "c1").mkdir()
    assert "class folder(s) 'c1' hold no images" in issues(source="image_folder", uri=str(one))
    few = write_folder(tmp_path / "few", classes=3, per_class=2)
    assert "6 images in 3 class folders (2.0 per class" in issues(
        source="image_folder", uri=str(few)
    )
    t = tmp_path / "t.parquet"
    pq.write_table(pa.table({"img": [1, 2], "y": [0, 1]}), t)
    err = issues("config.image_column", source="parquet", uri=str(t), image_column="img")
    assert "image column 'img' is int64; it must hold the encoded image" in err
    err = issues("config.image_column", source="parquet", uri=str(t), image_column="imgs")
    assert "has no column 'imgs'" in err and "did you mean 'img'" in err
    ok = write_folder(tmp_path / "ok", classes=2, per_class=5)
    validate(pipeline(tmp_path, source="image_folder", uri=str(ok)))
