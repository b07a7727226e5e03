"""Manifest formats: new manifests (format 2) hash files with BLAKE3 and say so; format 1
manifests (sha256, written before) are still read and verified, and a changed byte is caught
under either hash."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest

from components.artifacts.datasets import parquet_table
from orchestrator.storage.cache import canonical_json, sha256_text
from orchestrator.storage.store import ArtifactStore
from orchestrator.storage.verified import CorruptArtifact, forget_verified
from schemas.engine.artifacts import JsonArtifact

#: A store sealed by kdorch before BLAKE3 (HEAD e0fb7ce): a format 1 manifest, its files' sha256.
FORMAT_1_STORE = Path(__file__).parents[1] / "resources" / "format1_store"
LARGE = 3 << 20  # read_parsed hashes files this large beside the parser


@pytest.fixture(autouse=True)
def _fresh_process_memory() -> None:
    forget_verified()  # each test reads as a new process would


def old_store(tmp_path: Path) -> tuple[ArtifactStore, JsonArtifact]:
    shutil.copytree(FORMAT_1_STORE, tmp_path / "store")
    ref = JsonArtifact.model_validate_json((tmp_path / "store" / "ref.json").read_text())
    return ArtifactStore(str(tmp_path / "store")), ref


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    path.write_bytes(bytes(data))


def seal_as_format_1(store: ArtifactStore, path: str) -> JsonArtifact:
    """What `seal` wrote before format 2: the same JSON layout, a sha256 per file."""
    files = []
    for file in sorted(Path(store.fs_path(path)).iterdir()):
        data = file.read_bytes()
        files.append(
            {
                "arrow_schema": None,
                "path": file.name,
                "rows": None,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        )
    payload = {"files": files, "format": 1, "kind": "JsonArtifact", "metadata": {}}
    store.write_bytes(f"{path}/_manifest.json", json.dumps(payload, indent=1).encode())
    return JsonArtifact(path=path, data_version=sha256_text(canonical_json(payload)))


def test_a_new_manifest_is_format_2_and_names_blake3(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    store.write_bytes("objects/a/x.bin", b"abc")
    ref = store.seal(JsonArtifact(path="objects/a"))
    payload = json.loads((tmp_path / ref.manifest_path).read_text())
    assert payload["format"] == 2 and payload["hash"] == "blake3"
    # BLAKE3's own test vector for b"abc", so the name says what the digest is.
    assert payload["files"] == [
        {
            "arrow_schema": None,
            "digest": "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            "path": "x.bin",
            "rows": None,
            "size": 3,
        }
    ]
    assert ref.data_version == sha256_text(canonical_json(payload))


def test_a_store_sealed_before_blake3_still_reads_and_verifies(tmp_path: Path) -> None:
    store, ref = old_store(tmp_path)
    store.quick_check(ref)  # what a cache hit checks: the data version is unchanged
    manifest = store.verify(ref)
    assert manifest.format == 1 and manifest.hash == "sha256"
    forget_verified()
    assert store.read_file(ref, "values.json") == b"[1.0, 2.0, 3.0]"
    table = store.read_parsed(ref, "table.parquet", parquet_table, arrow_file=True)
    assert table.column("row_id").to_pylist() == [0, 1, 2]


@pytest.mark.parametrize("name", ["values.json", "table.parquet"])
def test_a_flipped_byte_in_a_format_1_store_is_caught_with_sha256(
    tmp_path: Path, name: str
) -> None:
    store, ref = old_store(tmp_path)
    flip_last_byte(Path(store.fs_path(ref.file(name))))
    store.quick_check(ref)  # sizes match: only the hash sees it
    with pytest.raises(CorruptArtifact, match=rf"{name.replace('.', '[.]')} is corrupt: sha256"):
        store.read_parsed(ref, name, len)
    with pytest.raises(CorruptArtifact, match="sha256"):
        store.verify(ref)


@pytest.mark.parametrize("fmt", [1, 2])
def test_a_large_file_is_verified_beside_its_parser_under_either_hash(
    tmp_path: Path, fmt: int
) -> None:
    store = ArtifactStore(str(tmp_path))
    store.write_bytes("objects/a/blob.bin", bytes(range(256)) * (LARGE // 256))
    ref = (
        seal_as_format_1(store, "objects/a")
        if fmt == 1
        else store.seal(JsonArtifact(path="objects/a"))
    )
    forget_verified()
    assert store.read_parsed(ref, "blob.bin", len) == LARGE
    forget_verified()
    flip_last_byte(tmp_path / "objects/a/blob.bin")
    with pytest.raises(CorruptArtifact, match="sha256" if fmt == 1 else "blake3"):
        store.read_parsed(ref, "blob.bin", len)
    expected = blake3.blake3(bytes(range(256)) * (LARGE // 256)).hexdigest()
    if fmt == 2:
        assert store.entry(ref, "blob.bin").digest == expected


def test_a_format_1_manifest_edited_to_name_blake3_is_caught(tmp_path: Path) -> None:
    store, ref = old_store(tmp_path)
    manifest = Path(store.fs_path(ref.manifest_path))
    payload = json.loads(manifest.read_text())
    payload["format"], payload["hash"] = 2, "blake3"
    manifest.write_text(json.dumps(payload, indent=1, sort_keys=True))
    with pytest.raises(CorruptArtifact, match="was modified after it was written"):
        store.quick_check(ref)


def edited_manifest_error(tmp_path: Path, old: str, new: str) -> str:
    """The error reading a fresh artifact's manifest after an edit (``old`` -> ``new``), from a
    reference without its data version (the manifest's own content decides)."""
    store = ArtifactStore(str(tmp_path))
    store.write_bytes("objects/a/x.bin", b"abc")
    ref = store.seal(JsonArtifact(path="objects/a"))
    forget_verified()
    manifest = tmp_path / ref.manifest_path
    manifest.write_text(manifest.read_text().replace(old, new))
    with pytest.raises(CorruptArtifact) as caught:
        store.manifest(JsonArtifact(path="objects/a"))
    return str(caught.value)


def test_a_manifest_of_a_newer_format_says_so(tmp_path: Path) -> None:
    assert edited_manifest_error(tmp_path, '"format": 2', '"format": 3') == (
        f"{tmp_path}/objects/a/_manifest.json is a format 3 manifest, which this kdorch does "
        "not read (formats 1, 2): a newer kdorch wrote it; upgrade kdorch to read this store"
    )


def test_an_unreadable_manifest_names_the_field_at_fault(tmp_path: Path) -> None:
    assert edited_manifest_error(tmp_path, '"digest"', '"sha256"') == (
        f"{tmp_path}/objects/a/_manifest.json is unreadable: files.0.digest: Field required"
    )
