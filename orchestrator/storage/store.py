"""The artifact store: a folder tree on any fsspec filesystem (local disk, s3://, ...).

Layout under the root (every path in a record is relative to it, so a store can be moved or
copied — local <-> s3 — and stays valid)::

    objects/<key[:2]>/<key>/<attempt>/<port>/...   data a step wrote, one folder per attempt
    objects/<key[:2]>/<key>/COMMIT.json             written last: the step's committed result
    objects/<key[:2]>/<key>/_resume/...             a training step's resumable state
    runs/<run_id>/run.json, events/NNNNNN.jsonl     the run record and its events
    index/<pipeline>/<step>.json                    the key each step last committed (plan's "why")

Writes are ordered so that a crash never leaves something a later run would trust: a
component writes its files into a fresh attempt folder, then each artifact's `_manifest.json`
(every file's size and sha256) is written, then COMMIT.json. Single-object writes are atomic (a
temp file renamed on local disk; one PUT on object stores).

Reads are verified: `read_file` checks a file's size always and its sha256 once per process and
data version (memoised, so re-reads cost nothing extra), hashing the very bytes it returns;
`read_parsed` does the same while a parser reads those bytes, hashing them in a second thread.
A mismatch raises `CorruptArtifact` naming the file. Every path is checked to stay under the
root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from orchestrator.errors import ArtifactError, StorageError
from orchestrator.storage.cache import canonical_json, sha256_text
from orchestrator.storage.files import DEFAULT_STORAGE as DEFAULT_STORAGE
from orchestrator.storage.files import FileStore
from orchestrator.storage.files import check_relative as check_relative
from orchestrator.storage.files import resolve_storage as resolve_storage
from orchestrator.storage.files import safe_segment as safe_segment
from schemas.engine.artifacts import MANIFEST_NAME, ArtifactRef, FileEntry, Manifest
from schemas.engine.run import CommitRecord, RunRecord

log = logging.getLogger("kdorch")

COMMIT_NAME = "COMMIT.json"
RESUME_DIR = "_resume"
_CHUNK = 4 << 20

#: (store root, data_version, relative file path) hashed in this process: re-reads skip the hash.
_VERIFIED: set[tuple[str, str, str]] = set()
#: (store root, data_version) -> its manifest, read and checked once per process.
_MANIFESTS: dict[tuple[str, str], Manifest] = {}
#: Files at least this large are hashed in a second thread while they are parsed.
_OVERLAP_BYTES = 1 << 20
_HASH_POOL: ThreadPoolExecutor | None = None
T = TypeVar("T")


def _sha256(data: Any) -> str:
    return hashlib.sha256(data).hexdigest()


def _arrow_read(fs_path: str) -> Any:
    """A local file's bytes as a ``pyarrow.Buffer`` (see `ArtifactStore.read_parsed`)."""
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


def _hash_pool() -> ThreadPoolExecutor:
    global _HASH_POOL
    if _HASH_POOL is None:
        _HASH_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdorch-verify")
    return _HASH_POOL


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
        """The step key whose committed output holds the file (from its objects/ path)."""
        parts = self.path.split("/")
        return parts[2] if len(parts) > 2 and parts[0] == "objects" else None


def _rebuild_corrupt(message: str, path: str, store_root: str) -> CorruptArtifact:
    return CorruptArtifact(message, path=path, store_root=store_root)


def new_attempt_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class ArtifactStore(FileStore):
    """A `FileStore` holding steps' committed results, verified artifacts and run records."""

    # -- step results -----------------------------------------------------------------------------
    @staticmethod
    def object_dir(key: str) -> str:
        return f"objects/{key[:2]}/{key}"

    def attempt_dir(self, key: str, attempt: str) -> str:
        return f"{self.object_dir(key)}/{attempt}"

    def resume_dir(self, key: str) -> str:
        """State a step may resume from after a crash; the same for every attempt of a key."""
        return f"{self.object_dir(key)}/{RESUME_DIR}"

    def commit_path(self, key: str) -> str:
        return f"{self.object_dir(key)}/{COMMIT_NAME}"

    def read_commit(self, key: str) -> CommitRecord | None:
        """The committed record of ``key``; None if there is none. An unreadable record raises
        `ArtifactError` (the caller moves it aside with `quarantine`)."""
        try:
            data = self.read_bytes(self.commit_path(key))
        except FileNotFoundError:
            return None
        try:
            return CommitRecord.model_validate_json(data)
        except ValueError as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ArtifactError(f"{self.uri(self.commit_path(key))} is unreadable: {first}") from e

    def write_commit(self, record: CommitRecord) -> None:
        self.write_bytes(self.commit_path(record.key), record.model_dump_json(indent=1).encode())

    def quarantine(self, key: str, why: str) -> str | None:
        """Move a bad COMMIT.json aside (kept for inspection) so the step runs again.

        Returns where it went, or None when there was nothing to move."""
        source = self.commit_path(key)
        target = f"{self.object_dir(key)}/{COMMIT_NAME}.bad-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            self.move(source, target)
        except FileNotFoundError:
            return None
        with contextlib.suppress(Exception):
            self.write_bytes(f"{target}.why.txt", why.encode())
        log.warning(
            "moved the bad result of key %s aside to %s (%s); its step will run again",
            key[:16],
            self.uri(target),
            why,
        )
        return target

    # -- sealing and verifying artifacts --------------------------------------------------------
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

    def file_sha256(self, fs_path: str) -> str:
        digest = hashlib.sha256()
        with self.fs.open(fs_path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def _describe(self, rel: str, fs_path: str, size: int) -> FileEntry:
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
        """Hash every file under ``ref.path``, write its manifest; returns the ref with its
        data version. The files are trusted in this process from now on (it wrote them).

        The manifest also holds the ref's typed metadata (every field but path and
        data_version), so two artifacts with the same bytes but different declared shapes differ
        in version.
        """
        files = [self._describe(rel, p, size) for rel, p, size in self._iter_files(ref.path)]
        if not files:
            raise ArtifactError(
                f"{type(ref).__name__} at {self.uri(ref.path)} is empty: the component wrote no "
                "files there"
            )
        metadata = ref.model_dump(mode="json", exclude={"path", "data_version"})
        manifest = Manifest(kind=type(ref).__name__, files=files, metadata=metadata)
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
            manifest = Manifest.model_validate(payload)
        except ValueError as e:
            raise CorruptArtifact(
                f"{self.uri(ref.manifest_path)} is unreadable: {str(e).splitlines()[0]}",
                path=ref.manifest_path,
                store_root=self.root,
            ) from e
        if ref.data_version:
            actual = sha256_text(canonical_json(payload))
            if actual != ref.data_version:
                raise CorruptArtifact(
                    f"{self.uri(ref.manifest_path)} was modified after it was written: its hash "
                    f"is {actual[:16]}..., the data version is {ref.data_version[:16]}...",
                    path=ref.manifest_path,
                    store_root=self.root,
                )
            _MANIFESTS[(self.root, ref.data_version)] = manifest
        return manifest

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
        ``parse`` runs on the same bytes (hashlib, pyarrow and torch release the GIL), so
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
        digest = _hash_pool().submit(_sha256, data)
        try:
            value = parse(data)
        except Exception:
            self._check_digest(ref, entry, digest.result())
            raise
        self._check_digest(ref, entry, digest.result())
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
            self._check_digest(ref, entry, _sha256(data))

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
        if actual != entry.sha256:
            raise self._mismatch(
                ref, entry, f"sha256 {actual[:16]}..., the manifest says {entry.sha256[:16]}..."
            )
        if ref.data_version:
            _VERIFIED.add((self.root, ref.data_version, ref.file(entry.path)))

    def verify_file(self, ref: ArtifactRef, entry: FileEntry) -> None:
        """Hash one file in place (streaming, no copy in memory) unless done in this process."""
        path = ref.file(entry.path)
        memo = (self.root, ref.data_version, path)
        if ref.data_version and memo in _VERIFIED:
            return
        try:
            size = int(self.fs.size(self.fs_path(path)))
        except FileNotFoundError:
            raise self._missing(ref, path) from None
        if size != entry.size:
            raise self._mismatch(ref, entry, f"{size} bytes, the manifest says {entry.size}")
        actual = self.file_sha256(self.fs_path(path))
        if actual != entry.sha256:
            raise self._mismatch(
                ref, entry, f"sha256 {actual[:16]}..., the manifest says {entry.sha256[:16]}..."
            )
        if ref.data_version:
            _VERIFIED.add(memo)

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

    # -- run records ------------------------------------------------------------------------------
    @staticmethod
    def run_dir(run_id: str) -> str:
        return f"runs/{safe_segment(run_id)}"

    def write_run(self, record: RunRecord) -> None:
        self.write_bytes(
            f"{self.run_dir(record.run_id)}/run.json",
            record.model_dump_json(indent=1).encode(),
            durable=False,
        )

    def append_events(self, run_id: str, chunk: int, lines: list[str]) -> None:
        """Events are append-only: each flush adds one numbered JSON-lines file."""
        self.write_bytes(
            f"{self.run_dir(run_id)}/events/{chunk:06d}.jsonl",
            "".join(lines).encode(),
            durable=False,
        )

    def read_events(self, run_id: str) -> list[dict[str, Any]]:
        base = f"{self.run_dir(run_id)}/events"
        events = []
        for name in self.listdir(base):
            if name.endswith(".jsonl"):
                text = self.read_bytes(f"{base}/{name}").decode()
                events += [json.loads(line) for line in text.splitlines() if line.strip()]
        return events

    def read_run(self, run_id: str) -> RunRecord:
        try:
            return RunRecord.model_validate_json(
                self.read_bytes(f"{self.run_dir(run_id)}/run.json")
            )
        except FileNotFoundError:
            raise ArtifactError(f"no run '{run_id}' in {self.root}") from None
        except ValueError as e:
            raise ArtifactError(f"the record of run '{run_id}' is unreadable: {e}") from e

    def list_runs(self) -> list[str]:
        return self.listdir("runs")

    # -- the step index (what each step last committed; for plan's reasons) ---------------------
    @staticmethod
    def index_path(pipeline: str, step_id: str) -> str:
        return f"index/{safe_segment(pipeline)}/{safe_segment(step_id)}.json"

    def write_index(self, pipeline: str, step_id: str, key: str) -> None:
        self.write_json(
            self.index_path(pipeline, step_id), {"step_id": step_id, "key": key}, durable=False
        )

    def read_index(self, pipeline: str, step_id: str) -> str | None:
        try:
            data = self.read_json(self.index_path(pipeline, step_id))
        except (FileNotFoundError, ArtifactError):
            return None
        key = data.get("key") if isinstance(data, dict) else None
        return key if isinstance(key, str) else None
