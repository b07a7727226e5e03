"""`ArtifactStore.read_parsed`: one read, hashed while it is parsed, and never a parse of bad
bytes returned (small files are hashed first, large ones in a second thread)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.storage.store import ArtifactStore
from orchestrator.storage.verified import CorruptArtifact, forget_verified
from schemas.engine.artifacts import JsonArtifact

LARGE = 3 << 20  # above the size from which hashing runs beside the parser


def sealed(tmp_path: Path, size: int) -> tuple[ArtifactStore, JsonArtifact, Path]:
    store = ArtifactStore(str(tmp_path / "store"))
    store.write_bytes("objects/a/blob.bin", bytes(range(256)) * (size // 256))
    ref = store.seal(JsonArtifact(path="objects/a"))
    assert isinstance(ref, JsonArtifact)
    forget_verified()  # as a new process: nothing hashed yet
    return store, ref, Path(store.fs_path("objects/a/blob.bin"))


@pytest.mark.parametrize("size", [4096, LARGE])
def test_returns_the_parse_and_remembers_the_hash(tmp_path: Path, size: int) -> None:
    store, ref, _ = sealed(tmp_path, size)
    entry = store.entry(ref, "blob.bin")
    assert store.read_parsed(ref, "blob.bin", len) == size
    assert store.is_verified(ref, entry)
    assert store.read_parsed(ref, "blob.bin", lambda data: bytes(data[:3])) == b"\x00\x01\x02"


@pytest.mark.parametrize("size", [4096, LARGE])
def test_a_changed_byte_is_corrupt_even_when_the_parser_accepts_it(
    tmp_path: Path, size: int
) -> None:
    store, ref, path = sealed(tmp_path, size)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="blake3"):
        store.read_parsed(ref, "blob.bin", len)
    assert not store.is_verified(ref, store.entry(ref, "blob.bin"))


def test_a_parser_failing_on_corrupt_bytes_reports_the_corruption(tmp_path: Path) -> None:
    store, ref, path = sealed(tmp_path, LARGE)
    path.write_bytes(b"\xff" * LARGE)

    def parse(data: bytes) -> int:
        raise ValueError("not a Parquet file")

    with pytest.raises(CorruptArtifact, match=r"blob\.bin is corrupt"):
        store.read_parsed(ref, "blob.bin", parse)


def test_a_parser_failing_on_intact_bytes_fails_as_itself(tmp_path: Path) -> None:
    store, ref, _ = sealed(tmp_path, LARGE)

    def parse(data: bytes) -> int:
        raise ValueError("not a Parquet file")

    with pytest.raises(ValueError, match="not a Parquet file"):
        store.read_parsed(ref, "blob.bin", parse)


def test_a_missing_file_is_corrupt(tmp_path: Path) -> None:
    store, ref, path = sealed(tmp_path, LARGE)
    path.unlink()
    with pytest.raises(CorruptArtifact, match="is missing"):
        store.read_parsed(ref, "blob.bin", len)


def test_a_truncated_file_is_never_parsed(tmp_path: Path) -> None:
    store, ref, path = sealed(tmp_path, LARGE)
    path.write_bytes(path.read_bytes()[:1000])
    parsed: list[bytes] = []
    with pytest.raises(CorruptArtifact, match="1000 bytes"):
        store.read_parsed(ref, "blob.bin", parsed.append)
    assert parsed == []


def test_a_verified_file_goes_to_an_arrow_reader_unread_but_its_size_is_checked(
    tmp_path: Path,
) -> None:
    import pyarrow as pa

    store, ref, path = sealed(tmp_path, LARGE)
    seen: list[object] = []

    def parse(source: object) -> int:
        seen.append(source)
        return len(source.read_buffer() if isinstance(source, pa.NativeFile) else source)

    assert store.read_parsed(ref, "blob.bin", parse, arrow_file=True) == LARGE  # hashed
    assert not isinstance(seen[-1], pa.NativeFile)
    assert store.read_parsed(ref, "blob.bin", parse, arrow_file=True) == LARGE  # memoised
    assert isinstance(seen[-1], pa.NativeFile)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptArtifact, match="100 bytes"):
        store.read_parsed(ref, "blob.bin", parse, arrow_file=True)
    path.unlink()
    with pytest.raises(CorruptArtifact, match="is missing"):
        store.read_parsed(ref, "blob.bin", parse, arrow_file=True)


def test_parquet_round_trip_through_read_parsed(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.artifacts.datasets import parquet_table

    table = pa.table({"row_id": np.arange(300_000), "v": np.random.default_rng(0).random(300_000)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    store = ArtifactStore(str(tmp_path / "store"))
    store.write_bytes("objects/p/t.parquet", sink.getvalue().to_pybytes())
    ref = store.seal(JsonArtifact(path="objects/p"))
    forget_verified()
    first = store.read_parsed(ref, "t.parquet", parquet_table, arrow_file=True)
    again = store.read_parsed(ref, "t.parquet", parquet_table, arrow_file=True)
    assert first.equals(table) and again.equals(table)
