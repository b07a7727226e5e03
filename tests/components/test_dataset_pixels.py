"""Image datasets store uint8 pixels (``x_storage: uint8``) and the one reader (`XReader`) gives
every consumer the float32 rows the dataset step used to store: the same values bit for bit,
the same held columns and the same streamed batches; a storage the reader does not know, or
files that disagree with their manifest, are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from components.artifacts.datasets import (
    IMAGE_PARQUET_OPTIONS,
    SplitArrays,
    read_split,
    split_files,
    to_table,
)
from orchestrator import ArtifactError, ArtifactStore
from schemas.kd.artifacts import Dataset, Normalization
from tests.support.datasets import make
from tests.support.images import write_folder

#: How the dataset step wrote float32 image rows before (dictionary-encoded floats).
LEGACY_OPTIONS = {**IMAGE_PARQUET_OPTIONS, "use_dictionary": True}


def old_to_float(pixels: np.ndarray, normalization: Normalization | None) -> np.ndarray:
    """The dataset step's float32 rows before uint8 storage (its `to_float`, verbatim)."""
    if normalization is None:
        return np.divide(pixels, np.float32(255), dtype=np.float32)
    shape = (1, -1) + (1,) * (pixels.ndim - 2)
    std = np.asarray(normalization.std, np.float64)
    mean = np.asarray(normalization.mean, np.float64)
    scale = (1 / (255 * std)).astype(np.float32).reshape(shape)
    x = np.multiply(pixels, scale, dtype=np.float32)
    x -= (mean / std).astype(np.float32).reshape(shape)
    return x


def legacy_copy(store: ArtifactStore, ds: Dataset, path: str) -> Dataset:
    """``ds`` written as the step wrote images before: float32 rows (`old_to_float` of the
    stored pixels), dictionary-encoded, the same parts and row groups; sealed."""
    for split in ds.splits:
        for name in split_files(store, ds, split):
            part = pq.ParquetFile(pa.BufferReader(store.read_file(ds, name)))
            sink = pa.BufferOutputStream()
            writer = None
            for group in range(part.num_row_groups):
                table = part.read_row_group(group)
                x = np.frombuffer(table.column("x").combine_chunks().buffers()[1], np.uint8)
                pixels = x[: table.num_rows * int(np.prod(ds.feature_shape))]
                arrays = SplitArrays(
                    old_to_float(pixels.reshape(-1, *ds.feature_shape), ds.normalization),
                    table.column("y").to_numpy(),
                    table.column("row_id").to_numpy(),
                )
                rows = to_table(arrays)
                writer = writer or pq.ParquetWriter(sink, rows.schema, **LEGACY_OPTIONS)
                writer.write_table(rows)
            assert writer is not None
            writer.close()
            store.write_bytes(f"{path}/{name}", sink.getvalue().to_pybytes())
    legacy = ds.model_copy(update={"path": path, "x_storage": "float32", "data_version": ""})
    return store.seal(legacy)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArtifactStore, Dataset, Dataset]:
    """A real PNG folder (3 classes x 40, resized to 16x16, normalised per channel) as the
    step stores it now, and its legacy float32 copy in the same store."""
    root = tmp_path_factory.mktemp("pixels")
    folder = write_folder(root / "images", per_class=40, size=(20, 18))
    ds, error = make(root / "store", source="image_folder", uri=str(folder), image_size=[16, 16])
    assert ds is not None, error
    store = ArtifactStore(str(root / "store"))
    return store, ds, legacy_copy(store, ds, "objects/legacy")


def test_images_are_stored_as_uint8_pixels_with_their_normalisation(
    images: tuple[ArtifactStore, Dataset, Dataset],
) -> None:
    store, ds, legacy = images
    assert ds.x_storage == "uint8" and ds.normalization is not None
    assert ds.model_dump()["x_storage"] == "uint8"  # in the manifest: part of the data version
    name = split_files(store, ds, "train")[0]
    table = pq.read_table(pa.BufferReader(store.read_file(ds, name)))
    assert table.schema.field("x").type == pa.binary(3 * 16 * 16)
    assert ds.data_version != legacy.data_version


def test_uint8_pixels_read_as_the_float32_rows_written_before(
    images: tuple[ArtifactStore, Dataset, Dataset],
) -> None:
    store, ds, legacy = images
    assert ds.normalization is not None
    for split in ds.splits:
        new, old = read_split(store, ds, split), read_split(store, legacy, split)
        assert new.x.dtype == np.float32 and new.x.shape == (ds.splits[split], 3, 16, 16)
        assert np.array_equal(new.x, old.x)  # bit for bit
        assert np.array_equal(new.y, old.y) and np.array_equal(new.row_id, old.row_id)
        assert new.x.flags.writeable
    # And both are the exact standardisation, to float32 rounding.
    pixels = np.rint(
        (read_split(store, ds, "test").x * np.float64(255))
        * np.asarray(ds.normalization.std)[:, None, None]
        + 255 * np.asarray(ds.normalization.mean)[:, None, None]
    )
    assert pixels.min() >= 0 and pixels.max() <= 255
    exact = (pixels / 255 - np.asarray(ds.normalization.mean)[:, None, None]) / np.asarray(
        ds.normalization.std
    )[:, None, None]
    got = read_split(store, ds, "test").x
    assert np.allclose(got, exact, rtol=0, atol=8 * np.finfo(np.float32).eps * np.abs(exact).max())


def test_without_normalisation_pixels_read_as_pixel_over_255(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "f", per_class=10)
    ds, error = make(tmp_path / "s", source="image_folder", uri=str(folder), normalize="none")
    assert ds is not None and ds.normalization is None and ds.x_storage == "uint8", error
    store = ArtifactStore(str(tmp_path / "s"))
    x = read_split(store, ds, "train").x
    assert np.array_equal(x, np.divide(np.rint(x * 255).astype(np.uint8), np.float32(255)))


def test_tables_and_bundled_data_keep_float32_rows_and_their_manifest() -> None:
    ds = Dataset(
        path="objects/a", splits={"train": 1}, feature_shape=[4], num_classes=2, source="t"
    )
    assert ds.x_storage == "float32" and "x_storage" not in ds.model_dump()


@pytest.mark.parametrize(
    ("files", "storage", "message"),
    [
        ("uint8", "bfloat16", r"stores x as 'bfloat16'.*cannot read.*float32, uint8.*upgrade"),
        ("float32", "uint8", r"column x is fixed_size_list.*x_storage 'uint8'.*rebuild"),
        ("uint8", "float32", r"column x is fixed_size_binary.*x_storage 'float32'.*rebuild"),
    ],
)
def test_an_unknown_storage_or_files_that_disagree_are_refused(
    images: tuple[ArtifactStore, Dataset, Dataset], files: str, storage: str, message: str
) -> None:
    store, ds, legacy = images
    ref = (ds if files == "uint8" else legacy).model_copy(update={"x_storage": storage})
    with pytest.raises(ArtifactError, match=message):
        read_split(store, ref, "train")


@pytest.mark.ray
def test_held_and_streamed_training_data_are_the_batches_of_before(
    images: tuple[ArtifactStore, Dataset, Dataset], ray_cluster: str
) -> None:
    from components.training.batches import HeldBatches, StreamBatches
    from components.training.data import prepare_data
    from schemas.kd.components.training import TrainingSettings

    store, ds, legacy = images
    held = TrainingSettings(eval_split="test")
    new, old = prepare_data(store, ds, held), prepare_data(store, legacy, held)
    assert set(new.held) == {"train", "test"} and not new.streamed
    for split, columns in new.held.items():
        assert all(np.array_equal(v, old.held[split][k]) for k, v in columns.items())
        tensors = {k: torch.from_numpy(v) for k, v in columns.items()}
        batches = HeldBatches(tensors, batch_size=32, shuffle=True, seed=5).batches(0)
        assert next(batches)["x"].dtype == torch.float32
    streamed = TrainingSettings(eval_split="test", worker_cache_mb=0)
    new, old = prepare_data(store, ds, streamed), prepare_data(store, legacy, streamed)
    assert set(new.streamed) == {"train", "test"} and not new.held
    for split in new.streamed:
        got, want = (
            list(
                StreamBatches(
                    data.streamed[split], batch_size=32, shuffle=True, seed=5, shuffle_buffer=64
                ).batches(1)
            )
            for data in (new, old)
        )
        assert len(got) == len(want) and sum(len(b["y"]) for b in got) == ds.splits[split]
        assert len(got) > 1 or split == "test"  # 72 train rows: 3 batches
        for a, b in zip(got, want, strict=True):
            assert a["x"].dtype == torch.float32 and a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
