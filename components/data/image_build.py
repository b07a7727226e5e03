"""Images into a `Dataset` artifact in bounded memory, however many there are.

The dataset step is where images are decoded — once, before anything trains — because every
consumer (teacher inference, training on either path, evaluation, DisWOT, Meta-DMoE) reads the
same pixels, and a teacher's cached logits belong to exactly those. They are stored as uint8
(``x_storage: uint8``) with the per-channel statistics in the artifact; the one reader
(`components.artifacts.datasets.XReader`) gives every consumer float32 [C, H, W] rows. The step
never holds more than a few chunks of images:

1. **Decode** (`decode_splits`): the listing's rows, split already, are read and decoded in
   chunks on ``threads`` threads (Pillow releases the GIL while it decodes and resizes); each
   image's uint8 pixels are appended to its split's spill file on the local disk (a quarter of
   the float32 size), and the training split's per-channel histogram is counted. Every image is
   read once; an unreadable one fails the step, naming its file, or is counted and left out
   (``on_bad_row``); an image of another size with no ``image_size`` fails the step, naming two
   files. Nothing is written to the store before every image has been read.
2. **Write** (`write_image_splits`): the per-channel mean and std of the training split come
   from its histogram (exact, in float64) and go into the artifact; each split's spill file is
   read back a part at a time and its pixels written as they are, as `part-NNNNN.parquet` files
   of a fixed row count: the same rows give the same bytes, whatever the thread count or chunk
   size.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from components.data.decode import (
    Chunk,
    ImageShape,
    SizeMismatch,
    UnreadableImage,
    decode_task,
)
from components.data.images import ImageListing
from orchestrator import ArtifactStore
from schemas.kd.artifacts import Normalization

T = TypeVar("T")
R = TypeVar("R")
#: Images per decoding task: large enough to amortise a task, small enough to stay bounded.
CHUNK = 64
#: From this many images on, decoding runs in worker processes (their start-up, ~1 s, pays).
PROCESSES_FROM = 4096
#: Seconds between two progress lines.
_PROGRESS_S = 10.0


def ordered_map(
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``fn`` over ``items`` on ``pool``, results in order, at most ``window`` in flight (so a
    slow consumer never lets finished results pile up in memory)."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@dataclass
class ImageJob:
    """What to decode: the listing, each split's rows (sorted), the pixel shape, the split the
    channel statistics are fitted on (None: no normalisation), and what to do with a bad row."""

    listing: ImageListing
    splits: dict[str, np.ndarray]
    shape: ImageShape
    fit_on: str | None
    on_bad_row: str
    threads: int
    log: Callable[[str], None] = print


@dataclass
class Decoded:
    """Pass 1's result: each split's spill file and kept rows, the fit split's histogram
    (channels x 256 pixel counts), and every bad row (row, why) that was left out."""

    spills: dict[str, Path]
    kept: dict[str, np.ndarray]
    histogram: np.ndarray
    bad: list[tuple[int, str]] = field(default_factory=list)


def first_shape(
    listing: ImageListing, rows: np.ndarray, channels: int | None, size: list[int] | None
) -> tuple[ImageShape, int]:
    """The shape every image becomes (``channels`` and ``size``, else the first image's) and
    the row whose image set it (-1 when both are given)."""
    from components.data.decode import probe, read_payload

    if channels is not None and size is not None:
        return ImageShape(channels, size[0], size[1], resize=True), -1
    last: UnreadableImage | None = None
    for _, chunk in zip(range(3), listing.payloads(rows, 8), strict=False):
        for row, payload in chunk:
            try:
                found, (height, width) = probe(read_payload(listing.payload_fs, payload))
            except (UnreadableImage, OSError) as e:
                last = e if isinstance(e, UnreadableImage) else UnreadableImage(str(e))
                continue
            shape = ImageShape(
                channels or found,
                size[0] if size else height,
                size[1] if size else width,
                resize=size is not None,
            )
            return shape, row
    raise ValueError(f"{listing.uri}: none of its first 24 images can be read ({last})")


def _mixed_sizes(job: ImageJob, first: int, error: SizeMismatch) -> ValueError:
    h, w = job.shape.height, job.shape.width
    width, height = error.size
    row = error.row
    return ValueError(
        f"images of different sizes and no `image_size`: {job.listing.name(first)} is {h}x{w} "
        f"(height x width), {job.listing.name(row)} is {height}x{width}. Set `image_size: "
        f"[height, width]` to resize every image (e.g. [{h}, {w}])"
    )


def _bad_row(job: ImageJob, row: int, why: str) -> ValueError:
    return ValueError(
        f"{job.listing.name(row)}: {why}. Replace or remove the file, or set `on_bad_row: skip` "
        "to leave unreadable images out (they are counted in the dataset and its reports)"
    )


def decode_pool(workers: int, images: int) -> Executor:
    """Where chunks are decoded: ``workers`` processes (Pillow parses an image's headers in
    Python, so threads share one core for much of a small image; processes do not), or threads
    for a few images or one worker (no process start-up)."""
    if workers < 2 or images < PROCESSES_FROM:
        return ThreadPoolExecutor(workers, thread_name_prefix="decode")
    import multiprocessing

    # spawn, not fork: the step may run in a process with threads (a Ray worker), where fork is
    # unsafe. A spawned process imports the parent's `__main__` first, which runs a user's
    # script again if its code is not under `if __name__ == "__main__":`; so every worker is
    # started now, with a bare `__main__` in place (they need nothing of it: the task is
    # `components.data.decode.decode_chunk`), and none is started later.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        started = [pool.submit(int) for _ in range(workers)]  # one process each
    finally:
        sys.modules["__main__"] = main
    for future in started:
        future.result()
    return pool


class _Spills:
    """Pass 1's sink: each chunk's pixels appended to its split's spill file, its rows noted,
    the fit split's histogram counted."""

    def __init__(self, job: ImageJob, workdir: Path, split_of: np.ndarray):
        self.job, self.split_of, self.names = job, split_of, list(job.splits)
        self.decoded = Decoded(
            spills={n: workdir / f"split-{i}.u8" for i, n in enumerate(self.names)},
            kept={},
            histogram=np.zeros((job.shape.channels, 256), np.int64),
        )
        self.kept: dict[str, list[np.ndarray]] = {n: [] for n in self.names}
        self.files = {n: open(p, "wb") for n, p in self.decoded.spills.items()}  # noqa: SIM115

    def add(self, chunk: Chunk) -> None:
        if chunk.bad and self.job.on_bad_row == "fail":
            raise _bad_row(self.job, *chunk.bad[0])
        self.decoded.bad += chunk.bad
        self.decoded.histogram += chunk.histogram
        where = self.split_of[chunk.rows]
        for i, name in enumerate(self.names):
            mine = np.ascontiguousarray(chunk.pixels[where == i])  # (N, C, H, W) in C order
            if len(mine):
                self.files[name].write(mine.data)
                self.kept[name].append(chunk.rows[where == i])

    def close(self) -> Decoded:
        for f in self.files.values():
            f.close()
        self.decoded.kept = {
            n: np.concatenate(k) if k else np.zeros(0, np.int64) for n, k in self.kept.items()
        }
        return self.decoded


def decode_splits(job: ImageJob, workdir: Path, first: int) -> Decoded:
    """Pass 1 (see the module docstring): every selected row decoded once into its split's
    spill file under ``workdir``."""
    split_of = np.full(len(job.listing), -1, np.int64)
    for i, name in enumerate(job.splits):
        split_of[job.splits[name]] = i
    rows = np.flatnonzero(split_of >= 0)
    spills = _Spills(job, workdir, split_of)
    done, started, said = 0, time.monotonic(), time.monotonic()
    fit = list(job.splits).index(job.fit_on) if job.fit_on else -1
    tasks = (
        (items, (split_of[[r for r, _ in items]] == fit).tolist())
        for items in job.listing.payloads(rows, CHUNK)
    )
    try:
        with decode_pool(job.threads, len(rows)) as pool:
            try:
                # Only the filesystem and the shape go with each task, never the listing.
                task = partial(decode_task, job.listing.payload_fs, shape=job.shape)
                chunks = ordered_map(pool, task, tasks, window=2 * job.threads)
                for chunk in chunks:
                    spills.add(chunk)
                    done += len(chunk.rows) + len(chunk.bad)
                    if time.monotonic() - said > _PROGRESS_S:
                        said = time.monotonic()
                        rate = done / (said - started)
                        job.log(f"decoded {done:,} of {len(rows):,} images ({rate:,.0f}/s)")
            except SizeMismatch as e:
                raise _mixed_sizes(job, first, e) from None
            finally:
                pool.shutdown(cancel_futures=True)
    finally:
        decoded = spills.close()
    return decoded


def channel_normalization(histogram: np.ndarray, fitted_on: str) -> Normalization:
    """Per-channel mean and std of pixels scaled to [0, 1], from their counts (exact, in
    float64); a constant channel gets std 1."""
    from components.data.transforms import CONSTANT_STD

    values = np.arange(256, dtype=np.float64) / 255.0
    total = histogram.sum(axis=1).astype(np.float64)
    if (total == 0).any():
        raise ValueError(f"the '{fitted_on}' split holds no images to fit a normalisation on")
    mean = (histogram * values).sum(axis=1) / total
    var = (histogram * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    std = np.sqrt(var)
    std[std < CONSTANT_STD] = 1.0
    return Normalization(kind="channel", fitted_on=fitted_on, mean=mean.tolist(), std=std.tolist())


def write_image_splits(
    job: ImageJob, decoded: Decoded, store: ArtifactStore, path: str
) -> dict[str, int]:
    """Pass 2 (see the module docstring): each split's part files under ``path``, several parts
    on threads, each read from the spill a row group at a time; rows per split."""
    from components.artifacts.datasets import (
        IMAGE_GROUP_BYTES,
        IMAGE_PART_BYTES,
        check_split_name,
        part_name,
        rows_per_file,
    )

    shape = job.shape.as_list()
    per_file = rows_per_file(shape, IMAGE_PART_BYTES)
    counts = {}
    with ThreadPoolExecutor(job.threads, thread_name_prefix="write") as pool:
        for name, rows in decoded.kept.items():
            # Positional reads (thread-safe), not a memory map: mapped pages would count in
            # the step's resident memory until the whole split was read.
            spill = Spill(
                os.open(decoded.spills[name], os.O_RDONLY),
                rows,
                shape,
                rows_per_file(shape, IMAGE_GROUP_BYTES),
                decoded.spills[name].parent,
            )
            folder = f"{path}/{check_split_name(name)}"
            starts = range(0, max(len(rows), 1), per_file)
            parts = ordered_map(
                pool,
                partial(spill.part_bytes, job.listing, size=per_file),
                starts,
                window=job.threads + 1,  # one more: a part waits while the last is stored
            )
            try:
                for i, data in enumerate(parts):
                    store.write_bytes(f"{folder}/{part_name(i)}", data)
            finally:
                os.close(spill.fd)
            counts[name] = len(rows)
    return counts


@dataclass
class Spill:
    """One split's spill file (``fd``): the uint8 pixels of its ``rows``, in order."""

    fd: int
    rows: np.ndarray
    shape: list[int]
    group: int  # rows per Parquet row group
    folder: Path  # where a part is written before it goes to the store

    def part_bytes(self, listing: ImageListing, start: int, *, size: int) -> bytes:
        """The Parquet bytes of rows ``start:start+size``, written a row group at a time, so a
        part holds one group's pixels in memory besides its bytes."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from components.artifacts.datasets import IMAGE_PARQUET_OPTIONS, pixels_table

        end = min(start + size, len(self.rows))
        row_bytes = int(np.prod(self.shape))
        # Written to a local file and read back: an in-memory sink would grow by doubling.
        local = f"{self.folder}/part-{start}.parquet"
        writer = None
        try:
            for at in range(start, max(end, start + 1), self.group):
                take = self.rows[at : min(at + self.group, end)]
                data = (
                    os.pread(self.fd, len(take) * row_bytes, at * row_bytes) if len(take) else b""
                )
                pixels = np.frombuffer(data, np.uint8).reshape(len(take), *self.shape)
                table = pixels_table(pixels, listing.y[take], listing.row_id[take])
                writer = writer or pq.ParquetWriter(local, table.schema, **IMAGE_PARQUET_OPTIONS)
                writer.write_table(table)
            assert writer is not None
            writer.close()
            pa.default_memory_pool().release_unused()  # mimalloc keeps freed pages otherwise
            return Path(local).read_bytes()
        finally:
            Path(local).unlink(missing_ok=True)


def spill_folder() -> tempfile.TemporaryDirectory[str]:
    """A local folder for the spill files, removed when the step is done (or fails)."""
    return tempfile.TemporaryDirectory(prefix="kdorch-images-")
