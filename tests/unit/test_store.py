"""The artifact store: manifests, data versions, corruption detection, atomic commits, S3."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestrator.errors import ArtifactError
from orchestrator.storage.store import ArtifactStore
from schemas.artifacts import JsonArtifact
from schemas.run import CommitRecord


def write_artifact(store: ArtifactStore, name: str, files: dict[str, bytes]) -> JsonArtifact:
    uri = store.join("objects", name)
    for rel, data in files.items():
        store.write_bytes(f"{uri}/{rel}", data)
    return JsonArtifact(uri=uri)


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
    uri = store.join("objects", "pq")
    Path(uri).mkdir(parents=True)
    pq.write_table(pa.table({"row_id": pa.array([1, 2, 3], pa.int64())}), f"{uri}/part-0.parquet")
    manifest = store.verify(store.seal(JsonArtifact(uri=uri)))
    assert manifest.files[0].rows == 3 and "row_id: int64" in (manifest.files[0].arrow_schema or "")


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corruption_is_detected_naming_the_file(tmp_path: Path, damage: str) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.seal(write_artifact(store, "a", {"shard-00000.bin": b"0123456789" * 100}))
    target = Path(ref.uri) / "shard-00000.bin"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:500])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[10] ^= 0xFF
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    with pytest.raises(ArtifactError, match=r"shard-00000\.bin (is corrupt|is missing)"):
        store.verify(ref)


def test_edited_manifest_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    ref = store.seal(write_artifact(store, "a", {"x": b"1"}))
    manifest = Path(ref.manifest_uri)
    manifest.write_text(manifest.read_text().replace('"size": 1', '"size": 2'))
    with pytest.raises(ArtifactError, match="modified after it was written"):
        store.verify(ref)


def test_empty_artifact_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    with pytest.raises(ArtifactError, match="wrote no files"):
        store.seal(JsonArtifact(uri=store.join("objects", "nothing")))


def test_commit_is_atomic_and_round_trips(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    assert store.read_commit("ab" * 32) is None
    record = CommitRecord(
        key="ab" * 32,
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
    store.write_commit(record)
    assert store.read_commit("ab" * 32) == record
    leftovers = [p for p in Path(store.object_dir("ab" * 32)).iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_s3_store_against_a_real_server(s3_server: dict, tmp_path: Path) -> None:
    store = ArtifactStore(f"s3://{s3_server['bucket']}/unit", s3_server["storage_options"])
    ref = store.seal(write_artifact(store, "a", {"x.json": b"[1, 2]"}))
    assert store.verify(ref).files[0].size == 6
    local = ArtifactStore(str(tmp_path))
    assert (
        ref.data_version
        == local.seal(write_artifact(local, "a", {"x.json": b"[1, 2]"})).data_version
    )
    with store.open(f"{ref.uri}/x.json") as f:
        assert f.read() == b"[1, 2]"
