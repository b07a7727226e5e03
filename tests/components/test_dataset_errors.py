"""Data the footers cannot judge, refused by the dataset step itself: `kdorch run` says which
file, column and row, prints no traceback, and leaves no dataset in the store.

Each case notes what happened before the check existed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.cli import kdorch
from tests.support.images import encoded, image, truncate, write_folder


def run_step(tmp_path: Path, capsys: pytest.CaptureFixture[str], **config: object) -> str:
    """`kdorch run` of a one-step pipeline (local executor) that must fail: its stderr."""
    path = tmp_path / "p.yaml"
    text = json.dumps(config)
    path.write_text(f"name: p\nsteps:\n  - id: data\n    component: dataset\n    config: {text}\n")
    store = tmp_path / "store"
    code = kdorch("run", str(path), "--executor", "local", "--storage", str(store))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "step 'data' (dataset" in err
    assert not list(store.glob("objects/**/*.parquet")), "a failed step wrote data"
    return " ".join(err.split())  # the console wraps long lines


def test_integer_codes_are_not_class_indices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: labels {0, 1, 1000} became a 1,001-class problem (val accuracy 0, CE ln 1001).
    rng = np.random.default_rng(0)
    table = pa.table({"f": rng.normal(size=300), "y": rng.choice([0, 1, 1000], 300)})
    pq.write_table(table, tmp_path / "t.parquet")
    err = run_step(
        tmp_path, capsys, source="parquet", uri=str(tmp_path / "t.parquet"), features=["f"]
    )
    assert "label column 'y' holds 3 distinct integers (0, 1, 1000)" in err
    assert "1,001 classes, 998 of them without a row" in err
    assert "set `label_kind: categorical`" in err and "renumber them 0..2" in err


def test_ragged_list_features_name_the_column_and_the_first_bad_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: "ValueError: all input arrays must have the same shape", naming nothing.
    rng = np.random.default_rng(0)
    rows = [list(rng.normal(size=4)) for _ in range(300)]
    rows[217] = rows[217][:3]
    rows[250] = rows[250] + [0.0]
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, part in enumerate((slice(0, 200), slice(200, 300))):
        ids = np.arange(300)[part]
        table = pa.table({"x": rows[part], "y": ids % 2, "uid": ids + 1000})
        pq.write_table(table, folder / f"part-{i}.parquet")
    err = run_step(
        tmp_path,
        capsys,
        source="parquet",
        uri=str(folder),
        features="x",
        label="y",
        id_column="uid",
    )
    assert f"{folder}/part-1.parquet: list column 'x' has rows of different lengths" in err
    assert "row 17 (row_id 1217) has 3 values, the first row 4 (2 rows differ)" in err


def test_a_corrupt_image_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "f", per_class=10)
    truncate(folder / "c2" / "007.png")
    err = run_step(tmp_path, capsys, source="image_folder", uri=str(folder))
    assert f"{folder}/c2/007.png: corrupt or truncated image" in err
    assert "`on_bad_row: skip`" in err


def test_images_of_mixed_sizes_without_a_resize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path / "f", per_class=10, size=(12, 10))
    (folder / "c1" / "wide.png").write_bytes(encoded(image(1, (12, 40))))
    err = run_step(tmp_path, capsys, source="image_folder", uri=str(folder))
    assert f"{folder}/c0/000.png is 12x10 (height x width), {folder}/c1/wide.png is 12x40" in err
    assert "Set `image_size: [height, width]`" in err
