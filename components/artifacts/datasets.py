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
#: Images (`components.data.image_build`): a float32 image takes only 256 values per channel,
#: so dictionary encoding stores it in about a byte per value — a quarter of plain floats, half
#: of zstd's — and zstd on top gains 6% more for 3x the read time (a 3x64x64 part: write 0.24
#: CPU-s per 1,365 images, read 0.07 s; dictionary + zstd 0.27 and 0.22).
IMAGE_PARQUET_OPTIONS: dict[str, Any] = {
    **PARQUET_OPTIONS,
    "compression": "none",
    "use_dictionary": True,
    "write_statistics": ["row_id", "y"],  # a page's min and max pixel help no reader
}
ROWS_PER_FILE = 100_000
#: At most this many bytes of rows per part file (wide rows: 64 MiB of 784-feature rows is
#: 21,000 rows), so a split is written and read one bounded part at a time, whatever its size.
PART_BYTES = 64 << 20
#: Image splits are written part by part, a few parts in flight, each a row group at a time:
#: a part holds 64 MiB of float32 images (a 3x224x224 image is 588 KiB: 111 per part) in row
#: groups of 4 MiB, so writing one holds a group's floats and the part's compressed bytes.
IMAGE_PART_BYTES = 64 << 20
IMAGE_GROUP_BYTES = 4 << 20
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


def rows_per_file(feature_shape: list[int] | tuple[int, ...], part_bytes: int = PART_BYTES) -> int:
    """Rows in each part file of a split whose examples have ``feature_shape``: `ROWS_PER_FILE`,
    or fewer so that a file holds at most ``part_bytes`` (float32 x, int64 row_id and y)."""
    row = 4 * int(np.prod(feature_shape)) + 16
    return max(1, min(ROWS_PER_FILE, part_bytes // row))


def part_name(index: int) -> str:
    """The file name of a split's part ``index`` (the order rows are read back in)."""
    return f"part-{index:05d}.parquet"


def write_split(store: ArtifactStore, path: str, table: pa.Table, per_file: int) -> None:
    """Write one split as ``part-NNNNN.parquet`` files of ``per_file`` rows (deterministic
    names and bytes)."""
    for i, start in enumerate(range(0, max(table.num_rows, 1), per_file)):
        store.write_bytes(f"{path}/{part_name(i)}", parquet_bytes(table.slice(start, per_file)))


def write_dataset(
    ctx: StepContext, port: str, splits: dict[str, SplitArrays], **metadata: Any
) -> Dataset:
    """Write every split into the step's output folder for ``port``; returns the (unsealed)
    `Dataset` with ``splits`` and ``feature_shape`` filled in from the arrays."""
    path = ctx.output_path(port)
    first = next(iter(splits.values()))
    per_file = rows_per_file(first.x.shape[1:])
    for name, arrays in splits.items():
        write_split(ctx.store, f"{path}/{check_split_name(name)}", to_table(arrays), per_file)
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
        x=x if x.flags.writeable else np.array(x, copy=True),
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
    """A fixed_size_list column as a 2-D numpy array without copying through Python objects:
    a view of one chunk's values, or one copy of several chunks' (one per row group) straight
    into the result (no concatenated Arrow array in between)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    width = column.type.list_size
    if len(chunks) == 1:
        return chunks[0].flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    dtype = np.dtype(column.type.value_type.to_pandas_dtype())
    out = np.empty((sum(len(c) for c in chunks), width), dtype=dtype)
    start = 0
    for chunk in chunks:
        out[start : start + len(chunk)] = (
            chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        )
        start += len(chunk)
    return out


def skipped_note(dataset: Dataset) -> str:
    """A Markdown note on the rows the dataset left out (``on_bad_row: skip``), for reports;
    empty when it left none out."""
    if dataset.skipped is None:
        return ""
    shown = "; ".join(dataset.skipped.examples[:3])
    more = " ..." if dataset.skipped.count > len(dataset.skipped.examples[:3]) else ""
    return (
        f"\nDataset: {dataset.skipped.count:,} unreadable rows of the source were left out of "
        f"every split (`on_bad_row: skip`), e.g. {shown}{more}\n"
    )
