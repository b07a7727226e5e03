"""The artifact store: manifests, data versions, verified reads, quarantine, paths, S3."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestrator.errors import ArtifactError, StorageError
from orchestrator.storage.files import check_relative, safe_segment
from orchestrator.storage.store import ArtifactStore
from orchestrator.storage.verified import CorruptArtifact, forget_verified
from schemas.engine.artifacts import JsonArtifact
from schemas.engine.run import CommitRecord


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> None:
    forget_verified()  # each test reads as a new process would


def write_artifact(store: ArtifactStore, name: str, files: dict[str, bytes]) -> JsonArtifact:
    path = f"objects/{name}"
    for rel, data in files.items():
        store.write_bytes(f"{path}/{rel}", data)
    return JsonArtifact(path=path)


def test_data_version_depends_on_content_not_location(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    a = store.seal(write_artifact(store, "a", {"x.json": b"[1]", "sub/y.bin": b"\x00\x01"}))
    b = store.seal(write_artifact(store, "b", {"x.json": b"[1]", "sub/y.bin": b"\x00\x01"}))
    c = store.seal(write_artifact(store, "c", {"x.json": b"[2]", "sub/y.bin": b"\x00\x01"}))
    assert a.data_version == b.data_version != c.data_version
    manifest = store.verify(a)
    assert [f.path for f in manifest.files] == ["sub/y.bin", "x.json"]


def test_parquet_files_are_described_with_rows_and_schema(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = ArtifactStore(str(tmp_path))
    folder = tmp_path / "objects" / "pq"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"row_id": pa.array([1, 2, 3], pa.int64())}), folder / "p.parquet")
    manifest = store.verify(store.seal(JsonArtifact(path="objects/pq")))
    assert manifest.files[0].rows == 3 and "row_id: int64" in (manifest.files[0].arrow_schema or "")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corruption_is_detected_on_read_naming_the_file(tmp_path: Path, damage: str) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.seal(write_artifact(store, "a", {"shard-00000.bin": b"0123456789" * 100}))
    forget_verified()
    target = tmp_path / ref.path / "shard-00000.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:500])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[10] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    with pytest.raises(CorruptArtifact, match=r"shard-00000\.bin (is corrupt|is missing)") as e:
        store.read_file(ref, "shard-00000.bin")
    assert e.value.path == f"{ref.path}/shard-00000.bin"
    with pytest.raises(CorruptArtifact):
        store.verify(ref)


def test_a_flipped_byte_is_caught_by_read_but_not_by_the_quick_check(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.seal(write_artifact(store, "a", {"w.pt": b"0123456789"}))
    target = tmp_path / ref.path / "w.pt"
    target.write_bytes(b"0123456780")  # same size, other bytes
    forget_verified()
    store.quick_check(ref)  # sizes and the manifest match: a cache hit may stand
    with pytest.raises(CorruptArtifact, match="blake3"):
        store.read_file(ref, "w.pt")


def test_a_second_read_does_not_hash_again(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.seal(write_artifact(store, "a", {"x.bin": b"abc" * 1000}))
    forget_verified()
    assert store.read_file(ref, "x.bin") == b"abc" * 1000
    (tmp_path / ref.path / "x.bin").write_bytes(b"abd" * 1000)  # same size
    assert store.read_file(ref, "x.bin") == b"abd" * 1000  # memoised: hashed once per process


def test_edited_manifest_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.seal(write_artifact(store, "a", {"x": b"1"}))
    forget_verified()
    manifest = tmp_path / ref.manifest_path
    manifest.write_text(manifest.read_text().replace('"size": 1', '"size": 2'))
    with pytest.raises(ArtifactError, match="modified after it was written"):
        store.verify(ref)


def test_empty_artifact_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError, match="wrote no files"):
        store.seal(JsonArtifact(path="objects/nothing"))


def _record(key: str) -> CommitRecord:
    return CommitRecord(
        key=key,
        step_id="s",
        component="c",
        version="1",
        run_id="r",
        attempt="a",
        created_at=datetime.now(timezone.utc),
        seconds=1.0,
        key_material={},
        outputs={"x": 1},
    )


def test_commit_is_atomic_and_round_trips(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    assert store.read_commit("ab" * 32) is None
    store.write_commit(_record("ab" * 32))
    assert store.read_commit("ab" * 32) == _record("ab" * 32).model_copy(
        update={"created_at": store.read_commit("ab" * 32).created_at}  # type: ignore[union-attr]
    )
    leftovers = [p for p in (tmp_path / store.object_dir("ab" * 32)).iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_an_unreadable_commit_is_an_error_and_can_be_moved_aside(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    key = "cd" * 32
    store.write_bytes(store.commit_path(key), b"{}")
    with pytest.raises(ArtifactError, match=r"COMMIT\.json is unreadable"):
        store.read_commit(key)
    moved = store.quarantine(key, "test")
    assert moved and (tmp_path / moved).exists() and store.read_commit(key) is None


@pytest.mark.parametrize(
    "path",
    ["../x", "objects/../../x", "/etc/passwd", "a//b", "a/./b", "s3://b/x", "a\\b", "x" * 300],
)
def test_paths_outside_the_root_are_refused(tmp_path: Path, path: str) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    with pytest.raises(StorageError, match="not a path inside the artifact store"):
        store.write_bytes(path, b"x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob("**/passwd"))


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "x" * 250, "..", "ok[1,2]", "é"])
def test_safe_segment_is_one_clean_segment(name: str) -> None:
    segment = safe_segment(name)
    assert "/" not in segment and ".." not in segment and len(segment) <= 64
    assert check_relative(f"index/{segment}.json")
    assert safe_segment(name) == segment and safe_segment(name + "!") != segment


def test_a_store_can_be_moved(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    ref = store.seal(write_artifact(store, "a", {"x.json": b"[1]"}))
    (tmp_path / "a").rename(tmp_path / "b")
    forget_verified()
    moved = ArtifactStore(str(tmp_path / "b"))
    assert moved.read_file(ref, "x.json") == b"[1]"  # records hold root-relative paths


def test_s3_store_against_a_real_server(s3_server: dict, tmp_path: Path) -> None:
    store = ArtifactStore(f"s3://{s3_server['bucket']}/unit", s3_server["storage_options"])
    ref = store.seal(write_artifact(store, "a", {"x.json": b"[1, 2]"}))
    forget_verified()
    assert store.verify(ref).files[0].size == 6
    local = ArtifactStore(str(tmp_path))
    assert (
        ref.data_version
        == local.seal(write_artifact(local, "a", {"x.json": b"[1, 2]"})).data_version
    )
    assert store.read_file(ref, "x.json") == b"[1, 2]"
    assert store.uri(ref.path).startswith(f"s3://{s3_server['bucket']}/unit/objects/")
