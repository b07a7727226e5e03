"""`Dataset` artifacts: one folder of Parquet files per split (see `schemas.kd.artifacts.Dataset`).

Columns: ``row_id`` (int64), ``x`` (fixed_size_list<float32>[prod(feature_shape)]), ``y``
(int64). Files are written with fixed settings, so the same rows give the same bytes and the
same data version.

Two ways to read a split, chosen by the caller (`components.training.data` decides for
training): `read_split` loads it into memory (one verified read per file: the bytes that are
hashed are the bytes that are parsed), `split_source` hands its verified files to Ray Data for
streaming data that does not fit in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from orchestrator import ArtifactStore, StepContext
from schemas.kd.artifacts import Dataset

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "write_statistics": True,
}
ROWS_PER_FILE = 100_000
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class SplitArrays:
    """One split in memory: ``x`` shaped (N, *feature_shape), ``y`` and ``row_id`` (N,), and
    ``domain`` (N,) for a multi-domain dataset."""

    x: np.ndarray
    y: np.ndarray
    row_id: np.ndarray
    domain: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> SplitArrays:
        return SplitArrays(
            self.x[rows],
            self.y[rows],
            self.row_id[rows],
            None if self.domain is None else self.domain[rows],
        )


def check_split_name(name: str) -> str:
    """Split names become folder names: letters, digits, ``_.-``, at most 64, no leading dot."""
    if not _SPLIT_NAME.match(name) or ".." in name:
        raise ValueError(
            f"split name {name[:80]!r} is not allowed: use letters, digits, '_', '.', '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def to_table(arrays: SplitArrays) -> pa.Table:
    flat = np.ascontiguousarray(arrays.x.reshape(len(arrays), -1), dtype=np.float32)
    values = pa.array(flat.reshape(-1), type=pa.float32())
    columns = {
        "row_id": pa.array(arrays.row_id, pa.int64()),
        "x": pa.FixedSizeListArray.from_arrays(values, flat.shape[1]),
        "y": pa.array(arrays.y, pa.int64()),
    }
    if arrays.domain is not None:
        columns["domain"] = pa.array(arrays.domain, pa.int64())
    return pa.table(columns)


def parquet_bytes(table: pa.Table, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **(options or PARQUET_OPTIONS))
    return bytes(sink.getvalue().to_pybytes())


def write_split(store: ArtifactStore, path: str, table: pa.Table) -> None:
    """Write one split as ``part-NNNNN.parquet`` files (deterministic names and bytes)."""
    for i, start in enumerate(range(0, max(table.num_rows, 1), ROWS_PER_FILE)):
        store.write_bytes(
            f"{path}/part-{i:05d}.parquet", parquet_bytes(table.slice(start, ROWS_PER_FILE))
        )


def write_dataset(
    ctx: StepContext, port: str, splits: dict[str, SplitArrays], **metadata: Any
) -> Dataset:
    """Write every split into the step's output folder for ``port``; returns the (unsealed)
    `Dataset` with ``splits`` and ``feature_shape`` filled in from the arrays."""
    path = ctx.output_path(port)
    for name, arrays in splits.items():
        write_split(ctx.store, f"{path}/{check_split_name(name)}", to_table(arrays))
    first = next(iter(splits.values()))
    return Dataset(
        path=path,
        splits={name: len(a) for name, a in splits.items()},
        feature_shape=[int(d) for d in first.x.shape[1:]],
        **metadata,
    )


def split_files(store: ArtifactStore, dataset: Dataset, split: str) -> list[str]:
    """The manifest's file names of one split, in order (``<split>/part-00000.parquet``...)."""
    prefix = f"{check_split_name(split)}/"
    dataset.split_path(split)  # a clear KeyError for an unknown split
    return sorted(e.path for e in store.manifest(dataset).files if e.path.startswith(prefix))


def parquet_table(data: Any, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file as a table, from its bytes (any bytes-like buffer, read without copying:
    through a ``BytesIO`` pyarrow would read them back via Python, copy by copy) or from an
    open pyarrow file (`ArtifactStore.read_parsed` with ``arrow_file=True``)."""
    source = data if isinstance(data, pa.NativeFile) else pa.BufferReader(data)
    return pq.read_table(source, columns=columns)


def read_table(store: ArtifactStore, dataset: Dataset, split: str) -> pa.Table:
    """One split as an Arrow table, every file verified against the manifest (hashed while it
    is parsed: `ArtifactStore.read_parsed`)."""
    tables = [
        store.read_parsed(dataset, name, parquet_table, arrow_file=True)
        for name in split_files(store, dataset, split)
    ]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_split(store: ArtifactStore, dataset: Dataset, split: str) -> SplitArrays:
    """One split in memory, in file order. The arrays are writable (torch warns otherwise)."""
    table = read_table(store, dataset, split)
    x = fixed_list_to_numpy(table.column("x")).reshape(-1, *dataset.feature_shape)
    return SplitArrays(
        x=np.array(x, copy=True),
        y=table.column("y").to_numpy().copy(),
        row_id=table.column("row_id").to_numpy().copy(),
        domain=table.column("domain").to_numpy().copy() if "domain" in table.column_names else None,
    )


def read_labels(store: ArtifactStore, dataset: Dataset, split: str) -> np.ndarray:
    """One split's labels (``y``) only: every file verified, only its ``y`` column parsed."""
    parts = [
        store.read_parsed(dataset, name, lambda data: parquet_table(data, ["y"]), arrow_file=True)
        .column("y")
        .to_numpy()
        for name in split_files(store, dataset, split)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def select_domains(
    arrays: SplitArrays,
    dataset: Dataset,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
) -> SplitArrays:
    """The rows of domains ``include`` (all if None) minus ``exclude``, by domain name."""
    if include is None and not exclude:
        return arrays
    if arrays.domain is None:
        raise ValueError(
            f"domains were selected, but dataset {dataset.source} has no domains (set "
            "`domains` in its dataset step)"
        )
    keep = np.ones(len(arrays), dtype=bool)
    if include is not None:
        keep &= np.isin(arrays.domain, dataset.domain_ids(include))
    if exclude:
        keep &= ~np.isin(arrays.domain, dataset.domain_ids(exclude))
    return arrays.take(np.flatnonzero(keep))


def split_source(
    store: ArtifactStore, dataset: Dataset, splits: list[str]
) -> tuple[Any, list[str]]:
    """(pyarrow filesystem, file paths) of several splits for a streaming reader (Ray Data).

    Each file is hashed first (once per process), since a streaming reader cannot verify.
    """
    paths = []
    for split in splits:
        for name in split_files(store, dataset, split):
            store.verify_file(dataset, store.entry(dataset, name))
            paths.append(store.fs_path(dataset.file(name)))
    return store.arrow_filesystem(), paths


def split_of(path: str) -> str:
    """The split a dataset file belongs to: ``.../<split>/part-00000.parquet`` -> ``<split>``."""
    return path.rsplit("/", 2)[-2]


def fixed_list_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed_size_list column as a 2-D numpy array without copying through Python objects."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
