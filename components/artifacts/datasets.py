"""`Dataset` artifacts: one folder of Parquet files per split (see `schemas.kd.artifacts.Dataset`).

Columns: ``row_id`` (int64), ``x`` (fixed_size_list<float32>[prod(feature_shape)], or an
image's uint8 pixels: see `XReader`), ``y`` (int64). Files are written with fixed settings, so
the same rows give the same bytes and the same data version.

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

from orchestrator import ArtifactError, ArtifactStore, StepContext
from schemas.kd.artifacts import Dataset, Normalization

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "write_statistics": True,
}
#: Images (`components.data.image_build`) are stored as their uint8 pixels, one
#: fixed_size_binary value a row (``x_storage: uint8``): a byte a value with no encoding to
#: compute (Parquet keeps a uint8 list as int32, 4 bytes a value; float32 rows dictionary-encoded,
#: what the step wrote before, took ~1.2 bytes a value for 30x the CPU), and lz4 on top: 12x
#: smaller on mostly-black digits, nothing lost on noise (`benchmarks/image_encoding.py`).
IMAGE_PARQUET_OPTIONS: dict[str, Any] = {
    **PARQUET_OPTIONS,
    "compression": "lz4",
    "use_dictionary": ["row_id", "y"],
    "write_statistics": ["row_id", "y"],  # a page's min and max pixel help no reader
}
#: How ``x`` may be stored (`Dataset.x_storage`); `XReader` refuses anything else.
X_STORAGES = ("float32", "uint8")
ROWS_PER_FILE = 100_000
#: At most this many bytes of rows per part file (wide rows: 64 MiB of 784-feature rows is
#: 21,000 rows), so a split is written and read one bounded part at a time, whatever its size.
PART_BYTES = 64 << 20
#: Image splits are written part by part, a few parts in flight, each a row group at a time:
#: a part holds as many images as 64 MiB of float32 would (a 3x224x224 image is 588 KiB as
#: float32: 111 per part, 16 MiB of pixels), so a part read back as float32 rows stays bounded;
#: row groups likewise by 4 MiB of float32.
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


def pixels_table(pixels: np.ndarray, y: np.ndarray, row_id: np.ndarray) -> pa.Table:
    """Images' uint8 pixels (N, C, H, W) as a dataset stores them (``x_storage: uint8``): one
    fixed_size_binary value a row, the pixels' bytes in C order (no copy when they are)."""
    x = fixed_binary(pixels.reshape(len(pixels), -1))
    return pa.table({"row_id": pa.array(row_id, pa.int64()), "x": x, "y": pa.array(y, pa.int64())})


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
    """One split in memory, in file order, ``x`` as float32 (`XReader`). The arrays are
    writable (torch warns otherwise)."""
    reader = x_reader(dataset)
    table = read_table(store, dataset, split)
    x = reader.numpy(table.column("x")).reshape(-1, *dataset.feature_shape)
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


def fixed_binary(values: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Rows of bytes (N, width) as one fixed_size_binary value a row, no copy when they are
    contiguous uint8 (Parquet stores these as they are; a list of uint8 would become int32s)."""
    rows = np.ascontiguousarray(values, dtype=np.uint8).reshape(len(values), -1)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(rows.shape[1]), len(rows), [None, pa.py_buffer(rows.reshape(-1))]
    )


def binary_rows(chunk: pa.Array) -> np.ndarray:
    """A fixed_size_binary array's bytes as a read-only uint8 view (N, width), no copy."""
    width = chunk.type.byte_width
    flat = np.frombuffer(chunk.buffers()[1], np.uint8, len(chunk) * width, chunk.offset * width)
    return flat.reshape(len(chunk), width)


@dataclass(frozen=True)
class XReader:
    """A dataset's stored ``x`` as the float32 rows (N, prod(feature_shape)) every consumer
    reads: the one place the storage is decoded (`read_split`, teacher inference's batches,
    the streamed training path through `table`). Made by `x_reader`; it pickles (Ray Data
    ships it to its tasks and actors).

    ``float32`` rows are read as they are. ``uint8`` pixels become ``pixel * (1 / (255 std))
    - mean / std`` per channel in float32 (``pixel / 255`` without a normalisation): the
    operations, in the order, the dataset step used when it stored float32 rows, so the values
    are those rows' bit for bit."""

    storage: str
    width: int  # values per row: prod(feature_shape)
    channels: int
    scale: np.ndarray | None = None  # (1, C, 1) float32; None: divide by 255
    offset: np.ndarray | None = None  # (1, C, 1) float32

    def numpy(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """``x`` of a table (a column, any number of chunks) as float32 (N, width)."""
        self._check(column.type)
        if self.storage == "float32":
            return fixed_list_to_numpy(column)
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        out = np.empty((sum(len(c) for c in chunks), self.width), np.float32)
        start = 0
        for chunk in chunks:  # the pixels straight from Arrow's buffer into the floats
            self.to_float(binary_rows(chunk), out[start : start + len(chunk)])
            start += len(chunk)
        return out

    def to_float(self, pixels: np.ndarray, out: np.ndarray) -> None:
        """uint8 ``pixels`` (N, width) scaled (and normalised) into float32 ``out`` (N, width):
        two passes over the floats, not four."""
        by_channel = out.reshape(len(out), self.channels, -1)
        pixels = pixels.reshape(by_channel.shape)
        if self.scale is None:
            np.divide(pixels, np.float32(255), out=by_channel, dtype=np.float32)
            return
        np.multiply(pixels, self.scale, out=by_channel, dtype=np.float32)
        by_channel -= self.offset

    def table(self, table: pa.Table) -> pa.Table:
        """``table`` with ``x`` as float32 rows (unchanged when stored so): a Ray Data
        ``map_batches`` function for the streamed path."""
        if self.storage == "float32":
            return table
        x = self.numpy(table.column("x"))
        rows = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), self.width)
        return table.set_column(table.schema.get_field_index("x"), "x", rows)

    def _check(self, found: pa.DataType) -> None:
        if self.storage == "uint8":
            ok = pa.types.is_fixed_size_binary(found) and found.byte_width == self.width
        else:
            ok = pa.types.is_fixed_size_list(found) and found.list_size == self.width
        if not ok:
            raise ArtifactError(
                f"dataset column x is {found}, but its manifest says x_storage "
                f"'{self.storage}' of {self.width} values a row: the files and the manifest "
                "disagree; rebuild the dataset (run its `dataset` step again)"
            )


def x_reader(dataset: Dataset) -> XReader:
    """How ``dataset``'s ``x`` is read (`XReader`); an `ArtifactError` for a storage this
    version does not know (a dataset written by a newer kdorch) or one it cannot have."""
    width = int(np.prod(dataset.feature_shape))
    storage = dataset.x_storage
    if storage not in X_STORAGES:
        raise ArtifactError(
            f"dataset {dataset.source} at {dataset.path} stores x as '{storage}', which this "
            f"version of kdorch cannot read (it reads {', '.join(X_STORAGES)}): upgrade kdorch, "
            "or run the dataset's `dataset` step with this version to rebuild it"
        )
    if storage == "float32":
        return XReader(storage, width, 1)
    channels = int(dataset.feature_shape[0])
    norm = dataset.normalization
    if norm is None:
        return XReader(storage, width, channels)
    if norm.kind != "channel" or len(norm.mean) != channels:
        raise ArtifactError(
            f"dataset {dataset.source} at {dataset.path} stores uint8 pixels with a "
            f"'{norm.kind}' normalisation of {len(norm.mean)} values for {channels} channels: "
            "pixels take a per-channel one; rebuild the dataset"
        )
    return XReader(storage, width, channels, *channel_scale(norm))


def channel_scale(norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """(1 / (255 std), mean / std) per channel in float32, shaped (1, C, 1): what a pixel is
    multiplied by, then what is subtracted (computed in float64, rounded once)."""
    std = np.asarray(norm.std, np.float64)
    mean = np.asarray(norm.mean, np.float64)
    scale = (1 / (255 * std)).astype(np.float32).reshape(1, -1, 1)
    return scale, (mean / std).astype(np.float32).reshape(1, -1, 1)


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
