"""Sealed artifacts and verified reads: what makes a committed artifact trustworthy.

Sealing (`seal`) hashes every file a step wrote under an artifact's folder and writes its
``_manifest.json`` (each file's size and BLAKE3 hash, plus the reference's typed metadata: format
2, `schemas.engine.artifacts.MANIFEST_FORMAT`); the sha256 of the manifest is the artifact's
data version, which downstream cache keys use.

Reads are verified: `read_file` checks a file's size always and its hash once per process and
data version (memoised, so re-reads cost nothing extra), hashing the very bytes it returns;
`read_parsed` does the same while a parser reads those bytes, hashing them in a second thread.
Each file is checked with the hash its manifest names: sha256 for format 1 manifests (written
before BLAKE3), which stay readable. A mismatch raises `CorruptArtifact` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, get_args

from pydantic import ValidationError

from orchestrator.errors import ArtifactError, StorageError
from orchestrator.storage import hashing
from orchestrator.storage.cache import canonical_json, sha256_text
from orchestrator.storage.files import FileStore
from schemas.engine.artifacts import (
    FILE_HASH,
    MANIFEST_NAME,
    ArtifactRef,
    FileEntry,
    HashName,
    Manifest,
)

#: (store root, data_version, relative file path) hashed in this process: re-reads skip the hash.
_VERIFIED: set[tuple[str, str, str]] = set()
#: (store root, data_version) -> its manifest, read and checked once per process.
_MANIFESTS: dict[tuple[str, str], Manifest] = {}
#: Files at least this large are hashed in a second thread while they are parsed.
_OVERLAP_BYTES = 1 << 20
T = TypeVar("T")


def _arrow_read(fs_path: str) -> Any:
    """A local file's bytes as a ``pyarrow.Buffer`` (see `VerifiedStore.read_parsed`)."""
    import pyarrow as pa

    try:
        with pa.OSFile(fs_path, "rb") as f:
            return f.read_buffer()
    except FileNotFoundError:
        raise
    except OSError as e:  # pyarrow says "No such file" as a plain OSError
        if not os.path.exists(fs_path):
            raise FileNotFoundError(fs_path) from e
        raise StorageError(f"cannot read {fs_path}: {e}") from e


def forget_verified() -> None:
    """Forget which files this process has hashed (tests; a long-lived process that wants to
    re-check everything)."""
    _VERIFIED.clear()
    _MANIFESTS.clear()


class CorruptArtifact(ArtifactError):
    """A committed artifact whose bytes no longer match its manifest."""

    def __init__(self, message: str, *, path: str, store_root: str):
        super().__init__(message)
        self.path = path  # store-relative path of the bad file (or artifact)
        self.store_root = store_root

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Ray task boundaries intact
        return (_rebuild_corrupt, (str(self), self.path, self.store_root))

    @property
    def key(self) -> str | None:
        """The step key whose committed output holds the file (from its path in the store's
        layout, ``objects/<key[:2]>/<key>/...``: see `orchestrator.storage.store`)."""
        parts = self.path.split("/")
        return parts[2] if len(parts) > 2 and parts[0] == "objects" else None


def _rebuild_corrupt(message: str, path: str, store_root: str) -> CorruptArtifact:
    return CorruptArtifact(message, path=path, store_root=store_root)


class VerifiedStore(FileStore):
    """A `FileStore` that seals artifacts (manifests, data versions) and reads them verified."""

    def _iter_files(self, path: str) -> Iterator[tuple[str, str, int]]:
        """(relative path, fs path, size) of every data file under ``path``, sorted."""
        base = self.fs_path(path).rstrip("/")
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            found = {}
        for full in sorted(found):
            rel = full[len(base) + 1 :]
            if rel and rel != MANIFEST_NAME and ".tmp-" not in rel:
                yield rel, full, int(found[full]["size"])

    def file_digest(self, fs_path: str, name: HashName = FILE_HASH) -> str:
        """A file's hash, streamed (no copy of the whole file in memory)."""
        with self.fs.open(fs_path, "rb") as f:
            return hashing.stream_digest(f, name)

    def _describe(self, rel: str, fs_path: str, size: int, algorithm: HashName) -> FileEntry:
        rows = schema = None
        if rel.endswith(".parquet"):
            import pyarrow.parquet as pq

            with self.fs.open(fs_path, "rb") as f:
                meta = pq.ParquetFile(f).metadata
                rows, schema = meta.num_rows, str(meta.schema.to_arrow_schema())
        return FileEntry(
            path=rel,
            size=size,
            digest=self.file_digest(fs_path, algorithm),
            rows=rows,
            arrow_schema=schema,
        )

    def seal(self, ref: ArtifactRef, *, algorithm: HashName = FILE_HASH) -> ArtifactRef:
        """Hash every file under ``ref.path``, write its manifest; returns the ref with its
        data version. The files are trusted in this process from now on (it wrote them).

        The manifest also holds the ref's typed metadata (every field but path and
        data_version), so two artifacts with the same bytes but different declared shapes differ
        in version. ``algorithm``: what hashes the files (the manifest names it as its ``hash``).
        """
        found = self._iter_files(ref.path)
        files = [self._describe(rel, p, size, algorithm) for rel, p, size in found]
        if not files:
            raise ArtifactError(
                f"{type(ref).__name__} at {self.uri(ref.path)} is empty: the component wrote no "
                "files there"
            )
        metadata = ref.model_dump(mode="json", exclude={"path", "data_version"})
        manifest = Manifest(kind=type(ref).__name__, hash=algorithm, files=files, metadata=metadata)
        payload = manifest.model_dump(mode="json")
        self.write_bytes(ref.manifest_path, json.dumps(payload, indent=1, sort_keys=True).encode())
        version = sha256_text(canonical_json(payload))
        _MANIFESTS[(self.root, version)] = manifest
        _VERIFIED.update((self.root, version, f"{ref.path}/{e.path}") for e in files)
        return ref.model_copy(update={"data_version": version})

    def manifest(self, ref: ArtifactRef) -> Manifest:
        """The artifact's manifest, checked against its data version (once per process)."""
        cached = _MANIFESTS.get((self.root, ref.data_version)) if ref.data_version else None
        if cached is not None:
            return cached
        payload = self._manifest_payload(ref)
        self._check_format(ref, payload)
        try:
            manifest = Manifest.model_validate(payload)
        except ValueError as e:
            raise self._unreadable(ref, e) from e
        if ref.data_version:
            _MANIFESTS[(self.root, ref.data_version)] = manifest
        return manifest

    def _manifest_payload(self, ref: ArtifactRef) -> Any:
        """The manifest's JSON, checked against the data version first: a manifest edited after
        it was written says so, whatever the edit did to its fields."""
        try:
            raw = self.read_bytes(ref.manifest_path)
        except FileNotFoundError:
            raise CorruptArtifact(
                f"{type(ref).__name__} at {self.uri(ref.path)} has no manifest ({MANIFEST_NAME}):"
                " it was never completed or has been deleted",
                path=ref.manifest_path,
                store_root=self.root,
            ) from None
        try:
            payload = json.loads(raw)
        except ValueError as e:
            raise self._unreadable(ref, e) from e
        if ref.data_version:
            actual = sha256_text(canonical_json(payload))
            if actual != ref.data_version:
                raise CorruptArtifact(
                    f"{self.uri(ref.manifest_path)} was modified after it was written: its hash "
                    f"is {actual[:16]}..., the data version is {ref.data_version[:16]}...",
                    path=ref.manifest_path,
                    store_root=self.root,
                )
        return payload

    def _unreadable(self, ref: ArtifactRef, error: ValueError) -> CorruptArtifact:
        what = str(error).splitlines()[0]
        if isinstance(error, ValidationError):  # the first field at fault, not just a count
            first = error.errors()[0]
            what = f"{'.'.join(map(str, first['loc'])) or 'the manifest'}: {first['msg']}"
        return CorruptArtifact(
            f"{self.uri(ref.manifest_path)} is unreadable: {what}",
            path=ref.manifest_path,
            store_root=self.root,
        )

    def _check_format(self, ref: ArtifactRef, payload: Any) -> None:
        known = get_args(Manifest.model_fields["format"].annotation)
        found = payload.get("format") if isinstance(payload, dict) else None
        if isinstance(found, int) and found not in known:
            raise CorruptArtifact(
                f"{self.uri(ref.manifest_path)} is a format {found} manifest, which this kdorch "
                f"does not read (formats {', '.join(map(str, known))}): a newer kdorch wrote "
                "it; upgrade kdorch to read this store",
                path=ref.manifest_path,
                store_root=self.root,
            )

    def entry(self, ref: ArtifactRef, name: str) -> FileEntry:
        for e in self.manifest(ref).files:
            if e.path == name:
                return e
        raise ArtifactError(
            f"{type(ref).__name__} at {self.uri(ref.path)} has no file '{name}' in its manifest"
        )

    def _mismatch(self, ref: ArtifactRef, entry: FileEntry, what: str) -> CorruptArtifact:
        path = ref.file(entry.path)
        return CorruptArtifact(
            f"{self.uri(path)} is corrupt: {what}. The step that wrote it will run again on the "
            "next run (its result is moved aside); to redo it by hand: "
            "`kdorch run PIPELINE --set steps.STEP.cache=recompute`",
            path=path,
            store_root=self.root,
        )

    def _missing(self, ref: ArtifactRef, path: str) -> CorruptArtifact:
        return CorruptArtifact(
            f"{self.uri(path)} is missing (listed in {self.uri(ref.manifest_path)})",
            path=path,
            store_root=self.root,
        )

    def read_file(self, ref: ArtifactRef, name: str) -> bytes:
        """One file of an artifact, verified against its manifest (see the module docstring)."""
        entry, data = self._read_entry(ref, name)
        self.check_bytes(ref, entry, data)
        return data

    def read_parsed(
        self, ref: ArtifactRef, name: str, parse: Callable[[Any], T], *, arrow_file: bool = False
    ) -> T:
        """``parse(data)`` of one file of an artifact, verified as `read_file` verifies it.

        The file is read once, into memory; a large one is hashed in a second thread while
        ``parse`` runs on the same bytes (both hashes, pyarrow and torch release the GIL), so
        verifying costs about nothing on a machine with a spare core. The result is returned
        only once the bytes proved to be the manifest's; if they are not, `CorruptArtifact` is
        raised even when the parser failed on them first. ``data`` is a read-only bytes-like
        buffer (``bytes``; a ``pyarrow.Buffer`` from a local store, read by Arrow's allocator,
        which reuses its memory: a fresh ``bytes`` of a few hundred MB costs more in page
        faults than the parse) — take it with ``pa.BufferReader(data)`` or ``memoryview``.

        ``arrow_file``: ``parse`` also takes an open ``pyarrow`` file. A local file that this
        process has verified already (only its size is checked again, as `read_file` does)
        is then handed over unread: pyarrow's own reader overlaps reading with decoding, so a
        second read costs what a raw read of the file costs.
        """
        if arrow_file and self.is_local:
            entry = self.entry(ref, name)
            if self.is_verified(ref, entry):
                return self._parse_verified_file(ref, entry, parse)
        entry, data = self._read_entry(ref, name, buffer=True)
        if len(data) < _OVERLAP_BYTES or self.is_verified(ref, entry):
            self.check_bytes(ref, entry, data)
            return parse(data)
        self._check_size(ref, entry, data)
        hashed = hashing.pool().submit(hashing.digest, self.manifest(ref).hash, data)
        try:
            value = parse(data)
        except Exception:
            self._check_digest(ref, entry, hashed.result())
            raise
        self._check_digest(ref, entry, hashed.result())
        return value

    def _parse_verified_file(
        self, ref: ArtifactRef, entry: FileEntry, parse: Callable[[Any], T]
    ) -> T:
        import pyarrow as pa

        path = ref.file(entry.path)
        target = self.fs_path(path)
        try:
            size = os.stat(target).st_size
        except FileNotFoundError:
            raise self._missing(ref, path) from None
        self._check_length(ref, entry, size)
        with pa.OSFile(target, "rb") as f:
            return parse(f)

    def _read_entry(
        self, ref: ArtifactRef, name: str, *, buffer: bool = False
    ) -> tuple[FileEntry, Any]:
        entry = self.entry(ref, name)
        path = ref.file(name)
        try:
            if buffer and self.is_local and entry.size >= _OVERLAP_BYTES:
                return entry, _arrow_read(self.fs_path(path))
            return entry, self.read_bytes(path)
        except FileNotFoundError:
            raise self._missing(ref, path) from None

    def is_verified(self, ref: ArtifactRef, entry: FileEntry) -> bool:
        """Whether this process has already hashed this file of this data version."""
        return bool(ref.data_version) and (
            (self.root, ref.data_version, ref.file(entry.path)) in _VERIFIED
        )

    def check_bytes(self, ref: ArtifactRef, entry: FileEntry, data: Any) -> None:
        """Raise `CorruptArtifact` unless ``data`` is the file ``entry`` describes."""
        self._check_size(ref, entry, data)
        if not self.is_verified(ref, entry):
            self._check_digest(ref, entry, hashing.digest(self.manifest(ref).hash, data))

    def _check_size(self, ref: ArtifactRef, entry: FileEntry, data: Any) -> None:
        self._check_length(ref, entry, len(data))

    def _check_length(self, ref: ArtifactRef, entry: FileEntry, size: int) -> None:
        if size != entry.size:
            raise self._mismatch(
                ref,
                entry,
                f"{size} bytes, the manifest says {entry.size} (truncated or overwritten)",
            )

    def _check_digest(self, ref: ArtifactRef, entry: FileEntry, actual: str) -> None:
        if actual != entry.digest:
            name = self.manifest(ref).hash
            raise self._mismatch(
                ref, entry, f"{name} {actual[:16]}..., the manifest says {entry.digest[:16]}..."
            )
        if ref.data_version:
            _VERIFIED.add((self.root, ref.data_version, ref.file(entry.path)))

    def verify_file(self, ref: ArtifactRef, entry: FileEntry) -> None:
        """Hash one file in place (streaming, no copy in memory) unless done in this process."""
        if self.is_verified(ref, entry):
            return
        path = ref.file(entry.path)
        try:
            size = int(self.fs.size(self.fs_path(path)))
        except FileNotFoundError:
            raise self._missing(ref, path) from None
        if size != entry.size:
            raise self._mismatch(ref, entry, f"{size} bytes, the manifest says {entry.size}")
        digest = self.file_digest(self.fs_path(path), self.manifest(ref).hash)
        self._check_digest(ref, entry, digest)

    def verify(self, ref: ArtifactRef) -> Manifest:
        """Check the manifest and hash every file of ``ref`` (memoised per process)."""
        manifest = self.manifest(ref)
        for entry in manifest.files:
            self.verify_file(ref, entry)
        return manifest

    def quick_check(self, ref: ArtifactRef) -> None:
        """What a cache hit checks: the manifest matches the data version and every listed file
        exists with its size (one listing; hashes are checked when the files are read)."""
        manifest = self.manifest(ref)
        sizes = {rel: size for rel, _, size in self._iter_files(ref.path)}
        for entry in manifest.files:
            if entry.path not in sizes:
                raise CorruptArtifact(
                    f"{self.uri(ref.file(entry.path))} is missing",
                    path=ref.file(entry.path),
                    store_root=self.root,
                )
            if sizes[entry.path] != entry.size:
                raise self._mismatch(
                    ref, entry, f"{sizes[entry.path]} bytes, the manifest says {entry.size}"
                )
