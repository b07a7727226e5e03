"""Plain files in a store root on any fsspec filesystem (local disk, s3://, ...): one
filesystem opened per process, every path checked to stay under the root, atomic writes.

`ArtifactStore` (orchestrator/storage/store.py) builds steps' results, verified reads and run
records on top of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from orchestrator.errors import ArtifactError, StorageError
from orchestrator.storage.cache import sha256_text
from schemas.engine.storage import StorageOptions

DEFAULT_STORAGE = ".kdorch"
_MAX_SEGMENT = 200  # bytes; most filesystems allow 255 per name
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=,+-]*$")


def resolve_storage(explicit: str | None, from_spec: str | None) -> str:
    """--storage, else $KDORCH_STORAGE, else the spec's `storage`, else ./.kdorch."""
    uri = explicit or os.environ.get("KDORCH_STORAGE") or from_spec or DEFAULT_STORAGE
    if "://" not in uri:
        return str(Path(uri).expanduser().resolve())
    scheme, rest = uri.split("://", 1)
    if not rest.strip("/"):
        raise StorageError(
            f"storage '{uri}' names no bucket or folder: write {scheme}://BUCKET[/PREFIX]"
        )
    return uri.rstrip("/")


def safe_segment(name: str) -> str:
    """``name`` as one path segment: itself when it is plain and short, else a readable slug
    plus a hash of the original (so different names never collide and nothing escapes)."""
    if _SAFE_SEGMENT.match(name) and len(name.encode()) <= 64 and ".." not in name:
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:40] or "x"
    return f"{slug}-{sha256_text(name)[:12]}"


def check_relative(path: str) -> str:
    """``path`` if it is a clean store-relative path; else `StorageError` (nothing escapes)."""
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or "://" in path
        or any(p in ("", ".", "..") or len(p.encode()) > _MAX_SEGMENT for p in path.split("/"))
    )
    if bad:
        raise StorageError(
            f"'{path[:120]}' is not a path inside the artifact store (relative, no '..', "
            f"no empty or over-long parts)"
        )
    return path


class FileStore:
    """One store root plus its filesystem. Picklable: workers rebuild the filesystem."""

    def __init__(self, root: str, options: StorageOptions | dict[str, Any] | None = None):
        self.root = root.rstrip("/") if "://" in root else str(Path(root).resolve())
        self.options = (
            options
            if isinstance(options, StorageOptions)
            else StorageOptions.model_validate(options or {})
        )
        self._fs: fsspec.AbstractFileSystem | None = None
        self._root_path = ""

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "options": self.options, "_fs": None, "_root_path": ""}

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # -- filesystem -------------------------------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            try:
                self._fs, self._root_path = fsspec.core.url_to_fs(
                    self.root, **self.options.to_fsspec()
                )
            except (ImportError, ValueError, TypeError) as e:
                raise StorageError(f"cannot open artifact store {self.root}: {e}") from e
            self._root_path = self._root_path.rstrip("/")
        return self._fs

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def fs_path(self, path: str) -> str:
        """The filesystem's own path for a store-relative ``path`` (checked to stay inside)."""
        _ = self.fs  # opens the filesystem and sets _root_path
        return f"{self._root_path}/{check_relative(path)}"

    def uri(self, path: str) -> str:
        """The full URI of a store-relative path, for messages and users."""
        return f"{self.root}/{check_relative(path)}"

    def arrow_filesystem(self) -> Any:
        """The store's filesystem as pyarrow (and Ray Data) take it, with `fs_path` paths."""
        import pyarrow.fs as pafs

        if self.is_local:
            return pafs.LocalFileSystem()
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    # -- plain files ------------------------------------------------------------------------------
    def write_bytes(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Write one object atomically: readers see the old content or the new, never a part.

        ``durable`` (local disk): flush it to the disk before it takes its name, so that it
        survives a power loss once written (artifacts' files, manifests, commits). Bookkeeping
        that is rewritten all the time and only informs (run records, events, the step index)
        skips that: an fsync costs milliseconds per file, more than a trivial step's own work
        (benchmarks/orchestration.py). A process crash never leaves a part either way.
        """
        target = self.fs_path(path)
        try:
            if self.is_local:
                tmp = f"{target}.tmp-{secrets.token_hex(4)}"
                try:
                    f = open(tmp, "wb")  # noqa: SIM115  (closed by the with below)
                except FileNotFoundError:  # a new folder (usually it exists: no mkdir calls)
                    Path(target).parent.mkdir(parents=True, exist_ok=True)
                    f = open(tmp, "wb")  # noqa: SIM115
                with f:
                    f.write(data)
                    if durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, target)
            else:
                self.fs.pipe_file(target, data)
        except OSError as e:
            raise StorageError(f"cannot write {self.uri(path)}: {e}") from e

    def write_json(self, path: str, obj: Any, *, durable: bool = True) -> None:
        data = json.dumps(obj, indent=1, sort_keys=True, default=str).encode()
        self.write_bytes(path, data, durable=durable)

    def read_bytes(self, path: str) -> bytes:
        """An unverified read (records, manifests); artifacts' files go through `read_file`."""
        try:
            with self.fs.open(self.fs_path(path), "rb") as f:
                data: bytes = f.read()
                return data
        except FileNotFoundError:
            raise
        except OSError as e:
            raise StorageError(f"cannot read {self.uri(path)}: {e}") from e

    def read_json(self, path: str) -> Any:
        data = self.read_bytes(path)
        try:
            return json.loads(data)
        except ValueError as e:
            raise ArtifactError(f"{self.uri(path)} is not valid JSON: {e}") from e

    def exists(self, path: str) -> bool:
        try:
            return bool(self.fs.exists(self.fs_path(path)))
        except OSError as e:
            raise StorageError(f"cannot reach artifact store at {self.root}: {e}") from e

    def makedirs(self, path: str) -> None:
        if self.is_local:
            Path(self.fs_path(path)).mkdir(parents=True, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        """Names directly under ``path`` (empty if it does not exist)."""
        try:
            found = self.fs.ls(self.fs_path(path), detail=False)
        except FileNotFoundError:
            return []
        return sorted(str(p).rstrip("/").rsplit("/", 1)[-1] for p in found)

    def remove(self, path: str, recursive: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.fs_path(path), recursive=recursive)

    def move(self, src: str, dst: str) -> None:
        self.fs.mv(self.fs_path(src), self.fs_path(dst))
