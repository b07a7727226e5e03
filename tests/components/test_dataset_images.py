"""The dataset component on images: a folder tree of PNG/JPEG files and a Parquet column of PNG
bytes, local and on S3, decoded in chunks, normalised per channel on the train split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from components.artifacts.datasets import read_split
from components.data.bundled import write_mnist_parquet, write_mnist_png
from orchestrator import ArtifactStore, Pipeline, plan, run
from schemas.kd.components.dataset import DatasetConfig
from tests.support.datasets import make
from tests.support.images import encoded, image, truncate, write_folder


def committed(store: Path) -> list[Path]:
    """The artifacts a store holds (their manifests)."""
    return sorted(store.glob("objects/**/_manifest.json"))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The 5,000 bundled digits as PNG files in class folders, and as a table of PNG bytes."""
    root = tmp_path_factory.mktemp("mnist")
    return write_mnist_png(root / "png"), write_mnist_parquet(root / "mnist.parquet")


def test_png_folder_and_png_table_give_the_bundled_digits_exactly(
    mnist: tuple[Path, Path], tmp_path: Path
) -> None:
    folder, table = mnist
    bundled, _ = make(tmp_path / "s", source="mnist5k")
    from_folder, error = make(
        tmp_path / "s", source="image_folder", uri=str(folder), normalize="none"
    )
    assert from_folder is not None, error
    from_table, error = make(
        tmp_path / "s",
        source="parquet",
        uri=str(table),
        image_column="image",
        label="label",
        id_column="row_id",
        normalize="none",
    )
    assert bundled is not None and from_table is not None, error
    assert from_folder.class_names == [str(d) for d in range(10)] == from_table.class_names
    assert from_folder.feature_shape == [1, 28, 28] and from_folder.splits == bundled.splits
    assert from_folder.transform == "decode:L;size:28x28;scale:/255"
    store = ArtifactStore(str(tmp_path / "s"))
    for split in ("train", "test"):
        want = read_split(store, bundled, split)
        for got in (read_split(store, from_folder, split), read_split(store, from_table, split)):
            assert np.array_equal(got.row_id, want.row_id) and np.array_equal(got.y, want.y)
            assert np.array_equal(got.x, want.x)  # PNG round trip: the same pixels, bit for bit


def test_channel_statistics_are_fitted_on_train_only(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=20)
    ds, error = make(tmp_path / "s", source="image_folder", uri=str(folder))
    assert ds is not None and ds.normalization is not None, error
    assert ds.normalization.kind == "channel" and ds.normalization.fitted_on == "train"
    assert ds.feature_shape == [3, 12, 10] and ds.transform.endswith("standardize-channels:train")
    store = ArtifactStore(str(tmp_path / "s"))
    train, test = read_split(store, ds, "train"), read_split(store, ds, "test")
    assert np.allclose(train.x.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(train.x.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # The raw pixels of the train rows give the stored statistics; test rows use them too.
    files = sorted(p for p in folder.rglob("*.png"))
    raw = np.stack([np.asarray(image_at(p)) for p in files]).transpose(0, 3, 1, 2) / 255.0
    mean, std = raw[train.row_id].mean(axis=(0, 2, 3)), raw[train.row_id].std(axis=(0, 2, 3))
    assert np.allclose(ds.normalization.mean, mean) and np.allclose(ds.normalization.std, std)
    expected = (raw[test.row_id] - mean[:, None, None]) / std[:, None, None]
    assert np.allclose(test.x, expected, atol=1e-5)


def image_at(path: Path) -> object:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def test_same_images_give_the_same_data_version_whatever_the_threads(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=30)
    one, _ = make(tmp_path / "a", source="image_folder", uri=str(folder), decode_threads=1)
    three, error = make(tmp_path / "b", source="image_folder", uri=str(folder), decode_threads=3)
    assert one is not None and three is not None, error
    assert one.data_version == three.data_version


def test_resize_and_channels(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=10, size=(12, 10), fmt="jpg")
    (folder / "c0" / "big.png").write_bytes(encoded(image(7, (40, 30), "L")))  # grey, larger
    ds, error = make(
        tmp_path / "s", source="image_folder", uri=str(folder), image_size=[8, 6], channels=1
    )
    assert ds is not None, error
    assert ds.feature_shape == [1, 8, 6] and sum(ds.splits.values()) == 31
    assert ds.transform.startswith("decode:L;resize:8x6:bilinear;scale:/255")
    x = read_split(ArtifactStore(str(tmp_path / "s")), ds, "train").x
    assert x.shape[1:] == (1, 8, 6) and np.isfinite(x).all()


def test_mixed_sizes_without_a_resize_name_two_files(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=10, size=(12, 10))
    (folder / "c2" / "odd.png").write_bytes(encoded(image(7, (16, 10))))
    ds, error = make(tmp_path / "s", source="image_folder", uri=str(folder))
    assert ds is None
    assert f"{folder}/c0/000.png is 12x10 (height x width)" in error
    assert f"{folder}/c2/odd.png is 16x10" in error and "image_size: [height, width]" in error
    assert committed(tmp_path / "s") == []


def test_a_corrupt_image_fails_naming_the_file_or_is_skipped_and_counted(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=20)
    truncate(folder / "c1" / "004.png")
    (folder / "c2" / "notes.png").write_text("not an image")
    ds, error = make(tmp_path / "a", source="image_folder", uri=str(folder))
    assert ds is None and f"{folder}/c1/004.png: corrupt or truncated image" in error
    assert "on_bad_row: skip" in error and committed(tmp_path / "a") == []
    ds, error = make(tmp_path / "b", source="image_folder", uri=str(folder), on_bad_row="skip")
    assert ds is not None and ds.skipped is not None, error
    assert ds.skipped.count == 2 and sum(ds.splits.values()) == 59  # of 61 files
    assert ds.skipped.examples[0].startswith(f"{folder}/c1/004.png: corrupt or truncated")
    assert (
        ds.skipped.examples[1]
        == f"{folder}/c2/notes.png: not an image Pillow can read (no known image format)"
    )


def test_image_table_on_s3_and_a_folder_on_s3(tmp_path: Path, s3_server: dict) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    folder = write_folder(tmp_path / "f", per_class=10)
    fs.put(str(folder), f"{s3_server['bucket']}/imgs", recursive=True)
    rows = [(f"c{k}", encoded(image(k * 100 + i, (9, 9), level=60 * k))) for k in range(2)
            for i in range(10)]  # fmt: skip
    table = pa.table({"png": [r[1] for r in rows], "kind": [r[0] for r in rows]})
    with fs.open(f"{s3_server['bucket']}/t/images.parquet", "wb") as f:
        pq.write_table(table, f)
    options = s3_server["storage_options"]
    uri = f"s3://{s3_server['bucket']}/imgs"
    ds, error = make(tmp_path / "s", source="image_folder", uri=uri, storage_options=options)
    assert ds is not None and sum(ds.splits.values()) == 30, error
    ds, error = make(
        tmp_path / "s",
        source="parquet",
        uri=f"s3://{s3_server['bucket']}/t/images.parquet",
        image_column="png",
        label="kind",
        storage_options=options,
    )
    assert ds is not None and ds.class_names == ["c0", "c1"], error
    assert ds.feature_shape == [3, 9, 9]


def test_a_changed_image_reruns_the_step_and_the_same_bytes_do_not(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=10)
    p = Pipeline("data")
    p.add("data", "dataset", config={"source": "image_folder", "uri": str(folder)})
    store = str(tmp_path / "s")
    run(p.spec, storage=store, executor="local")
    data = (folder / "c0" / "003.png").read_bytes()
    (folder / "c0" / "003.png").write_bytes(data)  # rewritten, the same bytes
    assert [s.action for s in plan(p.spec, storage=store)] == ["cached"]
    (folder / "c0" / "003.png").write_bytes(encoded(image(99, (12, 10))))
    (planned,) = plan(p.spec, storage=store)
    assert planned.action == "run" and planned.reason.startswith("external data changed")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"source": "image_folder"}, "needs `uri`"),
        ({"source": "parquet", "uri": "t", "image_size": [8, 8]}, "only apply to images"),
        ({"source": "image_folder", "uri": "f", "label": "y"}, "do not apply to images"),
        ({"source": "image_folder", "uri": "f", "rotation": 30}, "need images held in memory"),
        ({"source": "image_folder", "uri": "f", "normalize": "standard"}, "images take `channel`"),
        ({"source": "image_folder", "uri": "f", "image_size": [0, 8]}, "in 1..8192"),
        ({"source": "digits", "image_column": "png"}, "`image_column` is for source 'parquet'"),
    ],
)
def test_image_config_mistakes(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DatasetConfig.model_validate(config)


def test_bundled_images_can_be_normalised_per_channel(tmp_path: Path) -> None:
    ds, error = make(tmp_path / "s", source="digits", max_rows=300, normalize="channel")
    assert ds is not None and ds.normalization is not None, error
    assert ds.normalization.kind == "channel" and len(ds.normalization.mean) == 1
    x = read_split(ArtifactStore(str(tmp_path / "s")), ds, "train").x
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-4


def test_bad_cells_of_an_image_table_name_the_file_and_row(tmp_path: Path) -> None:
    cells: list[bytes | None] = [encoded(image(i, (8, 8), level=60 * (i % 2))) for i in range(40)]
    cells[3] = cells[3][:20]  # type: ignore[index]
    cells[10] = None
    table = pa.table({"uid": np.arange(100, 140), "png": cells, "y": np.arange(40) % 2})
    pq.write_table(table, tmp_path / "t.parquet")
    config = {
        "source": "parquet",
        "uri": str(tmp_path / "t.parquet"),
        "image_column": "png",
        "label": "y",
        "id_column": "uid",
    }
    ds, error = make(tmp_path / "a", **config)
    assert ds is None and f"{tmp_path}/t.parquet row 3 (row_id 103): not an image" in error
    ds, error = make(tmp_path / "b", **config, on_bad_row="skip")
    assert ds is not None and ds.skipped is not None, error
    assert ds.skipped.count == 2 and sum(ds.splits.values()) == 38
    assert ds.skipped.examples[1] == (
        f"{tmp_path}/t.parquet row 10 (row_id 110): no image (the cell is null)"
    )


def test_worker_processes_decode_the_same_bytes_and_report_the_same_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.data import image_build

    folder = write_folder(tmp_path / "f", per_class=12)
    config = {"source": "image_folder", "uri": str(folder), "decode_threads": 2}
    on_threads, error = make(tmp_path / "a", **config)
    monkeypatch.setattr(image_build, "PROCESSES_FROM", 0)  # every job on worker processes
    on_processes, error = make(tmp_path / "b", **config)
    assert on_threads is not None and on_processes is not None, error
    assert on_threads.data_version == on_processes.data_version
    (folder / "c1" / "wide.png").write_bytes(encoded(image(1, (12, 40))))
    ds, error = make(tmp_path / "c", **config)
    assert ds is None and f"{folder}/c1/wide.png is 12x40" in error
    (folder / "c1" / "wide.png").unlink()
    truncate(folder / "c2" / "003.png")
    ds, error = make(tmp_path / "d", **config)
    assert ds is None and f"{folder}/c2/003.png: corrupt or truncated image" in error
