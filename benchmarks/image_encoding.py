"""What the dataset step's Parquet encoding of images costs, and what the alternatives would.

The dataset step (`components/data/image_build.py`) writes every image as its uint8 pixels, one
fixed_size_binary value a row, lz4-compressed (``x_storage: uint8``); the reader scales and
normalises them (`components.artifacts.datasets.XReader`). Before, it wrote normalised float32
[C, H, W] rows, dictionary-encoded (a channel takes 256 values: about a byte per value on disk),
which kept the step at 0.57-0.72x ImageFolder + DataLoader's images/s in
`benchmarks/image_data.py` against a goal of 0.8x. This script measures, on one thread, for one
part of rows as the step writes it, what each way of storing them costs to write, and to read
back as the float32 rows every consumer takes:

- ``uint8 pixels``: the pixels' bytes as they are, with lz4 (what the step does now), plain, or
  with zstd (level 1);
- ``float32``: uint8 pixels scaled and normalised per channel, the Arrow table (`to_table`):
  work every float32 variant needs;
- ``dictionary`` (what the step did before): the Parquet writer hashes every float into its
  dictionary;
- ``prebuilt dictionary``: the pixels as indices into the C x 256 normalised values (an Arrow
  ``DictionaryArray``), so the writer could skip the hashing — if it kept the dictionary;
- ``plain``: no dictionary (4 bytes a value), and ``plain + lz4``.

Two kinds of pixels: the bundled MNIST digits (28x28, repeated to 3 channels: mostly black)
and uniform noise at 64x64 (every value equally likely: the worst case for the file size).
Prints CPU seconds per 1,000 images to write and to read back as float32 rows (median of
``--repeats``) and MB per 1,000 images. Run: ``python benchmarks/image_encoding.py`` (about a
minute).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable
from functools import partial

import _bench  # noqa: F401 (puts the checkout on sys.path)
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _bench import load, machine

from components.artifacts.datasets import (
    IMAGE_PARQUET_OPTIONS,
    SplitArrays,
    XReader,
    channel_scale,
    pixels_table,
    to_table,
)
from schemas.kd.artifacts import Normalization

PLAIN = {"use_dictionary": ["row_id", "y"]}
#: The float32 variants as the step wrote them before: dictionary-encoded floats.
FLOATS = {**IMAGE_PARQUET_OPTIONS, "compression": "none", "use_dictionary": True}


def reader(pixels: np.ndarray, norm: Normalization) -> XReader:
    return XReader("uint8", int(np.prod(pixels.shape[1:])), pixels.shape[1], *channel_scale(norm))


def to_float(pixels: np.ndarray, norm: Normalization) -> np.ndarray:
    """uint8 pixels (N, C, ...) as the float32 rows every consumer reads (`XReader`)."""
    out = np.empty((len(pixels), int(np.prod(pixels.shape[1:]))), np.float32)
    reader(pixels, norm).to_float(pixels.reshape(len(out), -1), out)
    return out.reshape(pixels.shape)


def digits(n: int) -> np.ndarray:
    from components.data.sources import load_mnist5k

    x = (load_mnist5k().x[:n] * 255).round().astype(np.uint8)  # (n, 1, 28, 28)
    return np.repeat(x, 3, axis=1)


def noise(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 3, 64, 64), dtype=np.uint8)


def variants(pixels: np.ndarray, norm: Normalization) -> dict[str, Callable[[], bytes]]:
    n, c = len(pixels), pixels.shape[1]
    y, row_id = np.zeros(n, np.int64), np.arange(n, dtype=np.int64)

    def write(table: pa.Table, **options: object) -> bytes:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **{**FLOATS, **options})
        return bytes(sink.getvalue())

    def table() -> pa.Table:
        return to_table(SplitArrays(to_float(pixels, norm), y, row_id))

    def prebuilt() -> bytes:
        levels = np.tile(np.arange(256, dtype=np.uint8), (1, c, 1))  # (1, C, 256)
        dictionary = to_float(levels[..., None], norm).reshape(-1)
        offsets = (np.arange(c, dtype=np.int16) * 256).reshape(1, c, *([1] * (pixels.ndim - 2)))
        indices = (pixels.astype(np.int16) + offsets).reshape(-1)
        x = pa.DictionaryArray.from_arrays(pa.array(indices), pa.array(dictionary))
        rows = pa.FixedSizeListArray.from_arrays(x, int(np.prod(pixels.shape[1:])))
        built = pa.table({"row_id": pa.array(row_id), "x": rows, "y": pa.array(y)})
        sink = pa.BufferOutputStream()
        plain_schema = table().schema  # readers see float32 rows, as from the step
        options = {**FLOATS, "store_schema": False}
        with pq.ParquetWriter(sink, built.schema, **options) as writer:
            writer.write_table(built)
            serialized = plain_schema.serialize().to_pybytes()
            writer.add_key_value_metadata({"ARROW:schema": base64.b64encode(serialized)})
        return bytes(sink.getvalue())

    def stored(**options: object) -> bytes:
        sink = pa.BufferOutputStream()
        table = pixels_table(pixels, y, row_id)
        pq.write_table(table, sink, **{**IMAGE_PARQUET_OPTIONS, **options})
        return bytes(sink.getvalue())

    return {
        "uint8 pixels + lz4 (the step now)": stored,
        "uint8 pixels, plain": lambda: stored(compression="none"),
        "uint8 pixels + zstd 1": lambda: stored(compression="zstd", compression_level=1),
        "float32 rows + Arrow table (no file)": lambda: table().nbytes.to_bytes(8, "little"),
        "dictionary (the step before)": lambda: write(table()),
        "prebuilt dictionary": prebuilt,
        "plain": lambda: write(table(), **PLAIN),
        "plain + lz4": lambda: write(table(), **PLAIN, compression="lz4"),
    }


def cpu_seconds(fn: Callable[[], bytes], repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        start = time.process_time()
        size = len(fn())
        times.append(time.process_time() - start)
    return statistics.median(times), size


def read_back(data: bytes, decode: XReader) -> pa.Table:
    """A part's bytes read back as the table every consumer sees (x as float32 rows)."""
    table = pq.read_table(pa.BufferReader(data))
    return (
        decode.table(table)
        if pa.types.is_fixed_size_binary(table.schema.field("x").type)
        else table
    )


def read_size(data: bytes, decode: XReader) -> bytes:
    """`read_back`, its size as bytes (what `cpu_seconds` times)."""
    return read_back(data, decode).nbytes.to_bytes(8, "little")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import pyarrow

    print(f"{machine()}, {load()}, pyarrow {pyarrow.__version__}, one thread")
    norm = Normalization(
        kind="channel", fitted_on="train", mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3]
    )
    for name, pixels in [
        ("digits 3x28x28", digits(args.images)),
        ("noise 3x64x64", noise(args.images)),
    ]:
        per = 1000 / len(pixels)
        decode, reference = reader(pixels, norm), None
        print(f"\n{name}, {len(pixels):,} images")
        print(
            "| variant | write: CPU s / 1,000 images | read as float32: CPU s | MB / 1,000 images |"
        )
        print("| --- | --- | --- | --- |")
        for label, fn in variants(pixels, norm).items():
            seconds, size = cpu_seconds(fn, args.repeats)
            data = fn()
            read, mb = "-", "-"
            if not label.startswith("float32"):
                read_s, _ = cpu_seconds(partial(read_size, data, decode), args.repeats)
                read, mb = f"{read_s * per:.3f}", f"{size * per / 1e6:.1f}"
                back = read_back(data, decode)
                reference = reference or back
                assert back.equals(reference), label  # every variant: the same float32 rows
            print(f"| {label} | {seconds * per:.3f} | {read} | {mb} |")
    print(f"\n{load()}")


if __name__ == "__main__":
    main()
