"""The artifact store: a directory tree on any fsspec filesystem (local disk, s3://, ...).

Layout under the root::

    objects/<key[:2]>/<key>/<attempt>/<port>/...   data a step wrote, one folder per attempt
    objects/<key[:2]>/<key>/COMMIT.json             written last: the step's committed result
    runs/<run_id>/run.json                          the run record (and events.json)

Writes are ordered so that a crash never leaves something a later run would trust: a
component writes its files into a fresh attempt folder, then each artifact's `_manifest.json`
(every file's size and sha256) is written, then COMMIT.json. Only a key with a COMMIT.json is a
cache hit, and its artifacts' manifests must still exist. Single-object writes are atomic (a
temp file renamed on local disk; one PUT on object stores).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from orchestrator.errors import ArtifactError, StorageError
from orchestrator.storage.cache import canonical_json, sha256_text
from schemas.artifacts import MANIFEST_NAME, ArtifactRef, FileEntry, Manifest
from schemas.run import CommitRecord, RunRecord

DEFAULT_STORAGE = ".kdorch"
COMMIT_NAME = "COMMIT.json"
_CHUNK = 4 << 20


def resolve_storage(explicit: str | None, from_spec: str | None) -> str:
    """--storage, else $KDORCH_STORAGE, else the spec's `storage`, else ./.kdorch."""
    uri = explicit or os.environ.get("KDORCH_STORAGE") or from_spec or DEFAULT_STORAGE
    if "://" not in uri:
        return str(Path(uri).expanduser().resolve())
    return uri.rstrip("/")


def new_attempt_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class ArtifactStore:
    """One store root plus its fsspec filesystem. Picklable: workers rebuild the filesystem."""

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.root = root.rstrip("/") if "://" in root else str(Path(root).resolve())
        self.storage_options = dict(storage_options or {})
        self._fs: fsspec.AbstractFileSystem | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "storage_options": self.storage_options, "_fs": None}

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            try:
                self._fs, _ = fsspec.core.url_to_fs(self.root, **self.storage_options)
            except (ImportError, ValueError) as e:
                raise StorageError(f"cannot open artifact store {self.root}: {e}") from e
        return self._fs

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *(p.strip("/") for p in parts)])

    def _path(self, uri: str) -> str:
        """The filesystem's own path for a uri (fsspec strips the protocol)."""
        return self.fs._strip_protocol(uri)

    # -- plain files ----------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write one object atomically: readers see the old content or the new, never a part."""
        path = self._path(uri)
        try:
            if self.is_local:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                tmp = f"{path}.tmp-{secrets.token_hex(4)}"
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            else:
                self.fs.pipe_file(path, data)
        except OSError as e:
            raise StorageError(f"cannot write {uri}: {e}") from e

    def write_json(self, uri: str, obj: Any) -> None:
        self.write_bytes(uri, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def read_json(self, uri: str) -> Any:
        try:
            with self.fs.open(self._path(uri), "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise ArtifactError(f"cannot read {uri}: {e}") from e

    def exists(self, uri: str) -> bool:
        try:
            return bool(self.fs.exists(self._path(uri)))
        except OSError as e:
            raise StorageError(f"cannot reach artifact store at {self.root}: {e}") from e

    def makedirs(self, uri: str) -> None:
        if self.is_local:
            Path(self._path(uri)).mkdir(parents=True, exist_ok=True)

    def open(self, uri: str, mode: str = "rb") -> Any:
        return self.fs.open(self._path(uri), mode)

    # -- step results ---------------------------------------------------------------------------
    def object_dir(self, key: str) -> str:
        return self.join("objects", key[:2], key)

    def attempt_dir(self, key: str, attempt: str) -> str:
        return f"{self.object_dir(key)}/{attempt}"

    def read_commit(self, key: str) -> CommitRecord | None:
        uri = f"{self.object_dir(key)}/{COMMIT_NAME}"
        try:
            data = self.read_json(uri)
        except FileNotFoundError:
            return None
        return CommitRecord.model_validate(data)

    def write_commit(self, record: CommitRecord) -> None:
        self.write_bytes(
            f"{self.object_dir(record.key)}/{COMMIT_NAME}",
            record.model_dump_json(indent=1).encode(),
        )

    # -- sealing and verifying artifacts ------------------------------------------------------
    def _iter_files(self, uri: str) -> Iterator[tuple[str, str]]:
        """(relative path, fs path) of every data file under ``uri``, sorted."""
        base = self._path(uri).rstrip("/")
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            found = []
        for path in sorted(found):
            rel = path[len(base) + 1 :]
            if rel and rel != MANIFEST_NAME and ".tmp-" not in rel:
                yield rel, path

    def file_sha256(self, fs_path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(fs_path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _describe(self, rel: str, fs_path: str) -> FileEntry:
        size = int(self.fs.size(fs_path))
        rows = schema = None
        if rel.endswith(".parquet"):
            import pyarrow.parquet as pq

            with self.fs.open(fs_path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
                rows, schema = meta.num_rows, str(meta.schema.to_arrow_schema())
        return FileEntry(
            path=rel, size=size, sha256=self.file_sha256(fs_path), rows=rows, arrow_schema=schema
        )

    def seal(self, ref: ArtifactRef) -> ArtifactRef:
        """Hash every file under ``ref.uri``, write its manifest; returns the ref with its version.

        The manifest also holds the ref's typed metadata (every field but uri and data_version),
        so two artifacts with the same bytes but different declared shapes differ in version.
        """
        files = [self._describe(rel, path) for rel, path in self._iter_files(ref.uri)]
        if not files:
            raise ArtifactError(
                f"{type(ref).__name__} at {ref.uri} is empty: the component wrote no files there"
            )
        metadata = ref.model_dump(mode="json", exclude={"uri", "data_version"})
        manifest = Manifest(kind=type(ref).__name__, files=files, metadata=metadata)
        payload = manifest.model_dump(mode="json")
        self.write_bytes(ref.manifest_uri, json.dumps(payload, indent=1, sort_keys=True).encode())
        return ref.model_copy(update={"data_version": sha256_text(canonical_json(payload))})

    def read_manifest(self, ref: ArtifactRef) -> Manifest:
        try:
            payload = self.read_json(ref.manifest_uri)
        except FileNotFoundError:
            raise ArtifactError(
                f"{type(ref).__name__} at {ref.uri} has no manifest ({MANIFEST_NAME}): it was "
                "never completed or has been deleted; re-run the step that produces it"
            ) from None
        if ref.data_version and sha256_text(canonical_json(payload)) != ref.data_version:
            raise ArtifactError(
                f"manifest {ref.manifest_uri} does not match data version "
                f"{ref.data_version[:16]}: the artifact was modified after it was written"
            )
        return Manifest.model_validate(payload)

    def verify_file(self, ref: ArtifactRef, entry: FileEntry) -> None:
        """Check one file against its manifest entry; raises `ArtifactError` naming the file."""
        uri = f"{ref.uri.rstrip('/')}/{entry.path}"
        path = self._path(uri)
        try:
            size = int(self.fs.size(path))
        except FileNotFoundError:
            raise ArtifactError(f"{uri} is missing (listed in {ref.manifest_uri})") from None
        if size != entry.size:
            raise ArtifactError(
                f"{uri} is corrupt: {size} bytes, the manifest says {entry.size} (truncated or "
                "overwritten); delete the artifact's step result and re-run it"
            )
        actual = self.file_sha256(path)
        if actual != entry.sha256:
            raise ArtifactError(
                f"{uri} is corrupt: sha256 {actual[:16]}..., the manifest says "
                f"{entry.sha256[:16]}...; delete the artifact's step result and re-run it"
            )

    def verify(self, ref: ArtifactRef) -> Manifest:
        """Check the manifest and every file of ``ref``."""
        manifest = self.read_manifest(ref)
        for entry in manifest.files:
            self.verify_file(ref, entry)
        return manifest

    # -- run records ----------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> str:
        return self.join("runs", run_id)

    def write_run(self, record: RunRecord, events: list[dict[str, Any]] | None = None) -> None:
        self.write_bytes(
            f"{self.run_dir(record.run_id)}/run.json", record.model_dump_json(indent=1).encode()
        )
        if events is not None:
            self.write_json(f"{self.run_dir(record.run_id)}/events.json", events)

    def read_run(self, run_id: str) -> RunRecord:
        try:
            return RunRecord.model_validate(self.read_json(f"{self.run_dir(run_id)}/run.json"))
        except FileNotFoundError:
            raise ArtifactError(f"no run '{run_id}' in {self.root}") from None

    def list_runs(self) -> list[str]:
        base = self._path(self.join("runs"))
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False))
        except FileNotFoundError:
            return []
